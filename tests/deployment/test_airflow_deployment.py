"""The DAG on a real Airflow deployment, driven through the REST API as a user would.

Each test creates an Airflow home and a metadata database on the real PostgreSQL, starts `scheduler`,
`dag-processor`, `api-server` and `triggerer` (and, for Celery, two workers) as processes, triggers
`spotify_elt`, waits for the run, checks the marts exactly, and stops everything it started.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from pipelines.settings import DAG_ID
from tests.conftest import listeners_with_accounts, query
from tests.deployment.airflow_deployment import AirflowDeployment
from tests.test_cli import spotify_env

pytestmark = pytest.mark.deployment

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
LOAD_TASK = "load_account"
TOKEN_KEY = Fernet.generate_key().decode()
PLAYS = 40
HOURLY_PLAYS = 6


def documented_celery_settings() -> dict[str, str]:
    """The Celery settings docs/deploy.md shows: the `sh` block after its `celery-settings` marker."""
    text = DEPLOY_DOC.read_text()
    block = re.search(r"<!-- celery-settings -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/deploy.md lost its Celery settings block"
    settings = {}
    for line in block.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.removeprefix("export ").partition("=")
            settings[key] = value.strip("'\"")
    return settings


@pytest.fixture
def deployment(
    tmp_path: Path, postgres_admin, database_url, spotify_server, request: pytest.FixtureRequest
) -> Iterator[AirflowDeployment]:
    deployment = AirflowDeployment(home=tmp_path / "airflow", admin_db=postgres_admin, pipeline_db=database_url)
    deployment.settings = {
        **spotify_env(spotify_server),
        "SPOTIFY_ELT_HOME": str(tmp_path / "state"),
        # runs come from this test's trigger only: an hourly run of the scheduler's own would queue in front
        "SPOTIFY_ELT_SCHEDULE": "none",
        # the key every worker and the CLI share for the accounts' stored refresh tokens
        "SPOTIFY_TOKEN_KEY": TOKEN_KEY,
    }
    yield deployment
    deployment.close()


def start(deployment: AirflowDeployment) -> None:
    deployment.migrate()
    # the deploy step docs/deploy.md asks for, in the deployment's environment
    deployment.run_pipelines("parse")
    deployment.start_components()
    deployment.wait_for_dag(DAG_ID)


def assert_marts_hold_every_play_once(database_url, plays: int) -> None:
    assert query(database_url, "select count(*), count(distinct played_at) from raw.recently_played") == [
        (plays, plays)
    ]
    assert query(database_url, "select count(*), count(distinct play_id) from analytics.plays") == [(plays, plays)]
    assert query(database_url, "select count(*) from analytics.listening_history") == [(plays,)]


def states(tis: list[dict[str, Any]]) -> dict[str, str]:
    """Each task instance's state, mapped ones as `task[label]` (the label is the account, map_index_template)."""
    return {_name(ti): ti["state"] for ti in tis}


def _name(ti: dict[str, Any]) -> str:
    return ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti.get('rendered_map_index')}]"


def plays_per_user(database_url) -> dict[str, tuple[int, int]]:
    rows = query(
        database_url, "select user_id, count(*), count(distinct played_at) from raw.recently_played group by 1"
    )
    return {user: (count, distinct) for user, count, distinct in rows}


def test_a_run_on_the_local_executor_loads_every_account_and_builds_every_mart(
    deployment, database_url, spotify_server, monkeypatch
):
    from pipelines.sample_server import demo_history
    from pipelines.spotify.accounts import ensure_default_account
    from pipelines.spotify.token_store import AccountStore, TokenCipher

    # days back: the hour's plays below (sessions apart by up to half a day) all come after these
    spotify_server.add_plays(demo_history(datetime.now(UTC) - timedelta(days=3), count=PLAYS))
    # three more listeners beside the single-listener setup's (which becomes the account `default`)
    store = AccountStore(database_url, cipher=TokenCipher([TOKEN_KEY], "the test key"))
    # the single-listener setup's token becomes the account `default` (as `accounts add` does before adding others)
    for name, value in deployment.settings.items():
        monkeypatch.setenv(name, value)
    ensure_default_account(database_url, store=store)
    assert [account.name for account in store.list()] == ["default"]
    days_ago = datetime.now(UTC) - timedelta(days=3)
    others = listeners_with_accounts(
        spotify_server, store, ["ben", "cy", "dee"], plays_each=10, ending=days_ago, authorised_at=datetime.now(UTC)
    )
    others["ben"].revoke_refresh_token()
    rotated = others["cy"].rotate_refresh_token()
    others["dee"].enqueue_rate_limit("/v1/me/player/recently-played", retry_after=1, times=2)
    others["dee"].enqueue_fault("/v1/me/player/recently-played", 503, times=2)
    start(deployment)

    run_id = deployment.trigger(DAG_ID)
    state = deployment.wait_for_run(DAG_ID, run_id)
    tis = states(deployment.task_instances(DAG_ID, run_id))

    # ben's dead token fails his load, at once and for good; the others load and the marts build
    assert state == "failed", tis
    assert {task: s for task, s in tis.items() if s != "success"} == {
        f"{LOAD_TASK}[ben]": "failed",
        "report_loads": "failed",
    }
    ben = deployment.tries(DAG_ID, run_id, LOAD_TASK, map_index=0)
    assert [(t["try_number"], t["state"]) for t in ben] == [(1, "failed")]
    assert plays_per_user(database_url) == {"listener-1": (PLAYS, PLAYS), "cy-id": (10, 10), "dee-id": (10, 10)}
    assert query(database_url, "select count(*) from analytics.plays") == [(PLAYS + 20,)]
    assert store.get("ben").status == "needs_auth"
    assert store.refresh_token("cy") == rotated
    # every model still has a task of its own in the UI
    assert {"transform.plays.run", "transform.listening_sessions.run", "transform.dbt_producer_watcher"} <= set(tis)

    catalog = deployment.home / "dbt_docs" / "catalog.json"  # where the docs task published (airflow_env's default)
    first_published = catalog.stat().st_mtime_ns

    # ben authorises again; the hourly run after it: everyone's new plays, ben's whole history, incremental marts
    store.add(
        "ben",
        others["ben"].reauthorize(),
        user_id="ben-id",
        client_id="test-client-id",
        authorised_at=datetime.now(UTC),
    )
    spotify_server.add_plays(demo_history(datetime.now(UTC), count=HOURLY_PLAYS, seed=11))
    run_id = deployment.trigger(DAG_ID)
    state = deployment.wait_for_run(DAG_ID, run_id)
    tis = deployment.task_instances(DAG_ID, run_id)

    assert state == "success", states(tis)
    assert {(ti["state"], ti["try_number"]) for ti in tis} == {("success", 1)}
    assert plays_per_user(database_url) == {
        "listener-1": (PLAYS + HOURLY_PLAYS,) * 2,
        "ben-id": (10, 10),
        "cy-id": (10, 10),
        "dee-id": (10, 10),
    }
    assert query(database_url, "select count(*), count(distinct play_id) from analytics.plays") == [(PLAYS + 36,) * 2]
    # same project, same database: the docs published by the first run are still current, and were left alone
    assert catalog.stat().st_mtime_ns == first_published
    # the watchers waited in the triggerer and ended there: none of them took a worker (airflow_watchers.py)
    on_workers = {ti["task_id"] for ti in tis if ti["hostname"]}
    assert on_workers == {
        "accounts_to_load",
        LOAD_TASK,
        "report_loads",
        "transform.dbt_producer_watcher",
        "publish_dbt_docs",
    }


def test_a_model_that_fails_in_the_build_is_retried_alone(deployment, postgres_admin, database_url, spotify_server):
    from pipelines.sample_server import demo_history

    spotify_server.add_plays(demo_history(datetime.now(UTC) - timedelta(days=3), count=PLAYS))
    start(deployment)
    assert deployment.wait_for_run(DAG_ID, deployment.trigger(DAG_ID)) == "success"

    # A transient fault during the producer's `dbt build`: the loader may not create relations in analytics, so
    # the table `coverage` and the views there fail; models updated in place (the incremental marts) still build.
    as_admin = postgres_admin.with_dbname(database_url.dbname)
    query(as_admin, f'revoke create on schema analytics from "{database_url.user}"')
    spotify_server.add_plays(demo_history(datetime.now(UTC), count=HOURLY_PLAYS, seed=11))
    run_id = deployment.trigger(DAG_ID)
    producer = "transform.dbt_producer_watcher"
    deadline = time.monotonic() + 300
    while states(deployment.task_instances(DAG_ID, run_id)).get(producer) not in ("failed", "up_for_retry", "success"):
        assert time.monotonic() < deadline, "the producer's build did not end"
        time.sleep(1)
    # fixed before the failed watchers' retries (30 s later), as an operator would
    query(as_admin, f'grant create on schema analytics to "{database_url.user}"')
    state = deployment.wait_for_run(DAG_ID, run_id)
    tis = {ti["task_id"]: ti for ti in deployment.task_instances(DAG_ID, run_id)}

    assert state == "success", {task: ti["state"] for task, ti in tis.items()}
    assert_marts_hold_every_play_once(database_url, PLAYS + HOURLY_PLAYS)
    # the failed model's first try ended in the triggerer; its retry ran dbt for it alone, on a worker
    coverage = deployment.tries(DAG_ID, run_id, "transform.coverage.run")
    assert [(t["try_number"], t["state"], bool(t["hostname"])) for t in coverage] == [
        (1, "failed", False),
        (2, "success", True),
    ]
    # nothing that succeeded was run again: not the load, not the marts that built; the build's retry skips itself
    retried = {task for task, ti in tis.items() if ti["try_number"] > 1}
    assert {LOAD_TASK, "transform.plays.run", "transform.plays.test"}.isdisjoint(retried)
    assert [(t["try_number"], t["state"]) for t in deployment.tries(DAG_ID, run_id, producer)] == [
        (1, "failed"),
        (2, "skipped"),
    ]


def test_celery_workers_finish_the_run_when_one_is_killed_mid_task(deployment, database_url, spotify_server, redis_url):
    from pipelines.sample_server import demo_history

    settings = documented_celery_settings()
    assert settings["AIRFLOW__CORE__EXECUTOR"].endswith(".CeleryExecutor")
    # the documented settings, with this test's own broker database and metadata database as the backend
    settings["AIRFLOW__CELERY__BROKER_URL"] = redis_url
    settings["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + deployment.metadata_url
    deployment.settings.update(settings)
    deployment.executor = settings["AIRFLOW__CORE__EXECUTOR"]
    spotify_server.add_plays(demo_history(datetime.now(UTC), count=PLAYS))
    start(deployment)
    deployment.start_celery_worker("worker-a")
    deployment.start_celery_worker("worker-b")

    # Hold the load's first request: the load task is then surely running on one of the workers.
    hold = spotify_server.hold_requests("/v1/me/player/recently-played")
    run_id = deployment.trigger(DAG_ID)
    assert hold.arrived.wait(timeout=240), deployment.log_tail("scheduler")
    victim, survivor = _by_who_runs(deployment, LOAD_TASK, try_number=1, workers=("worker-a", "worker-b"))
    deployment.kill(f"worker-{victim}")
    hold.release()

    state = deployment.wait_for_run(DAG_ID, run_id, timeout=900)
    tis = deployment.task_instances(DAG_ID, run_id)
    tries = deployment.tries(DAG_ID, run_id, LOAD_TASK, map_index=0)

    assert state == "success", states(tis)
    # the killed try failed, and Airflow retried it on the worker that was left
    assert [(attempt["try_number"], attempt["state"]) for attempt in tries] == [(1, "failed"), (2, "success")]
    assert _executed(deployment, survivor, LOAD_TASK, try_number=2)
    assert_marts_hold_every_play_once(database_url, PLAYS)


def _executed(deployment: AirflowDeployment, worker: str, task_id: str, try_number: int) -> bool:
    """Whether `worker`'s log shows it executing that try (the task instance's hostname is the machine's)."""
    log = (deployment.home / "logs" / f"worker-{worker}.log").read_text(errors="replace")
    return re.search(rf"task_id={re.escape(task_id)}/(map_index=\d+/)?attempt={try_number}\.log", log) is not None


def _by_who_runs(
    deployment: AirflowDeployment, task_id: str, try_number: int, workers: tuple[str, str], timeout: float = 60
) -> tuple[str, str]:
    """(the worker executing that try, the other one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, other in (workers, workers[::-1]):
            if _executed(deployment, worker, task_id, try_number):
                return worker, other
        time.sleep(0.2)
    raise TimeoutError(f"no worker log shows {task_id} try {try_number}")
