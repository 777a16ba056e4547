"""What the Airflow DAG wires together: the load task's body and the Cosmos configs, built once.

Nothing here touches the network or the database at import time, so the DAG parses in well under a second.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup
from airflow.task.trigger_rule import TriggerRule
from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.settings import DEFAULT_SCHEDULE, POSTGRES_CONN_ID
from pipelines.transform import dbt_executable

log = logging.getLogger(__name__)

ACCOUNTS_TASK_ID = "accounts_to_load"
LOAD_TASK_ID = "load_account"  # mapped over the list ACCOUNTS_TASK_ID returns
# Bounds how many accounts' loads call Spotify at once, across every worker (`airflow pools set`).
SPOTIFY_POOL = "spotify_api"
SPOTIFY_POOL_SLOTS_ENV = "SPOTIFY_ELT_API_POOL_SLOTS"
DEFAULT_POOL_SLOTS = 4
SPOTIFY_POOL_DESCRIPTION = "Spotify Web API calls of the spotify_elt DAG: one slot per account loading"


def pool_command(airflow: str = "airflow") -> list[str]:
    """The deploy step that creates (or resizes) the pool: `airflow pools set spotify_api N ...`.

    The scheduler never queues a task whose pool does not exist, so it runs before the DAG's first run."""
    slots = os.environ.get(SPOTIFY_POOL_SLOTS_ENV) or str(DEFAULT_POOL_SLOTS)
    if not slots.isdigit() or int(slots) < 1:
        raise ConfigError(f"{SPOTIFY_POOL_SLOTS_ENV}={slots!r} must be a whole number of slots, 1 or more")
    return [airflow, "pools", "set", SPOTIFY_POOL, slots, SPOTIFY_POOL_DESCRIPTION]


# The load retries with backoff: Spotify and the network fail transiently, and a retry loses nothing.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    # the delay's multiplier per try (1, 2, 4, 8 min); Airflow 3 reads `True` as 1, a constant delay
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
    # Paging is bounded, so a load that runs this long is hung: fail it (and retry) well before the next hour.
    "execution_timeout": timedelta(minutes=15),
}
# dbt failures are mostly deterministic (a failing test): one quick retry covers a database blip.
DBT_DEFAULT_ARGS: dict[str, Any] = {
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    # The producer's `dbt build` (a first full build of a long history takes minutes), and the watchers of it.
    "execution_timeout": timedelta(minutes=40),
}
DBT_OPERATOR_ARGS: dict[str, Any] = {
    # A watcher asks for its model's result every second, not every 10 s: each level of the graph waits on it.
    "poke_interval": 1,
    # Cosmos' asset URIs fail Airflow 3's validation (a warning per task); nothing here schedules on assets.
    "emit_datasets": False,
}


def schedule() -> str | None:
    """`SPOTIFY_ELT_SCHEDULE` or hourly: Spotify shows only the last 50 plays, so wider gaps can lose plays.

    `none` leaves only manual and API triggers (another scheduler, or a deployment's smoke test, drives runs)."""
    configured = os.environ.get("SPOTIFY_ELT_SCHEDULE") or DEFAULT_SCHEDULE
    return None if configured.lower() == "none" else configured


# Written only by the deploy-time parse (`python -m pipelines parse`, `transform.parse`), atomically, in the state
# dir: never `dbt_project/target/manifest.json`, which any dbt run on the host may be rewriting.
MANIFEST = paths.dbt_dag_dir() / "manifest.json"


def project_config() -> ProjectConfig:
    """The dbt project, rendered from the deploy-time parse's manifest when there is one (~0.3 s to parse)."""
    return ProjectConfig(
        dbt_project_path=paths.DBT_PROJECT_DIR,
        # Cosmos refuses a manifest_path that does not exist; without one it renders through `dbt ls` instead.
        manifest_path=MANIFEST if MANIFEST.exists() else None,
        project_name="spotify_history",
        install_dbt_deps=False,
    )


def profile_config() -> ProfileConfig:
    """dbt's profile, mapped from the Airflow connection at run time (the password travels in an env var)."""
    return ProfileConfig(
        profile_name="spotify",
        target_name="airflow",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=POSTGRES_CONN_ID,
            # Cosmos' mapping defaults to 1 thread; the CLI's profile runs DBT_THREADS (4) nodes at once.
            profile_args={"schema": "analytics", "threads": int(os.environ.get("DBT_THREADS") or 4)},
        ),
    )


EXECUTION_MODES = {"local": ExecutionMode.LOCAL, "watcher": ExecutionMode.WATCHER}
TEST_BEHAVIORS = {"after_each": TestBehavior.AFTER_EACH, "build": TestBehavior.BUILD}


def _choice(env: str, choices: dict[str, Any], default: str) -> Any:
    value = os.environ.get(env) or default
    if value not in choices:
        raise ConfigError(f"{env}={value!r} is not one of {', '.join(choices)}")
    return choices[value]


INVOCATION_MODES = {"runner": InvocationMode.DBT_RUNNER, "subprocess": InvocationMode.SUBPROCESS}


def execution_config() -> ExecutionConfig:
    """dbt in-process (dbtRunner, the default) or as a subprocess, with the dbt installed beside this Python."""
    return ExecutionConfig(
        execution_mode=_choice("SPOTIFY_ELT_DBT_EXECUTION", EXECUTION_MODES, "watcher"),
        dbt_executable_path=dbt_executable(),
        invocation_mode=_choice("SPOTIFY_ELT_DBT_INVOCATION", INVOCATION_MODES, "runner"),
    )


WATCHER_PLACES = {"triggerer": True, "worker": False}


def watchers_in_triggerer() -> bool:
    """Whether Cosmos' watcher tasks start and end in the triggerer (airflow_watchers.py), the default.

    `SPOTIFY_ELT_DBT_WATCHERS=worker` keeps Cosmos' own behaviour (each watcher starts on a worker, defers, and
    resumes on a worker): for a Cosmos release whose watchers airflow_watchers.py has not been checked against."""
    return _choice("SPOTIFY_ELT_DBT_WATCHERS", WATCHER_PLACES, "triggerer")


def render_config() -> RenderConfig:
    """Tests after each model; the source node rendered so its tests and freshness run too."""
    return RenderConfig(
        load_method=LoadMode.AUTOMATIC,
        test_behavior=_choice("SPOTIFY_ELT_DBT_TESTS", TEST_BEHAVIORS, "after_each"),
        # Without this Cosmos drops source nodes, and with them source tests and freshness.
        source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
        # A relationships test between two marts must wait for both, not run after whichever Cosmos picks.
        should_detach_multiple_parents_tests=True,
    )


def database_from_connection(conn_id: str = POSTGRES_CONN_ID) -> DatabaseUrl:
    """The database of an Airflow connection, from its fields (its URI form uses a driver dlt rejects)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if not (conn.host and conn.login and conn.password and conn.schema):
        raise ConfigError(
            f"Airflow connection {conn_id!r} needs host, login, password and schema (the database name), "
            f"e.g. AIRFLOW_CONN_{conn_id.upper()}=postgresql://user:password@host:5432/dbname"
        )
    return DatabaseUrl(conn.login, conn.password, conn.host, int(conn.port or 5432), conn.schema)


def accounts_task() -> list[str]:
    """Body of the DAG's first task: the accounts to load, each skipped one and each expiring token said in the log,
    after migrating an older version's raw export tables."""
    from pipelines.export.raw_tables import upgrade_if_imported
    from pipelines.load.per_account import accounts_to_load, expiry_lines, skipped_accounts

    database = database_from_connection()
    # dbt reads what an older version's export tables lack until migrated; the loads never touch those tables, so
    # migrating here, first, serves the transform after them without a task of its own
    upgrade_if_imported(database)
    names = accounts_to_load(database)
    for outcome in skipped_accounts(database):
        log.warning(outcome.line())  # report_loads fails the run for each that needs authorising
    for line in expiry_lines(database):
        log.warning(line)
    log.info("loading %d account(s): %s", len(names), ", ".join(names) or "none")
    return names


def load_account_task(account: str) -> dict[str, Any]:
    """Body of the mapped load task, one instance per account: build the dlt source here, never at parse time.

    A dead refresh token fails the instance without retries (Spotify says not to retry `invalid_grant`); any
    other failure is retried with the DAG's backoff. Either way the other accounts' instances go on.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from pipelines.database.locking import pipeline_lock
    from pipelines.load.per_account import FAILED, NEEDS_AUTH, SKIPPED, load_account

    database = database_from_connection()
    # Shared with the other accounts' loads; a CLI `load` or `run` holds it alone, so the two never interleave.
    with pipeline_lock(database, f"airflow load_account {account}", shared=True):
        outcome = load_account(database, account)
    if outcome.status == NEEDS_AUTH:
        raise AirflowFailException(outcome.line())
    if outcome.status == FAILED:
        raise PipelineError(outcome.line())
    if outcome.status == SKIPPED:
        raise AirflowSkipException(outcome.line())
    log.info(outcome.line())
    return outcome.as_dict()


def after_every_load(group: TaskGroup) -> None:
    """Make the first dbt tasks of `group` (wired after the loads) start once every load has ended, however it
    ended: one account failing never holds the others' plays back from the marts."""
    for task in group.get_roots():
        task.trigger_rule = TriggerRule.ALL_DONE


def report_loads_task(accounts: list[str]) -> list[str]:
    """Body of the last task: one line per account; it fails, and the DAG run with it, if any account's load failed
    or an account needs authorising (its plays are not being loaded)."""
    from airflow.sdk import get_current_context

    from pipelines.load.per_account import skipped_accounts

    context = get_current_context()
    run_id = context["run_id"]
    # {run id: {"load_account_<map index>": state}}, through the Task SDK (no metadata-DB access from a task)
    states = context["ti"].get_task_states(dag_id=context["dag"].dag_id, task_ids=[LOAD_TASK_ID], run_ids=[run_id])
    states = states.get(run_id, {})
    lines, failed = [], []
    for index, account in enumerate(accounts):
        state = states.get(f"{LOAD_TASK_ID}_{index}") or "unknown"
        lines.append(f"account {account}: load {state}")
        if state not in ("success", "skipped"):
            failed.append(account)
    # accounts this run did not map: paused, or needing authorisation since before it
    for outcome in skipped_accounts(database_from_connection()):
        if outcome.account in accounts:
            continue
        lines.append(outcome.line())
        if outcome.failed:
            failed.append(outcome.account)
    for line in lines:
        log.info(line)
    if failed:
        raise PipelineError(
            f"{len(failed)} account(s) not loaded: {', '.join(failed)}; the transform ran with the others' plays. "
            "See the lines above, and each `load_account` instance's log, for why"
        )
    return lines
