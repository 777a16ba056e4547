"""Run the `spotify_elt` DAG once, end to end, under a real Airflow (metadata DB and home inside the project)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines import airflow_docs, paths, transform
from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID

DEFAULT_AIRFLOW_HOME = paths.PROJECT_ROOT / ".airflow"

QUIET_ENV = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    # dlt would otherwise look up every config key in Airflow Variables (seconds per run).
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
}


def airflow_env(database: DatabaseUrl, airflow_home: Path = DEFAULT_AIRFLOW_HOME) -> dict[str, str]:
    """Environment for Airflow commands: project home and dags, the database as connection `spotify_postgres`."""
    return {
        **os.environ,
        **QUIET_ENV,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.DAGS_DIR),
        f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": str(database),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        # Cosmos' dbt-docs plugin shows what the DAG's docs task publishes (Browse > dbt Docs); keep a user's own.
        airflow_docs.PROJECTS_ENV: os.environ.get(airflow_docs.PROJECTS_ENV)
        or airflow_docs.projects_setting(airflow_docs.default_docs_dir(airflow_home)),
    }


def _airflow(env: dict[str, str], *args: str, quiet: bool = False) -> None:
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow), *args], env=env, capture_output=quiet, text=True, check=False, cwd=paths.PROJECT_ROOT
    )
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise PipelineError(f"airflow {' '.join(args[:2])} failed (exit code {result.returncode}) {' '.join(detail)}")


def run_dag_once(database: DatabaseUrl, airflow_home: Path = DEFAULT_AIRFLOW_HOME) -> None:
    """Migrate Airflow's metadata DB, refresh the dbt manifest, then `airflow dags test` the DAG."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(database, airflow_home)
    _airflow(env, "db", "migrate", quiet=True)
    transform.parse(database)
    _airflow(env, "dags", "test", DAG_ID, "-f", str(paths.DAGS_DIR / "spotify_elt.py"))
