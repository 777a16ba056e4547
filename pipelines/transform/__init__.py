"""Transform: run dbt against the same database the loader wrote to, and the DAG's deploy-time parse.

dbt only reads `dbt_project/`: the CLI's runs write their target and logs to the state dir (`paths`), and the
manifest the DAG renders from is written by `parse` alone, atomically, into a directory no other run uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
# The DbtTaskGroup's group_id in dags/spotify_elt.py: with the DAG id, it names the group's Cosmos cache.
COSMOS_TASK_GROUP = "transform"
# What Cosmos adds to every dbt command besides the project, profile and target (cosmos/operators/local.py).
COSMOS_DBT_FLAGS = ("--no-static-parser",)
CACHE_DIR_SETTING = "AIRFLOW__COSMOS__CACHE_DIR"


def dbt_executable() -> str:
    """The `dbt` installed beside this Python, so the pinned version runs whatever PATH says."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(database: DatabaseUrl | None) -> dict[str, str]:
    """The process environment plus what `profiles.yml` reads, telemetry off."""
    profile = database.dbt_env() if database is not None else {}
    return {**os.environ, **profile, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}


def output_flags(args: tuple[str, ...] | list[str]) -> list[str]:
    """`--target-path` and `--log-path` in the state dir, unless the command or `DBT_TARGET_PATH`/`DBT_LOG_PATH`
    already say where; so dbt writes nothing into `dbt_project/`, and never the DAG's manifest."""
    flags: list[str] = []
    for flag, env, default in (
        ("--target-path", "DBT_TARGET_PATH", paths.dbt_target_dir),
        ("--log-path", "DBT_LOG_PATH", paths.dbt_log_dir),
    ):
        if flag not in args and not os.environ.get(env):
            flags += [flag, str(paths.ensure_writable(default()))]
    return flags


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


def run_dbt(
    database: DatabaseUrl | None, *args: str, profiles_dir: Path | None = None, env: dict[str, str] | None = None
) -> None:
    """Run one dbt command on the project; raise PipelineError when it fails (dbt's output says why)."""
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(paths.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(profiles_dir or paths.DBT_PROFILES_DIR),
        *output_flags(args),
    ]
    result = subprocess.run(
        command, env={**dbt_env(database), **(env or {})}, check=False, preexec_fn=_die_with_parent()
    )
    if result.returncode != 0:
        raise PipelineError(f"dbt {' '.join(args)} failed (exit code {result.returncode}); see dbt's output above")


def build(database: DatabaseUrl) -> None:
    """`dbt build` (models, unit and data tests), then source freshness."""
    from pipelines.export.raw_tables import upgrade_if_imported

    upgrade_if_imported(database)
    run_dbt(database, "build")
    run_dbt(database, "source", "freshness")


def parse(database: DatabaseUrl | None = None) -> Path:
    """The deploy-time `dbt parse`, run as Cosmos runs dbt; returns the manifest the DAG renders from.

    dbt parses into a scratch dir beside `paths.dbt_dag_dir()/manifest.json`, which is then renamed over the old
    one: a DAG parse never reads half a file, and no other dbt run writes there. The parse uses Cosmos' profile
    (mapped from the Airflow connection), target and flags, because dbt reuses `partial_parse.msgpack` only when
    they match; the file goes to Cosmos' cache for the DAG's task group, where each dbt task looks for it.

    Args:
        database: the database the DAG's tasks use; default: the Airflow connection `spotify_postgres`. dbt
            parses without connecting, but its partial parse is only reused for the same connection values.
    """
    from cosmos import settings  # Cosmos and Airflow: only here, never for a CLI build

    from pipelines import orchestration

    database = database or _airflow_connection()
    destination = paths.ensure_writable(paths.dbt_dag_dir()) / "manifest.json"
    paths.ensure_writable(Path(settings.cache_dir), CACHE_DIR_SETTING)  # Cosmos writes the profile there too
    profile = orchestration.profile_config()
    with _connection_in_env(database), profile.ensure_profile() as (profile_path, profile_env):
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=destination.parent))
        try:
            run_dbt(
                None,
                "parse",
                "--profile",
                profile.profile_name,
                "--target",
                profile.target_name,
                *COSMOS_DBT_FLAGS,
                "--target-path",
                str(scratch),
                profiles_dir=profile_path.parent,
                env=profile_env,
            )
            cache = cosmos_cache_dir()
            if cache is not None:
                target = paths.ensure_writable(cache / "target", CACHE_DIR_SETTING)
                for name in ("partial_parse.msgpack", "manifest.json"):
                    _replace_atomically(scratch / name, target / name)
            os.replace(scratch / "manifest.json", destination)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return destination


def cosmos_cache_dir() -> Path | None:
    """Cosmos' cache dir for the DAG's dbt task group (`[cosmos] cache_dir`); None when its caching is off."""
    from cosmos import settings

    if not (settings.enable_cache and settings.enable_cache_partial_parse):
        return None
    return Path(settings.cache_dir) / f"{DAG_ID}__{COSMOS_TASK_GROUP}"


def _airflow_connection() -> DatabaseUrl:
    """The database of the Airflow connection the DAG's tasks use, or one line saying how to define it."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipelines import orchestration

    try:
        return orchestration.database_from_connection()
    except AirflowNotFoundException:
        raise ConfigError(
            f"the Airflow connection {POSTGRES_CONN_ID!r} is not defined here: set "
            f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}=postgresql://user:password@host:5432/dbname as on the workers"
        ) from None


@contextlib.contextmanager
def _connection_in_env(database: DatabaseUrl) -> Iterator[None]:
    """The Airflow connection Cosmos maps dbt's profile from, pointed at `database` while the block runs."""
    name = f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}"
    previous = os.environ.get(name)
    os.environ[name] = str(database)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _replace_atomically(source: Path, destination: Path) -> None:
    """Copy `source` beside `destination`, then rename it over: a reader sees the old file or the new one."""
    fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(fd)
    try:
        shutil.copyfile(source, partial)
        shutil.copymode(source, partial)  # mkstemp's 0600 would hide it from workers running as another user
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
