"""The DAG: imports cleanly, is wired load -> dbt -> docs, and a full run succeeds against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines import paths, transform
from pipelines.database import DatabaseUrl
from pipelines.orchestration import docs as airflow_docs
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID
from tests.conftest import SPOTIFY_CLIENT_SECRET, listeners_with_accounts, query

LOAD_TASK = "load_account"
ACCOUNTS_TASK = "accounts_to_load"
REPORT_TASK = "report_loads"
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
    assert all(task.retries >= 1 for task in dag.tasks if task.task_id != REPORT_TASK)


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
        # all at once, when the run starts; the trigger of a retry waits for the tasks upstream of it instead
        assert task.trigger_rule == "always", task.task_id
        args = task.start_trigger_args
        assert args.next_method == "execute_complete"
        assert args.trigger_kwargs["model_unique_id"] == task.model_unique_id
        # those in the dbt group: a mapped load has no state of its own to wait for, only its instances have
        assert args.trigger_kwargs["upstream_task_ids"] == sorted(
            upstream for upstream in task.upstream_task_ids if upstream.startswith("transform.")
        )
        # the triggerer builds the trigger from its class path and these kwargs alone
        module, name = args.trigger_cls.rsplit(".", 1)
        trigger = getattr(import_module(module), name)(**args.trigger_kwargs)
        assert trigger.serialize() == (args.trigger_cls, args.trigger_kwargs)
    # the producer pushes its nodes' results, not their progress (pipelines/orchestration/watchers.py)
    producer = dagbag.dags[DAG_ID].get_task("transform.dbt_producer_watcher")
    assert type(producer).__name__ == "ResultsOnlyProducer"
    plays = dagbag.dags[DAG_ID].get_task("transform.plays.run")
    assert plays.start_trigger_args.trigger_kwargs["model_unique_id"] == "model.spotify_history.plays"
    # the lineage stays: a retry of `plays` waits for the tests of the staging model it reads
    assert "transform.stg_spotify__plays.test" in plays.start_trigger_args.trigger_kwargs["upstream_task_ids"]


def test_watchers_can_keep_cosmos_own_behaviour(manifest, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from cosmos.operators._watcher.base import BaseConsumerSensor

    monkeypatch.setenv("SPOTIFY_ELT_DBT_WATCHERS", "worker")
    dag = DagBag(dag_folder=str(paths.DAGS_DIR)).dags[DAG_ID]
    watchers = [task for task in dag.tasks if isinstance(task, BaseConsumerSensor)]
    assert watchers and not any(task.start_from_trigger for task in watchers)


def test_the_loads_run_before_every_dbt_task_and_dbt_runs_however_they_end(dagbag):
    dag = dagbag.dags[DAG_ID]
    dbt_tasks = [task for task in dag.tasks if task.task_id.startswith("transform.")]
    assert dag.get_task(ACCOUNTS_TASK).upstream_task_ids == set()
    assert dag.get_task(LOAD_TASK).upstream_task_ids == {ACCOUNTS_TASK}
    for task in dbt_tasks:
        assert LOAD_TASK in task.get_flat_relative_ids(upstream=True)
    # dbt's build starts however the loads ended (its watchers start with the run: they wait for their results)
    first = {task.task_id: task.trigger_rule for task in dbt_tasks if LOAD_TASK in task.upstream_task_ids}
    assert first.pop("transform.dbt_producer_watcher") == "all_done"
    assert first and set(first.values()) == {"always"}
    # the account outcomes end the run: a leaf, so a failed load fails the DAG run even when dbt is green
    report = dag.get_task(REPORT_TASK)
    assert report.trigger_rule == "all_done" and report.downstream_task_ids == set()
    assert LOAD_TASK in report.upstream_task_ids


def test_the_load_is_mapped_over_accounts_in_the_spotify_pool(dagbag):
    load = dagbag.dags[DAG_ID].get_task(LOAD_TASK)
    assert load.pool == "spotify_api"
    assert "account" in load.map_index_template


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


def single_listener_settings(spotify_server, monkeypatch, tmp_path) -> None:
    """The app and the listener's refresh token in the environment, as a single-listener setup has them."""
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", SPOTIFY_CLIENT_SECRET)
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", spotify_server.current_refresh_token)
    monkeypatch.setenv("SPOTIFY_API_URL", spotify_server.api_url)
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", spotify_server.accounts_url)
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)


def run_dag_once(database_url, spotify_server, monkeypatch, tmp_path):
    """One `dag.test()` run against the test database and the sample server; returns the DAG run.

    The DAG is parsed afresh, as every Airflow task process does: Cosmos' profile mapping keeps the connection
    it first looked up, which would be another test's database."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", str(database_url))
    single_listener_settings(spotify_server, monkeypatch, tmp_path)
    # dag.test() runs one task at a time, so a watcher that starts before the producer would wait forever:
    # it runs the per-model design (the watcher design runs on a real scheduler in tests/deployment).
    monkeypatch.setenv("SPOTIFY_ELT_DBT_EXECUTION", "local")
    monkeypatch.setenv(airflow_docs.PROJECTS_ENV, airflow_docs.projects_setting(tmp_path / "dbt_docs"))

    # dag.test() runs the serialized DAG, so register the bundle and serialize the DAG first.
    dagbag = DagBag(dag_folder=str(paths.DAGS_DIR))
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    return dagbag.dags[DAG_ID].test()


def test_dag_run_of_an_export_only_listener_builds_the_marts(
    manifest, airflow_db, database_url, spotify_server, monkeypatch, tmp_path
):
    """Importing the export before the API has shown a play (a new account, or no credentials yet in use), its tables
    as an older version left them."""
    from pipelines.export.importer import import_history
    from tests.export.conftest import USER, export_zip

    import_history(database_url, [export_zip(tmp_path)], user_id=USER)
    # as the version before `file_kind` left its tables: the DAG's run migrates them before dbt reads them
    query(database_url, "alter table raw.export_files drop column file_kind")
    run = run_dag_once(database_url, spotify_server, monkeypatch, tmp_path)

    assert run.state == "success"
    assert query(database_url, "select to_regclass('raw.recently_played')") == [(None,)]
    # the export's music plays (its episode, audiobook chapter and play without metadata are no music)
    assert query(database_url, "select count(*), count(*) filter (where source = 'export') from analytics.plays") == [
        (4, 4)
    ]
    assert query(database_url, "select count(*) from analytics.listening_plays") == [(4,)]


def test_a_dag_run_maps_the_load_over_the_accounts_and_one_failing_never_holds_the_others(
    manifest, airflow_db, database_url, spotify_server, monkeypatch, tmp_path
):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session
    from cryptography.fernet import Fernet

    from pipelines.sample_server import demo_history
    from pipelines.spotify import accounts, settings
    from pipelines.spotify.token_store import AccountStore, TokenCipher

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", key)
    monkeypatch.setattr(settings, "BACKOFF_BASE_SECONDS", 0.05)
    store = AccountStore(database_url, cipher=TokenCipher([key], "the test key"))
    spotify_server.add_plays(demo_history(datetime.now(UTC), count=20))
    # the single-listener setup's token becomes the account `default` before others are added, as `accounts add` does
    single_listener_settings(spotify_server, monkeypatch, tmp_path)
    accounts.ensure_default_account(database_url, store=store)
    now = datetime.now(UTC)
    names = ["ben", "cy", "dee", "eve"]
    listeners = listeners_with_accounts(spotify_server, store, names, plays_each=8, ending=now, authorised_at=now)
    listeners["ben"].revoke_refresh_token()
    rotated = listeners["cy"].rotate_refresh_token()
    listeners["dee"].enqueue_rate_limit("/v1/me/player/recently-played", retry_after=1, quota=True, times=2)
    listeners["dee"].enqueue_fault("/v1/me/player/recently-played", 500, times=2)

    run = run_dag_once(database_url, spotify_server, monkeypatch, tmp_path)

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        loads = {ti.rendered_map_index: ti.state for ti in tis if ti.task_id == LOAD_TASK}
        others = {ti.task_id: ti.state for ti in tis if ti.task_id != LOAD_TASK}
    # one instance per account, labelled with its name; ben's dead token fails his alone
    assert loads == {"ben": "failed", "cy": "success", "default": "success", "dee": "success", "eve": "success"}
    assert others[REPORT_TASK] == "failed" and run.state == "failed"
    assert {task: state for task, state in others.items() if task != REPORT_TASK} == dict.fromkeys(
        [task for task in others if task != REPORT_TASK], "success"
    )
    plays = query(database_url, "select user_id, count(*), count(distinct play_id) from analytics.plays group by 1")
    assert sorted(plays) == [("cy-id", 8, 8), ("dee-id", 8, 8), ("eve-id", 8, 8), ("listener-1", 20, 20)]
    assert store.get("ben").status == "needs_auth"
    assert store.refresh_token("cy") == rotated
