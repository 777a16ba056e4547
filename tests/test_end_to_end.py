"""Load through the real loader, build with real dbt: the marts hold exactly what the API served."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipelines import transform
from pipelines.database import DatabaseUrl
from pipelines.sample_server import edge_case_tracks, make_context
from tests.conftest import fresh_database, load_from, query, sample_spotify_server

START = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def serve_edge_cases(server) -> list[dict]:
    """Every edge-case track played once, one in a playlist context; returns the served items, oldest first."""
    tracks = edge_case_tracks()
    for n, track in enumerate(tracks):
        context = make_context("playlist", "Late Night") if n == 0 else None
        server.add_play(track, START + timedelta(minutes=5 * n, milliseconds=123), context)
    return list(reversed(server.plays))


@pytest.fixture
def built(load_plays, spotify_server, database_url) -> list[dict]:
    """The edge cases served, loaded and built; returns the served items, oldest first."""
    served = serve_edge_cases(spotify_server)
    load_plays()
    transform.build(database_url)
    return served


@pytest.fixture(scope="module")
def built_db(postgres_admin, test_role_password, tmp_path_factory) -> Iterator[DatabaseUrl]:
    """The edge cases served, loaded and built once, in a database of their own, for the tests that only read."""
    with fresh_database(postgres_admin, test_role_password) as database:
        with sample_spotify_server() as server:
            serve_edge_cases(server)
            load_from(server, database, tmp_path_factory.mktemp("end-to-end"))
        transform.build(database)
        yield database


def test_marts_hold_exactly_what_the_api_served(load_plays, spotify_server, database_url):
    served = serve_edge_cases(spotify_server)
    spotify_server.add_play(served[3]["track"], START + timedelta(hours=2))  # a replay of one track
    served = list(reversed(spotify_server.plays))

    load_plays()
    transform.build(database_url)

    history = query(
        database_url,
        """select played_at, track_name, artist_name, album_name, duration_ms
           from analytics.listening_history order by played_at""",
    )
    expected = [
        (
            datetime.fromisoformat(item["played_at"].replace("Z", "+00:00")),
            item["track"]["name"],
            item["track"]["artists"][0]["name"],
            item["track"]["album"]["name"],
            item["track"]["duration_ms"],
        )
        for item in served
    ]
    assert history == expected  # every play once, text byte-for-byte (unicode, quotes, \\, newline, 1,000+ chars)

    distinct_tracks = {item["track"]["uri"] for item in served}
    assert query(database_url, "select count(*) from analytics.tracks") == [(len(distinct_tracks),)]
    assert query(database_url, "select count(*), count(distinct (user_id, played_at)) from analytics.plays") == [
        (len(served), len(served))
    ]


def test_local_files_get_stable_ids_that_join(built_db):
    local = query(
        built_db,
        """select t.track_id, t.album_id, t.primary_artist_id, a.artist_name, al.album_name
           from analytics.tracks as t
           join analytics.artists as a on a.artist_id = t.primary_artist_id
           join analytics.albums as al on al.album_id = t.album_id
           where t.is_local""",
    )
    assert len(local) == 1
    track_id, album_id, artist_id, artist_name, album_name = local[0]
    assert all(value.startswith("local:") for value in (track_id, album_id, artist_id))
    assert (artist_name, album_name) == ("Basement Tapes Collective", "Garage Demos Vol. 1")


def test_every_credited_artist_is_bridged_in_order(built_db):
    credited = query(
        built_db,
        """select a.artist_name from analytics.track_artists as ta
           join analytics.tracks as t using (track_id)
           join analytics.artists as a using (artist_id)
           where t.track_name like 'Carry the Weight%' order by ta.artist_position""",
    )
    assert [row[0] for row in credited] == ["Nova Lane", "DJ Kestrel", "The Quiet Hours"]


def test_missing_optional_fields_become_nulls(built_db):
    sparse = query(
        built_db,
        """select t.popularity, p.album_release_date, p.album_release_date_precision
           from analytics.tracks as t join staging.stg_spotify__plays as p using (track_id)
           where t.track_name = 'Unmastered Sketch'""",
    )
    assert sparse == [(None, "2001-05", None)]
    # The album row takes its attributes from the album's most recent play, which does carry a precision.
    assert query(built_db, "select release_date_precision from analytics.albums where album_name = 'Sketches'") == [
        ("month",)
    ]


def test_a_second_hourly_run_adds_only_new_plays(built, load_plays, spotify_server, database_url):
    served = built
    spotify_server.add_play(served[0]["track"], START + timedelta(hours=3))

    load_plays()
    transform.build(database_url)

    assert query(database_url, "select count(*) from analytics.plays") == [(len(served) + 1,)]
    assert query(database_url, "select count(*) from raw.recently_played") == [(len(served) + 1,)]
