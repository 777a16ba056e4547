"""Transform: run dbt against the same database the loader wrote to."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def dbt_executable() -> str:
    """The `dbt` installed beside this Python, so the pinned version runs whatever PATH says."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(database: DatabaseUrl) -> dict[str, str]:
    """The process environment plus what `profiles.yml` reads, telemetry off."""
    return {**os.environ, **database.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook for the dbt child: be killed when the parent dies, however it dies (Linux only).

    Otherwise a killed `python -m pipelines transform` would leave dbt building on its own after the pipeline
    lock went with the parent's connection, and the next run could interleave with it. `prctl` is looked up
    here, in the parent: the hook itself must not load libraries between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def run_dbt(database: DatabaseUrl, *args: str) -> None:
    """Run one dbt command on the project; raise PipelineError when it fails (dbt's output says why)."""
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(paths.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(paths.DBT_PROFILES_DIR),
    ]
    result = subprocess.run(command, env=dbt_env(database), check=False, preexec_fn=_die_with_parent())
    if result.returncode != 0:
        raise PipelineError(f"dbt {' '.join(args)} failed (exit code {result.returncode}); see dbt's output above")


def build(database: DatabaseUrl) -> None:
    """`dbt build` (models, unit and data tests), then source freshness."""
    from pipelines.export.raw_tables import upgrade_if_imported

    upgrade_if_imported(database)
    run_dbt(database, "build")
    run_dbt(database, "source", "freshness")


def parse(database: DatabaseUrl) -> Path:
    """Write a fresh `target/manifest.json`, which Cosmos renders the DAG from in well under a second."""
    run_dbt(database, "parse")
    return paths.DBT_PROJECT_DIR / "target" / "manifest.json"
