"""Transform: run dbt against the same database the loader wrote to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError


def dbt_executable() -> str:
    """The `dbt` installed beside this Python, so the pinned version runs whatever PATH says."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(database: DatabaseUrl) -> dict[str, str]:
    """The process environment plus what `profiles.yml` reads, telemetry off."""
    return {**os.environ, **database.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}


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
    result = subprocess.run(command, env=dbt_env(database), check=False)
    if result.returncode != 0:
        raise PipelineError(f"dbt {' '.join(args)} failed (exit code {result.returncode}); see dbt's output above")


def build(database: DatabaseUrl) -> None:
    """`dbt build` (models, unit and data tests), then source freshness."""
    run_dbt(database, "build")
    run_dbt(database, "source", "freshness")


def parse(database: DatabaseUrl) -> Path:
    """Write a fresh `target/manifest.json`, which Cosmos renders the DAG from in well under a second."""
    run_dbt(database, "parse")
    return paths.DBT_PROJECT_DIR / "target" / "manifest.json"
