"""`make run`'s progress lines and summary figures, from task-instance snapshots and dbt's log lines.

Whatever shape Cosmos gives the dbt tasks (a task per model and test, `dbt build` per model, or the watcher
mode's producer and consumers), the lines and the counts come out the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.orchestration.progress import DbtResults, MetadataDatabase, ProgressLines, TaskInstance, plays_loaded

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def at(seconds: int | None) -> datetime | None:
    return T0 + timedelta(seconds=seconds) if seconds is not None else None


def ti(task_id: str, state: str | None, start: int | None = None, end: int | None = None, tries=(1, 0), index=-1):
    """A task instance that started `start` and ended `end` seconds after T0 (try number, max tries)."""
    return TaskInstance(task_id, index, state, tries[0], tries[1], at(start), at(end))


def follow(*snapshots: list[TaskInstance]) -> tuple[list[str], ProgressLines]:
    lines: list[str] = []
    progress = ProgressLines(lines.append, T0)
    for snapshot in snapshots:
        progress.update(snapshot)
    return lines, progress


def test_each_task_is_shown_once_as_it_starts_and_once_as_it_ends():
    watcher = ["load", "transform.dbt_producer_watcher", "transform.plays_run", "transform.tracks_run"]
    lines, progress = follow(
        [ti(watcher[0], "running", 2), ti(watcher[1], None), ti(watcher[2], None), ti(watcher[3], None)],
        [ti(watcher[0], "success", 2, 14), ti(watcher[1], "running", 15), ti(watcher[2], None), ti(watcher[3], None)],
        [ti(watcher[0], "success", 2, 14), ti(watcher[1], "running", 15), ti(watcher[2], None), ti(watcher[3], None)],
        [
            ti(watcher[0], "success", 2, 14),
            ti(watcher[1], "success", 15, 75),
            ti(watcher[2], "success", 16, 40),  # started and ended between two snapshots
            ti(watcher[3], "running", 41),
        ],
    )

    assert lines[:4] == [
        "[00:02]     0/4  started  load",
        "[00:14]     1/4  success  load (12.0 s)",
        "[00:15]     1/4  started  transform.dbt_producer_watcher",
        "[01:15]     2/4  success  transform.dbt_producer_watcher (60.0 s)",
    ]
    assert lines[4:] == [
        "[00:16]     2/4  started  transform.plays_run",
        "[00:40]     3/4  success  transform.plays_run (24.0 s)",
        "[00:41]     3/4  started  transform.tracks_run",
    ]
    assert progress.states() == {"success": 3}


def test_a_retry_shows_the_failed_try_then_the_next_and_a_failure_names_its_task():
    lines, progress = follow(
        [ti("transform.plays.run", "up_for_retry", 10, 12, tries=(1, 1)), ti("docs", None)],
        [ti("transform.plays.run", "scheduled", 10, 12, tries=(2, 1)), ti("docs", None)],
        [ti("transform.plays.run", "running", 45, tries=(2, 1)), ti("docs", None)],
        # Airflow stamps start and end on a task it gives up on without running it
        [ti("transform.plays.run", "failed", 45, 47, tries=(2, 1)), ti("docs", "upstream_failed", 47, 47)],
    )

    assert lines == [
        "[00:10]     0/2  started  transform.plays.run",
        "[00:12]     0/2  failed   transform.plays.run (2.0 s), try 1 of 2: Airflow retries it",
        "[00:45]     0/2  started  transform.plays.run",
        "[00:47]     1/2  FAILED   transform.plays.run (2.0 s)",
    ]
    assert progress.failed() == ["transform.plays.run"]
    assert progress.not_run() == {"upstream_failed": 1}
    assert progress.states() == {"failed": 1, "upstream_failed": 1}


def test_mapped_task_instances_are_told_apart():
    lines, _ = follow([ti("fan_out", "success", 1, 2, index=0), ti("fan_out", "success", 1, 3, index=1)])

    assert [line.split()[-3] for line in lines if "success" in line] == ["fan_out[0]", "fan_out[1]"]


DBT_LOG = """\
2026-12-02T11:26:38Z [info] some Airflow line, not dbt's
\x1b[0m11:26:48  1 of 1 START sql view model staging.stg_spotify__plays ........ [RUN]
\x1b[0m11:26:48  1 of 1 OK created sql view model staging.stg_spotify__plays ..... [\x1b[32mCREATE VIEW\x1b[0m in 0.69s]
11:26:49  1 of 2 OK created sql incremental model analytics.plays ........ [INSERT 0 40 in 0.12s]
11:26:49  2 of 2 ERROR creating sql table model analytics.tracks ......... [ERROR in 0.10s]
11:26:56  1 of 1 PASS freshness of spotify.recently_played ............... [PASS in 0.04s]
11:27:00  1 of 5 PASS accepted_values_stg_spotify_export__files_file_kind__extended_audio__extended  [PASS in 0.07s]
11:27:00  2 of 5 WARN 3 not_null_plays_album_id .......................... [WARN 3 in 0.05s]
11:27:00  3 of 5 FAIL 1 unique_plays_play_id ............................. [FAIL 1 in 0.05s]
11:27:00  4 of 5 PASS plays::plays_match_api_and_export .................. [PASS in 0.40s]
11:27:00  5 of 5 SKIP test relationships_tracks_album_id .................. [SKIP]
11:27:01  1 of 1 SKIP relation analytics.track_artists ................... [SKIP]
11:27:01  Done. PASS=2 WARN=1 ERROR=1 SKIP=2 NO-OP=0 TOTAL=6
11:28:30  1 of 1 OK created sql table model analytics.tracks ............. [SELECT 32 in 0.20s]
11:28:31  1 of 1 PASS unique_plays_play_id ............................... [PASS in 0.05s]
"""


def test_dbt_results_count_each_node_by_its_last_result():
    results = DbtResults.from_lines(DBT_LOG.splitlines())

    assert results.models == {
        "staging.stg_spotify__plays": "ok",
        "analytics.plays": "ok",
        "analytics.tracks": "ok",  # failed, then passed on Airflow's retry
        "analytics.track_artists": "skip",
    }
    assert results.tests == {
        "accepted_values_stg_spotify_export__files_file_kind__extended_audio__extended": "pass",
        "not_null_plays_album_id": "warn",
        "unique_plays_play_id": "pass",
        "plays::plays_match_api_and_export": "pass",
        "relationships_tracks_album_id": "skip",
    }
    assert (results.models_in("analytics"), results.models_in("staging")) == (2, 1)
    assert (results.tests_with("pass"), results.tests_with("warn"), results.tests_with("skip")) == (3, 1, 1)


def test_dbt_results_read_the_log_file(tmp_path: Path):
    log = tmp_path / "make-run.log"
    log.write_text(DBT_LOG, encoding="utf-8")

    assert DbtResults.from_log(log) == DbtResults.from_lines(DBT_LOG.splitlines())


def test_plays_loaded_from_the_load_task_s_summary_whichever_way_it_was_pushed():
    summary = {"load_ids": ["1.2"], "plays_loaded": 50, "items_rejected": 0}
    multiple_outputs = {"plays_loaded": [50], "return_value": [summary]}
    one_value = {"return_value": [summary, "a string from another task"]}

    assert plays_loaded(lambda key: multiple_outputs.get(key, [])) == 50
    assert plays_loaded(lambda key: one_value.get(key, [])) == 50
    assert plays_loaded(lambda key: []) is None


def test_the_metadata_database_is_read_only_and_read_as_airflow_writes_it(airflow_db: Path):
    """Airflow's own tables in SQLite, what `airflow dags test` uses here (migrated by a real `airflow db migrate`)."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    db = MetadataDatabase(f"sqlite:///{airflow_db / 'airflow.db'}")  # Airflow's default form: sqlite:////abs/path
    try:
        newest = db.newest_run("spotify_elt")
        assert isinstance(newest, int) and db.run_after("spotify_elt", newest) is None
        assert db.task_instances("spotify_elt", "no such run") == []
        assert db.xcom_values("spotify_elt", "no such run", "plays_loaded") == []
        assert db.xcom_values("spotify_elt", "no such run", "return_value", task_id="accounts_to_load") == []
        with pytest.raises(OperationalError, match="readonly"), db._engine.connect() as conn:
            conn.execute(text("create table make_run_was_here (x integer)"))
    finally:
        db.close()
