"""Demo mode's year: imported with the project's importer, anchored in the database, never imported twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipelines import demo
from pipelines.export.importer import import_history
from pipelines.sample_server.demo_year import YEAR, demo_year, write_export
from tests.conftest import query


def test_the_first_demo_run_imports_a_year_ending_now(database_url):
    year = demo.demo_year_of(database_url)
    summary = demo.import_demo_year(database_url, year)

    assert datetime.now(UTC) - YEAR - timedelta(minutes=1) < year.first_play_at <= datetime.now(UTC) - YEAR
    assert summary is not None and summary.rows_loaded == len(year.export_plays)
    assert query(database_url, "select user_id, count(*), min(ts) from raw.export_extended_plays group by 1") == [
        (demo.DEMO_USER_ID, len(year.export_plays), year.first_play_at)
    ]


def test_later_demo_runs_find_the_same_year_and_add_nothing(database_url):
    first = demo_year(datetime(2025, 6, 1, 9, 15, 42, tzinfo=UTC))
    demo.import_demo_year(database_url, first)

    again = demo.demo_year_of(database_url)  # a later run: another "now", the same year

    assert again == first
    assert demo.import_demo_year(database_url, again) is None
    assert query(database_url, "select count(*) from raw.export_files") == [(1,)]
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(len(first.export_plays),)]


def test_the_generated_file_imported_again_adds_nothing_by_the_importer_s_key(database_url, tmp_path):
    year = demo_year(datetime(2025, 6, 1, 9, 15, 42, tzinfo=UTC))
    export = write_export(year.export_plays, tmp_path / "my_spotify_data.zip")
    import_history(database_url, [export], user_id=demo.DEMO_USER_ID)

    regenerated = write_export(demo_year(year.first_play_at).export_plays, tmp_path / "again" / "my_spotify_data.zip")
    summary = import_history(database_url, [regenerated], user_id=demo.DEMO_USER_ID)

    assert (summary.rows_read, summary.rows_loaded) == (len(year.export_plays), 0)


def test_a_partly_stored_year_is_completed(database_url, tmp_path):
    year = demo_year(datetime(2025, 6, 1, 9, 15, 42, tzinfo=UTC))
    half = write_export(year.export_plays[: len(year.export_plays) // 2], tmp_path / "my_spotify_data.zip")
    import_history(database_url, [half], user_id=demo.DEMO_USER_ID)

    summary = demo.import_demo_year(database_url, demo.demo_year_of(database_url))

    assert summary is not None and summary.rows_loaded == len(year.export_plays) - len(year.export_plays) // 2
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(len(year.export_plays),)]
