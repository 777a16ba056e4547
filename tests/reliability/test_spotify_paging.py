"""Spotify's `next` links going wrong: repeating, looping, non-null on an empty page, never ending, leaving the API.

What `next` holds after an `after` query is undocumented, and a loader that trusted it could page forever while
plays scroll out of the 50-play window. Each test runs the real loader against the loopback Spotify server
(scripted with `enqueue_next_fault`) and a real PostgreSQL, from a stored cursor as in every run but the first,
and checks the run's exact number of requests, every play stored once, and no false gap.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from pipelines.sample_server import NEXT_LOOPS, NEXT_ON_EMPTY, NEXT_REPEATS
from pipelines.spotify import settings
from pipelines.spotify.helpers import to_unix_ms
from tests.conftest import query
from tests.reliability.helpers import RECENTLY_PLAYED, record_all_loaded
from tests.spotify.test_recently_played import add_plays

ALL_ONCE = "stopped paging with one warning; every play loaded once, no false gap"


@pytest.fixture
def stored_cursor(load_plays, spotify_server) -> dict:
    """A first run that stores five plays, so later runs page forward from an `after` cursor (`after_ms`)."""
    first = add_plays(spotify_server, 5)
    load_plays()
    return {"start": first[-1] + timedelta(minutes=3), "after_ms": to_unix_ms(first[-1])}


def run_and_count(load_plays, server, caplog) -> tuple[dict, int, list[str]]:
    """Run the loader; returns its summary, its recently-played requests and its paging warnings."""
    server.clear_requests()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.spotify.helpers"):
        summary = load_plays()
    requests = len([request for request in server.requests if request.path == RECENTLY_PLAYED])
    warnings = [record.getMessage() for record in caplog.records if "stopped reading" in record.getMessage()]
    return summary, requests, warnings


def assert_no_gap(summary: dict, database) -> None:
    assert summary["gaps"] == []
    assert query(database, "select to_regclass('raw.gaps')") == [(None,)]


def test_a_next_that_repeats_the_page_just_read_ends_the_run(
    load_plays, spotify_server, database_url, stored_cursor, caplog
):
    add_plays(spotify_server, 30, stored_cursor["start"])
    spotify_server.enqueue_next_fault(NEXT_REPEATS, times=settings.MAX_PAGES)

    summary, requests, warnings = run_and_count(load_plays, spotify_server, caplog)

    assert requests == 1
    assert summary["plays_loaded"] == 30
    assert len(warnings) == 1 and "`next` repeats a page already read" in warnings[0]
    assert_no_gap(summary, database_url)  # reading the page 10 times would have counted 300 plays: a full window
    record_all_loaded(
        "Spotify API", "`next` repeating the URL just read", spotify_server, database_url, tried=1, result=ALL_ONCE
    )


def test_a_next_on_an_empty_page_ends_this_run_and_every_later_one(
    load_plays, spotify_server, database_url, stored_cursor, caplog
):
    add_plays(spotify_server, 8, stored_cursor["start"])
    spotify_server.enqueue_next_fault(NEXT_ON_EMPTY, times=3 * settings.MAX_PAGES)

    summary, requests, warnings = run_and_count(load_plays, spotify_server, caplog)
    idle, idle_requests, idle_warnings = run_and_count(load_plays, spotify_server, caplog)

    assert (requests, idle_requests) == (2, 1)  # the plays, then an empty page that still links on
    assert (summary["plays_loaded"], idle["plays_loaded"]) == (8, 0)
    assert len(warnings) == len(idle_warnings) == 1
    assert all("an empty page still carried a `next` link" in warning for warning in warnings + idle_warnings)
    assert_no_gap(summary, database_url)
    record_all_loaded(
        "Spotify API",
        "`next` never null, also on empty pages (2 runs)",
        spotify_server,
        database_url,
        tried=2,
        result=ALL_ONCE,
    )


def test_a_next_looping_between_two_pages_ends_the_run(load_plays, spotify_server, database_url, stored_cursor, caplog):
    add_plays(spotify_server, 30, stored_cursor["start"])
    spotify_server.limit_page_size(15)
    spotify_server.enqueue_next_fault(NEXT_LOOPS, times=settings.MAX_PAGES)

    summary, requests, warnings = run_and_count(load_plays, spotify_server, caplog)

    assert requests == 2  # A, then B, whose `next` leads back to A
    assert summary["plays_loaded"] == 30
    assert len(warnings) == 1 and "`next` repeats a page already read" in warnings[0]
    assert_no_gap(summary, database_url)  # A, B, A, B, ... would have counted 150 plays: a full window
    record_all_loaded(
        "Spotify API", "`next` looping between two pages", spotify_server, database_url, tried=1, result=ALL_ONCE
    )


@pytest.mark.parametrize(
    ("query", "back_ms", "problem"),
    [
        ("limit=49&after={}", 0, "does not move past the last cursor"),  # another URL, the same cursor
        ("after={}&limit=50", 60_000, "does not move past the last cursor"),  # a minute back
        ("before={}&limit=50", 0, "carries no `after` cursor"),  # turning back in time, over stored plays
    ],
    ids=["stands-still", "points-backwards", "turns-to-before"],
)
def test_a_next_whose_cursor_does_not_move_forward_ends_the_run(
    load_plays, spotify_server, database_url, stored_cursor, caplog, query, back_ms, problem
):
    add_plays(spotify_server, 6, stored_cursor["start"])
    stuck = f"{spotify_server.api_url}/me/player/recently-played?{query.format(stored_cursor['after_ms'] - back_ms)}"
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"items": spotify_server.plays[:6], "next": stuck})

    summary, requests, warnings = run_and_count(load_plays, spotify_server, caplog)

    assert (requests, summary["plays_loaded"]) == (1, 6)
    assert len(warnings) == 1 and problem in warnings[0]
    assert_no_gap(summary, database_url)
    record_all_loaded(
        "Spotify API",
        "`next` whose cursor stands still, points backwards or turns to `before`",
        spotify_server,
        database_url,
        tried=1,
        result=ALL_ONCE,
    )


def test_paging_ends_after_the_most_pages_a_run_reads_and_the_next_run_goes_on(
    load_plays, spotify_server, database_url, stored_cursor, caplog
):
    add_plays(spotify_server, settings.MAX_PAGES + 5, stored_cursor["start"])
    spotify_server.limit_page_size(1)  # every `next` is right, but each page holds one play

    first, first_requests, warnings = run_and_count(load_plays, spotify_server, caplog)
    second, second_requests, no_warnings = run_and_count(load_plays, spotify_server, caplog)

    assert (first_requests, first["plays_loaded"]) == (settings.MAX_PAGES, settings.MAX_PAGES)
    assert len(warnings) == 1 and f"still pointed on after {settings.MAX_PAGES} pages" in warnings[0]
    assert (second_requests, second["plays_loaded"], no_warnings) == (5, 5, [])
    assert_no_gap(second, database_url)
    record_all_loaded(
        "Spotify API",
        f"`next` still leading on after {settings.MAX_PAGES} pages (one play a page)",
        spotify_server,
        database_url,
        tried=1,
        result="stopped at the page limit with one warning; the next run loaded the rest; every play once",
    )


def test_a_next_pointing_off_the_web_api_is_not_followed(load_plays, spotify_server, database_url, caplog):
    add_plays(spotify_server, 4)
    elsewhere = "http://127.0.0.1:9/v1/me/player/recently-played?before=1&limit=50"
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"items": spotify_server.plays, "next": elsewhere})

    summary, requests, warnings = run_and_count(load_plays, spotify_server, caplog)

    assert (requests, summary["plays_loaded"]) == (1, 4)
    assert len(warnings) == 1 and "`next` does not point to the Web API" in warnings[0]
    record_all_loaded(
        "Spotify API",
        "`next` pointing off the Web API (the access token would go with it)",
        spotify_server,
        database_url,
        tried=1,
        result="not followed, one warning; every play loaded",
    )
