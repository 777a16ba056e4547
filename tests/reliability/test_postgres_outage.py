"""PostgreSQL stopping, refusing connections or restarting during a run, on a server of the test's own.

The run must fail with one clear line (no traceback), a retry once the server is back must succeed, and
nothing may be lost or duplicated. Airflow's retry of the load task is the same call again: its body
(`orchestration.load_account_task`) is tested here the way Airflow invokes it.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta

import pytest

from pipelines import orchestration
from pipelines.database import embedded as embedded_postgres
from pipelines.errors import PipelineError
from pipelines.load import default_pipelines_dir
from pipelines.settings import POSTGRES_CONN_ID
from tests.conftest import query
from tests.reliability.helpers import RECENTLY_PLAYED, assert_one_clear_error, cli_process, record_all_loaded
from tests.spotify.test_recently_played import START, add_plays
from tests.test_cli import cli_env, run_cli, spotify_env

RECOVERED = "run failed in one line; the retry loaded every play once"


@pytest.fixture
def env(embedded_server, spotify_server, tmp_path) -> dict[str, str]:
    _, database = embedded_server
    return cli_env(tmp_path, DATABASE_URL=str(database), COLUMNS="500", **spotify_env(spotify_server))


@pytest.fixture
def own_pipelines_dir(embedded_server):
    path = default_pipelines_dir(embedded_server[1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_stopping_while_the_run_talks_to_spotify(embedded_server, spotify_server, env, own_pipelines_dir):
    data_dir, database = embedded_server
    add_plays(spotify_server, 6)
    hold = spotify_server.hold_requests(RECENTLY_PLAYED)
    process = cli_process(env, "load")
    assert hold.wait_for_request(timeout=60)
    embedded_postgres.stop_server(data_dir)
    hold.release()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1
    assert_one_clear_error(stderr, "lost the connection to", "is PostgreSQL running", "***")
    assert database.password not in stderr

    refused = run_cli(env, "load")  # still down: refused before anything starts
    assert refused.returncode == 1
    assert_one_clear_error(refused.stderr, "cannot connect to", "Check DATABASE_URL")

    embedded_postgres.start_server(data_dir)
    retry = run_cli(env, "load")
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert "loaded 6 plays" in retry.stderr
    record_all_loaded(
        "PostgreSQL",
        "Server stops while the run waits on Spotify, then refuses connections",
        spotify_server,
        database,
        tried=2,
        result=RECOVERED,
    )


def test_postgres_stopping_in_the_middle_of_the_merge(embedded_server, spotify_server, env, own_pipelines_dir):
    data_dir, database = embedded_server
    add_plays(spotify_server, 4)
    assert run_cli(env, "load").returncode == 0
    add_plays(spotify_server, 5, START + timedelta(hours=1))
    blocker = database.connect()
    with blocker.cursor() as cur:
        cur.execute("lock table raw.recently_played in share mode")  # the merge now waits in its transaction
        process = cli_process(env, "load")
        deadline = time.monotonic() + 60
        while not merge_waits(database):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        embedded_postgres.stop_server(data_dir)  # fast shutdown: every session, the merge's too, is cut off
    _, stderr = process.communicate(timeout=180)

    assert process.returncode == 1
    assert_one_clear_error(stderr, "is PostgreSQL running")

    embedded_postgres.start_server(data_dir)
    retry = run_cli(env, "load")
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert "finishing 1 load package(s)" in retry.stderr
    record_all_loaded(
        "PostgreSQL",
        "Server stops while the merge into raw runs",
        spotify_server,
        database,
        tried=1,
        result="run failed in one line; the retry finished the pending package, every play once",
    )


def merge_waits(database) -> bool:
    waiting = query(
        database,
        "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    )
    return waiting[0][0] > 0


def test_postgres_restarting_mid_run_loses_nothing(embedded_server, spotify_server, env, own_pipelines_dir):
    data_dir, database = embedded_server
    add_plays(spotify_server, 5)
    hold = spotify_server.hold_requests(RECENTLY_PLAYED)
    process = cli_process(env, "load")
    assert hold.wait_for_request(timeout=60)
    embedded_postgres.stop_server(data_dir)
    embedded_postgres.start_server(data_dir)
    hold.release()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr[-2000:]  # dlt opens fresh connections for the load step
    record_all_loaded(
        "PostgreSQL",
        "Server restarts while the run waits on Spotify",
        spotify_server,
        database,
        tried=1,
        result="run completed on fresh connections; every play once",
    )


def test_airflow_load_task_fails_while_postgres_is_down_and_its_retry_succeeds(
    embedded_server, spotify_server, monkeypatch, tmp_path
):
    from pipelines import paths

    data_dir, database = embedded_server
    add_plays(spotify_server, 7)
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", str(database))
    for name, value in spotify_env(spotify_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DLT_PROJECT_DIR", str(tmp_path))
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)
    assert orchestration.accounts_task() == ["default"]  # the DAG's first task, while the server is up
    embedded_postgres.stop_server(data_dir)

    with pytest.raises(PipelineError, match="PostgreSQL|connect") as caught:
        # try 1 of the account's load: Airflow marks it failed and schedules a retry (DEFAULT_ARGS)
        orchestration.load_account_task("default")
    assert database.password not in str(caught.value)

    embedded_postgres.start_server(data_dir)
    summary = orchestration.load_account_task("default")  # the retry

    assert summary["plays_loaded"] == 7
    assert orchestration.DEFAULT_ARGS["retries"] >= 1
    record_all_loaded(
        "PostgreSQL",
        "Server down when the Airflow load task runs; Airflow retries it",
        spotify_server,
        database,
        tried=1,
        result="task failed with a PipelineError; the retry loaded every play",
    )
