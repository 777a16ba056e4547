"""The listening marts on the fixture year, each checked against SQL on the core marts or against Python.

The dbt unit tests (models/marts/listening/_listening__models.yml) pin the branching logic (time zones, session
splits); these tests check the built tables as a whole, after a real load and `dbt build`.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.conftest import query
from tests.listening_year import year_database, year_plays  # noqa: F401 - fixture

# Each play with its length as the API gave it (API plays only: what the fixture holds), from `plays` only.
PLAYS = """
    select p.user_id, p.played_at, p.track_id, p.primary_artist_id, p.duration_ms
    from analytics.plays as p
"""


def test_every_play_appears_once_in_listening_plays(year_database):  # noqa: F811
    assert query(year_database, "select count(*) from analytics.listening_plays") == query(
        year_database, "select count(*) from analytics.plays"
    )
    assert query(year_database, "select count(*) from analytics.listening_plays") == [(len(year_plays()),)]


def test_listening_daily_matches_sql_on_the_core_marts(year_database):  # noqa: F811
    expected = query(
        year_database,
        f"""select user_id, (played_at at time zone 'UTC')::date, count(*), sum(duration_ms),
                   count(distinct track_id), count(distinct primary_artist_id)
            from ({PLAYS}) as plays group by 1, 2 order by 1, 2""",
    )
    actual = query(
        year_database,
        """select user_id, played_date, plays, listened_ms, distinct_tracks, distinct_artists
           from analytics.listening_daily order by 1, 2""",
    )
    assert actual == expected
    assert len(actual) == 27  # 24 days in 2025, two in 2024, one in 2026
    # minutes_listened is listened_ms, rounded to a tenth
    assert query(
        year_database,
        "select count(*) from analytics.listening_daily where minutes_listened <> round(listened_ms / 60000.0, 1)",
    ) == [(0,)]


def test_artist_and_track_rollups_match_sql(year_database):  # noqa: F811
    for key, model in (("primary_artist_id", "listening_by_artist"), ("track_id", "listening_by_track")):
        expected = query(
            year_database,
            f"""select user_id, {key}, count(*), sum(duration_ms), min(played_at), max(played_at)
                from ({PLAYS}) as plays group by 1, 2 order by 1, 2""",
        )
        id_column = "artist_id" if model == "listening_by_artist" else "track_id"
        actual = query(
            year_database,
            f"""select user_id, {id_column}, plays, listened_ms, first_played_at, last_played_at
                from analytics.{model} order by 1, 2""",
        )
        assert actual == expected, model
    # Discovery dates: Static Bloom was first heard on the last evening of 2024.
    assert query(
        year_database,
        "select first_played_date::text, plays from analytics.listening_by_artist where artist_name = 'Static Bloom'",
    ) == [("2024-12-31", 9)]


def test_listening_by_hour_is_a_full_grid_that_adds_up(year_database):  # noqa: F811
    [(cells, weekdays, hours, plays)] = query(
        year_database,
        """select count(*), count(distinct weekday), count(distinct hour_of_day), sum(plays)
           from analytics.listening_by_hour""",
    )
    assert (cells, weekdays, hours, plays) == (7 * 24, 7, 24, len(year_plays()))
    expected = Counter(
        {
            (weekday, hour): count
            for weekday, hour, count in query(
                year_database,
                f"""select extract(isodow from played_at at time zone 'UTC')::int,
                           extract(hour from played_at at time zone 'UTC')::int, count(*)
                    from ({PLAYS}) as plays group by 1, 2""",
            )
        }
    )
    actual = Counter(
        {
            (weekday, hour): count
            for weekday, hour, count in query(
                year_database, "select weekday, hour_of_day, plays from analytics.listening_by_hour where plays > 0"
            )
        }
    )
    assert actual == expected
    assert query(year_database, "select weekday_name from analytics.listening_by_hour where weekday = 1 limit 1") == [
        ("Monday",)
    ]


def test_sessions_match_a_python_sessionisation_of_the_fixture(year_database):  # noqa: F811
    gap = timedelta(minutes=30)  # the session_gap_minutes default
    sessions: list[list] = []
    previous_end = None
    for track, played_at, _ in year_plays():
        started = played_at - timedelta(milliseconds=track["duration_ms"])
        if previous_end is None or started - previous_end > gap:
            sessions.append([started, played_at, 0])
        sessions[-1][1] = played_at
        sessions[-1][2] += 1
        previous_end = played_at
    expected = [(number, started, ended, plays) for number, (started, ended, plays) in enumerate(sessions, start=1)]

    actual = query(
        year_database,
        "select session_number, started_at, ended_at, plays from analytics.listening_sessions order by 1",
    )

    assert actual == expected
    # 4 July: the six replays are one session; Loop Two, 37 minutes after the last, starts another.
    july = query(
        year_database,
        "select plays from analytics.listening_sessions where session_date = '2025-07-04' order by session_number",
    )
    assert july == [(6,), (1,)]
    # 31 December 23:59 and 1 January 00:05 (a 1-minute pause) are one session across the new year.
    assert query(
        year_database,
        "select session_date::text, plays from analytics.listening_sessions order by session_number desc limit 1",
    ) == [("2025-12-31", 3)]
