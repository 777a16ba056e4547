"""The DAG: imports cleanly, is wired load -> dbt -> docs, and a full run succeeds against real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipelines import airflow_docs, paths, transform
from pipelines.database import DatabaseUrl
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID
from tests.conftest import SPOTIFY_CLIENT_SECRET, query

LOAD_TASK = "load_recently_played"
DOCS_TASK = "publish_dbt_docs"


@pytest.fixture(scope="module")
def manifest() -> None:
    # `dbt parse` never connects, so a placeholder database is enough to render the profile.
    transform.parse(DatabaseUrl("parse", "unused", "127.0.0.1", 5432, "parse"))


@pytest.fixture(scope="module")
def dagbag(manifest, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(paths.DAGS_DIR))


def test_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == [DAG_ID]


def test_dag_runs_one_at_a_time_hourly_without_catchup_and_retries(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.schedule == "@hourly"
    assert dag.tags and dag.doc_md
    assert all(task.retries >= 1 for task in dag.tasks)


def test_a_failing_load_retries_later_each_time(dagbag):
    load = dagbag.dags[DAG_ID].get_task(LOAD_TASK)
    # Airflow 3 reads the setting as the delay's multiplier per try: `True` would be 1, the same delay every time
    delays = [load.retry_delay * load.retry_exponential_backoff**attempt for attempt in range(load.retries)]
    assert delays == sorted(set(delays))
    assert load.max_retry_delay >= delays[-1]


def test_watchers_start_and_end_in_the_triggerer(dagbag):
    from importlib import import_module

    from cosmos.operators._watcher.base import BaseConsumerSensor

    watchers = [task for task in dagbag.dags[DAG_ID].tasks if isinstance(task, BaseConsumerSensor)]
    assert {task.task_id for task in watchers} >= {"transform.plays.run", "transform.plays.test"}
    for task in watchers:
        assert task.start_from_trigger, task.task_id
        args = task.start_trigger_args
        assert args.next_method == "execute_complete"
        assert args.trigger_kwargs["model_unique_id"] == task.model_unique_id
        # the triggerer builds the trigger from its class path and these kwargs alone
        module, name = args.trigger_cls.rsplit(".", 1)
        trigger = getattr(import_module(module), name)(**args.trigger_kwargs)
        assert trigger.serialize() == (args.trigger_cls, args.trigger_kwargs)
    plays = dagbag.dags[DAG_ID].get_task("transform.plays.run")
    assert plays.start_trigger_args.trigger_kwargs["model_unique_id"] == "model.spotify_history.plays"


def test_watchers_can_keep_cosmos_own_behaviour(manifest, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from cosmos.operators._watcher.base import BaseConsumerSensor

    monkeypatch.setenv("SPOTIFY_ELT_DBT_WATCHERS", "worker")
    dag = DagBag(dag_folder=str(paths.DAGS_DIR)).dags[DAG_ID]
    watchers = [task for task in dag.tasks if isinstance(task, BaseConsumerSensor)]
    assert watchers and not any(task.start_from_trigger for task in watchers)


def test_load_runs_before_every_dbt_task(dagbag):
    dag = dagbag.dags[DAG_ID]
    dbt_tasks = [task for task in dag.tasks if task.task_id not in (LOAD_TASK, DOCS_TASK)]
    assert {task.task_id.split(".")[0] for task in dbt_tasks} == {"transform"}
    assert dag.get_task(LOAD_TASK).upstream_task_ids == set()
    for task in dbt_tasks:
        assert LOAD_TASK in task.get_flat_relative_ids(upstream=True)


def test_docs_are_published_after_every_dbt_task_succeeds(dagbag):
    dag = dagbag.dags[DAG_ID]
    docs = dag.get_task(DOCS_TASK)
    transform_ids = {task.task_id for task in dag.tasks if task.task_id.startswith("transform.")}
    assert transform_ids <= docs.get_flat_relative_ids(upstream=True)
    assert docs.downstream_task_ids == set()
    assert docs.trigger_rule == "all_success"


def test_dbt_tasks_cover_the_source_and_every_mart_with_tests(dagbag):
    task_ids = set(dagbag.dags[DAG_ID].task_ids)
    expected_models = ["plays", "tracks", "artists", "albums", "track_artists", "listening_history"]
    for model in expected_models:
        assert f"transform.{model}.run" in task_ids
        assert f"transform.{model}.test" in task_ids
    # The source node is rendered, so its freshness and tests run in Airflow too.
    assert any("recently_played" in task_id and "source" in task_id for task_id in task_ids)


def run_dag_once(database_url, spotify_server, monkeypatch, tmp_path):
    """One `dag.test()` run against the test database and the sample server; returns the DAG run.

    The DAG is parsed afresh, as every Airflow task process does: Cosmos' profile mapping keeps the connection
    it first looked up, which would be another test's database."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", str(database_url))
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", SPOTIFY_CLIENT_SECRET)
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", spotify_server.current_refresh_token)
    monkeypatch.setenv("SPOTIFY_API_URL", spotify_server.api_url)
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", spotify_server.accounts_url)
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)
    # dag.test() runs one task at a time, so a watcher that starts before the producer would wait forever:
    # it runs the per-model design (the watcher design runs on a real scheduler in tests/deployment).
    monkeypatch.setenv("SPOTIFY_ELT_DBT_EXECUTION", "local")
    monkeypatch.setenv(airflow_docs.PROJECTS_ENV, airflow_docs.projects_setting(tmp_path / "dbt_docs"))

    # dag.test() runs the serialized DAG, so register the bundle and serialize the DAG first.
    dagbag = DagBag(dag_folder=str(paths.DAGS_DIR))
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    return dagbag.dags[DAG_ID].test()


def test_full_dag_run_loads_plays_and_builds_the_marts(
    manifest, airflow_db, database_url, spotify_server, monkeypatch, tmp_path
):
    from pipelines.sample_server import demo_history

    plays = demo_history(datetime.now(UTC), count=40)
    spotify_server.add_plays(plays)
    run = run_dag_once(database_url, spotify_server, monkeypatch, tmp_path)

    assert run.state == "success"
    assert query(database_url, "select count(*) from analytics.listening_history") == [(40,)]
    assert query(database_url, "select count(*) from analytics.plays") == [(40,)]
    # The docs task published what Cosmos' plugin serves: the project's models, with this database's catalog.
    assert sorted(path.name for path in (tmp_path / "dbt_docs").iterdir()) == [
        "catalog.json",
        "index.html",
        "manifest.json",
    ]
    manifest = json.loads((tmp_path / "dbt_docs" / "manifest.json").read_text())
    catalog = json.loads((tmp_path / "dbt_docs" / "catalog.json").read_text())
    assert "model.spotify_history.listening_sessions" in manifest["nodes"]
    assert catalog["nodes"]["model.spotify_history.plays"]["metadata"]["database"] == database_url.dbname


def test_dag_run_of_an_export_only_listener_builds_the_marts(
    manifest, airflow_db, database_url, spotify_server, monkeypatch, tmp_path
):
    """Importing the export before the API has shown a play (a new account, or no credentials yet in use)."""
    from pipelines.export.importer import import_history
    from tests.export.conftest import USER, export_zip

    import_history(database_url, [export_zip(tmp_path)], user_id=USER)
    run = run_dag_once(database_url, spotify_server, monkeypatch, tmp_path)

    assert run.state == "success"
    assert query(database_url, "select to_regclass('raw.recently_played')") == [(None,)]
    # the export's music plays (its episode, audiobook chapter and play without metadata are no music)
    assert query(database_url, "select count(*), count(*) filter (where source = 'export') from analytics.plays") == [
        (4, 4)
    ]
    assert query(database_url, "select count(*) from analytics.listening_plays") == [(4,)]
