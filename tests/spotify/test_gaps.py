"""Gap detection against the loopback Spotify server, and a gap filled by an import of the data export."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pipelines.sample_server import NEXT_LOOPS
from pipelines.sample_server.server import RECENTLY_PLAYED_PATH
from pipelines.spotify import settings
from pipelines.spotify.helpers import parse_played_at
from tests.conftest import query

# The export tests' fixtures (import and dbt build), shared by importing them.
from tests.export.conftest import dbt_build, extended_play, import_into, write_json  # noqa: F401

START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def add_plays(server, count: int, start: datetime) -> list[datetime]:
    """`count` plays of distinct tracks, three minutes apart, oldest first; returns their played_at."""
    from pipelines.sample_server.catalog import make_track

    return [
        parse_played_at(
            server.add_play(
                make_track(name=f"Gap Song {start:%H%M}-{n}", artist_names=["Gap Artist"]),
                start + timedelta(minutes=3, milliseconds=123) * n,
            )["played_at"]
        )
        for n in range(count)
    ]


def gaps(database) -> list[tuple]:
    return query(database, "select user_id, gap_from, gap_to from raw.gaps order by gap_from")


def test_more_than_fifty_plays_between_runs_records_a_gap_and_warns(load_plays, spotify_server, database_url, caplog):
    first = add_plays(spotify_server, 10, START)
    load_plays()
    second = add_plays(spotify_server, 62, first[-1] + timedelta(minutes=5))

    with caplog.at_level(logging.WARNING):
        summary = load_plays()

    visible = second[-50:]  # Spotify only ever shows the 50 most recent plays
    assert gaps(database_url) == [("listener-1", first[-1], visible[0])]
    assert summary["gaps"] == [
        {"user_id": "listener-1", "gap_from": first[-1].isoformat(), "gap_to": visible[0].isoformat()}
    ]
    assert "import-history" in caplog.text and "may be lost" in caplog.text
    assert summary["plays_loaded"] == 50


def test_a_next_looping_between_two_pages_still_records_the_true_gap(load_plays, spotify_server, database_url):
    first = add_plays(spotify_server, 10, START)
    load_plays()
    second = add_plays(spotify_server, 62, first[-1] + timedelta(minutes=5))
    spotify_server.limit_page_size(25)  # the window in two pages, A and B, whose `next` leads back to A
    spotify_server.enqueue_next_fault(NEXT_LOOPS, times=settings.MAX_PAGES)
    spotify_server.clear_requests()

    summary = load_plays()

    assert len([request for request in spotify_server.requests if request.path == RECENTLY_PLAYED_PATH]) == 2
    assert summary["plays_loaded"] == 50
    assert gaps(database_url) == [("listener-1", first[-1], second[-50])]  # as without the fault


def test_the_first_load_and_a_window_that_is_not_full_record_no_gap(load_plays, spotify_server, database_url):
    first = add_plays(spotify_server, 80, START)  # more than 50, but there is no cursor yet
    load_plays()
    add_plays(spotify_server, 49, first[-1] + timedelta(minutes=5))

    summary = load_plays()

    assert summary["gaps"] == []
    assert query(database_url, "select to_regclass('raw.gaps')") == [(None,)]


def test_a_gap_filled_by_an_import_shows_as_filled_and_every_play_is_kept_once(
    load_plays,
    spotify_server,
    database_url,
    import_into,  # noqa: F811 - the fixture imported above
    dbt_build,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    first = add_plays(spotify_server, 10, START)
    load_plays()
    second = add_plays(spotify_server, 60, first[-1] + timedelta(minutes=5))
    load_plays()
    dbt_build()
    [open_gap] = query(database_url, "select covered_by, gap_status from analytics.coverage where is_gap")
    assert open_gap == ("none", "open")

    # The data export holds every play, the 10 lost ones and the 60 the API also saw (ending 1 s later).
    export = [
        extended_play(
            item_played_at.replace(microsecond=0) + timedelta(seconds=1),
            master_metadata_track_name=item["track"]["name"],
            master_metadata_album_artist_name="Gap Artist",
            master_metadata_album_album_name=item["track"]["album"]["name"],
            spotify_track_uri=item["track"]["uri"],
        )
        for item in spotify_server.plays
        for item_played_at in [parse_played_at(item["played_at"])]
    ]
    import_into(write_json(tmp_path / "Streaming_History_Audio_2026_0.json", export))
    dbt_build()

    assert query(database_url, "select covered_by, gap_status from analytics.coverage where is_gap") == [
        ("export", "filled")
    ]
    assert query(database_url, "select source, count(*) from analytics.plays group by 1 order by 1") == [
        ("api", 60),  # the API's 10 + 50, each matched to its export record
        ("export", 10),  # the plays the API lost, only in the export
    ]
    assert query(database_url, "select count(*) from analytics.plays where source = 'api' and ms_played is null") == [
        (0,)
    ]
    lost = query(database_url, "select played_at from analytics.plays where source = 'export' order by 1")
    assert [row[0] for row in lost] == [moment.replace(microsecond=0) + timedelta(seconds=1) for moment in second[:10]]
