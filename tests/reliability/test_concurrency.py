"""Two runs for the same database never interleave: the CLI's advisory lock, and the DAG's max_active_runs."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.database.locking import EXIT_LOCKED
from tests.reliability.helpers import RECENTLY_PLAYED, assert_one_clear_error, cli_process, record_all_loaded
from tests.reliability.report import record
from tests.spotify.test_recently_played import add_plays
from tests.test_cli import run_cli

# Every CLI command that writes to the database takes the lock; each is tried while a `load` holds it.
LOCKING_COMMANDS = {
    "load": ["load"],
    "run": ["run"],
    "transform": ["transform"],
    "import-history": ["import-history", "{tmp_path}"],
    "grant-roles": ["grant-roles"],
}


@pytest.fixture
def held_load(spotify_server, loader_env, child_pipelines_dir):
    """A `load` that has taken the lock and waits for Spotify's answer until the test lets it go."""
    add_plays(spotify_server, 5)
    hold = spotify_server.hold_requests(RECENTLY_PLAYED)
    process = cli_process(loader_env, "load")
    assert hold.wait_for_request(timeout=60), "the first load never reached Spotify"
    yield process, hold
    hold.release()
    if process.poll() is None:
        process.communicate(timeout=60)


@pytest.mark.parametrize("command", list(LOCKING_COMMANDS))
def test_a_second_run_exits_75_naming_the_run_that_holds_the_lock(
    command, held_load, loader_env, spotify_server, database_url, tmp_path
):
    first, hold = held_load
    args = [arg.format(tmp_path=tmp_path) for arg in LOCKING_COMMANDS[command]]

    second = run_cli(loader_env, *args)

    assert second.returncode == EXIT_LOCKED
    assert_one_clear_error(second.stderr, "another run is using", "`load pid", "holds the pipeline lock", command)
    assert database_url.password not in second.stderr
    hold.release()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr[-2000:]
    record_all_loaded(
        "Concurrency",
        "A second CLI command while a `load` runs (load, run, transform, import-history, grant-roles)",
        spotify_server,
        database_url,
        tried=1,
        result="second exits 75 with one line naming the holder; first completes",
    )


def test_the_lock_dies_with_a_killed_holder(held_load, loader_env, spotify_server, database_url):
    first, hold = held_load
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    hold.release()

    second = run_cli(loader_env, "load")  # straight away: PostgreSQL ended the dead session and its lock

    assert second.returncode == 0, second.stderr[-2000:]
    record_all_loaded(
        "Concurrency",
        "Lock holder killed with SIGKILL, next run started at once",
        spotify_server,
        database_url,
        tried=1,
        result="lock ended with the session; the next run loaded every play",
    )


def test_the_airflow_load_task_and_a_cli_load_never_interleave(
    held_load, loader_env, spotify_server, database_url, monkeypatch, tmp_path
):
    from pipelines import orchestration, paths
    from pipelines.database.locking import PipelineLockedError
    from pipelines.settings import POSTGRES_CONN_ID

    first, hold = held_load
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", str(database_url))
    for name, value in loader_env.items():
        if name.startswith("SPOTIFY_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)

    # the CLI's load stored the configured token as the account `default` before it took Spotify's answer
    assert orchestration.accounts_task() == ["default"]
    with pytest.raises(PipelineLockedError, match="`load pid"):
        orchestration.load_account_task("default")  # Airflow marks the try failed and retries it later

    hold.release()
    first.communicate(timeout=60)
    assert first.returncode == 0
    # the retry: everything was already loaded, once
    assert orchestration.load_account_task("default")["plays_loaded"] == 0
    record_all_loaded(
        "Concurrency",
        "Airflow load task while a CLI `load` runs",
        spotify_server,
        database_url,
        tried=1,
        result="task fails with PipelineLockedError and Airflow retries it; nothing interleaves",
    )


@pytest.fixture
def serialized_dag(elt_dagbag):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from pipelines.settings import DAG_ID

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(elt_dagbag, "dags-folder", None)
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == DAG_ID).update({"is_paused": False})
    yield DAG_ID
    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.run_id.like("concurrency-%")).delete()
        session.query(DagModel).filter(DagModel.dag_id == DAG_ID).update({"is_paused": True})


def test_airflow_scheduler_starts_one_dag_run_at_a_time(serialized_dag):
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for n in range(2):  # two runs queued at once, e.g. a schedule tick and a manual trigger
        moment = an_hour_ago - timedelta(minutes=n)
        trigger_dag(
            serialized_dag,
            triggered_by=DagRunTriggeredByType.TEST,
            run_id=f"concurrency-{n}",
            logical_date=moment,
            run_after=moment,
        )
    scheduler = SchedulerJobRunner(job=Job())

    def states() -> list[str]:
        with create_session() as session:
            scheduler._start_queued_dagruns(session)  # the scheduler loop's decision, against the real DAG
        with create_session() as session:
            runs = session.query(DagRun).filter(DagRun.run_id.like("concurrency-%")).order_by(DagRun.run_id)
            return [run.state for run in runs]

    assert sorted(states()) == ["queued", "running"]
    with create_session() as session:
        session.query(DagRun).filter(DagRun.state == "running", DagRun.run_id.like("concurrency-%")).update(
            {"state": "success"}
        )
    assert sorted(states()) == ["running", "success"]  # the second starts only once the first is done
    record(
        "Concurrency",
        "Two DAG runs queued at once (max_active_runs=1)",
        tried=1,
        lost=None,
        duplicated=None,
        result="Airflow's scheduler starts one; the other waits until it ends",
    )
