"""Spotify misbehaving in ways tests/spotify does not already cover: resets, timeouts, cut-off bodies, bursts,
bodies that are not JSON, tokens that expire or die mid-run, and items with extra, missing or unstorable fields.

Every test runs the real loader against the loopback Spotify server and a real PostgreSQL, then counts the
plays lost or duplicated against what the server served.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from pipelines.spotify import settings
from pipelines.spotify.helpers import SpotifyApiError, SpotifyAuthError, parse_played_at
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query
from tests.reliability.helpers import RECENTLY_PLAYED, assert_one_clear_error, record_all_loaded, stored_plays
from tests.reliability.report import record
from tests.spotify.test_recently_played import START, add_plays
from tests.test_cli import run_cli

TOKEN = "/api/token"
ME = "/v1/me"
RETRIED = "retried; every play loaded"
FAILED_THEN_RECOVERED = "run failed with one clear error, nothing written; next run loaded every play"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The retry logic is the real one; only its first wait shrinks from 1 s so bursts stay quick to test.
    monkeypatch.setattr(settings, "BACKOFF_BASE_SECONDS", 0.02)


def history_requests(server) -> list:
    return [request for request in server.requests if request.path == RECENTLY_PLAYED]


def waits_between(requests: list) -> list[float]:
    """Seconds between each request and the next, as the server saw them arrive."""
    return [later.received_at - earlier.received_at for earlier, later in zip(requests, requests[1:], strict=False)]


def test_connection_resets_on_every_endpoint_are_retried(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 6)
    for path in (TOKEN, ME, RECENTLY_PLAYED, RECENTLY_PLAYED):
        spotify_server.enqueue_connection_reset(path)

    summary = load_plays()

    assert summary["plays_loaded"] == 6
    assert len(history_requests(spotify_server)) == 3  # two resets, then the answer
    record_all_loaded(
        "Spotify API",
        "Connection reset (TCP RST) on token, /me and history",
        spotify_server,
        database_url,
        tried=4,
        result=RETRIED,
    )


def test_read_timeouts_are_retried(load_plays, spotify_server, database_url, monkeypatch):
    monkeypatch.setattr(settings, "REQUEST_TIMEOUT_SECONDS", 0.5)
    add_plays(spotify_server, 5)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"items": [], "next": None}, delay=1.5, times=2)

    load_plays()

    assert len(history_requests(spotify_server)) == 3
    record_all_loaded(
        "Spotify API",
        "Read timeout (response slower than the client waits)",
        spotify_server,
        database_url,
        tried=2,
        result=RETRIED,
    )


def test_a_body_cut_off_midway_is_retried(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 5)
    spotify_server.enqueue_truncated_response(RECENTLY_PLAYED, times=2)

    load_plays()

    record_all_loaded(
        "Spotify API",
        "Response body cut off midway (Content-Length not met)",
        spotify_server,
        database_url,
        tried=2,
        result=RETRIED,
    )


def test_a_burst_of_mixed_failures_within_the_retry_budget_is_survived(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 8)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 500)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 502, body="<html><body>Bad gateway</body></html>")
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": "0"})
    spotify_server.enqueue_connection_reset(RECENTLY_PLAYED)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 503)

    load_plays()

    assert len(history_requests(spotify_server)) == settings.MAX_ATTEMPTS
    record_all_loaded(
        "Spotify API",
        "Burst of 5 failures in a row (500, HTML 502, 429, reset, 503)",
        spotify_server,
        database_url,
        tried=1,
        result=RETRIED,
    )


def test_repeated_rate_limits_are_each_honoured(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 3)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": "1"}, times=2)

    load_plays()

    waits = waits_between(history_requests(spotify_server))
    assert len(waits) == 2 and min(waits) >= 0.9, waits
    record_all_loaded(
        "Spotify API",
        "429 twice in a row, Retry-After: 1",
        spotify_server,
        database_url,
        tried=1,
        result="waited as asked each time; every play loaded",
    )


def test_a_429_without_retry_after_backs_off_as_for_a_5xx(
    load_plays, spotify_server, database_url, monkeypatch, caplog
):
    monkeypatch.setattr(settings, "BACKOFF_BASE_SECONDS", 0.2)  # waits of 0.1-0.2 s, then 0.2-0.4 s (jitter)
    add_plays(spotify_server, 3)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, times=2)  # Spotify's error body, no Retry-After

    with caplog.at_level(logging.WARNING, logger="pipelines.spotify.helpers"):
        load_plays()

    waits = waits_between(history_requests(spotify_server))
    assert waits[0] >= 0.1 and waits[1] >= 0.2, waits  # it waited, longer each time
    assert all(wait < settings.BACKOFF_MAX_SECONDS for wait in waits), waits
    assert "rate limited without a usable Retry-After" in caplog.text
    record_all_loaded(
        "Spotify API",
        "429 twice in a row without Retry-After",
        spotify_server,
        database_url,
        tried=1,
        result="backed off as for a 5xx (doubling, capped); every play loaded",
    )


def test_a_429_whose_retry_after_is_an_http_date_waits_until_then(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 3)
    # RFC 9110 allows an HTTP date, to the second: a whole second ahead is 1 to 2 s away.
    due = math.ceil(time.time()) + 1
    due_on_the_servers_clock = time.monotonic() + (due - time.time())
    until = email.utils.formatdate(due, usegmt=True)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": until})

    load_plays()

    # The load's own start-up eats into the wait before the first request: what counts is when the retry came.
    [_, retry] = history_requests(spotify_server)
    assert retry.received_at >= due_on_the_servers_clock - 0.05
    record_all_loaded(
        "Spotify API",
        "429 whose Retry-After is an HTTP date",
        spotify_server,
        database_url,
        tried=1,
        result="waited until that moment; every play loaded",
    )


def test_a_401_again_after_a_token_refresh_fails_clearly_and_does_not_loop(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 4)
    expired = {"error": {"status": 401, "message": "The access token expired"}}
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 401, body=expired, times=3)

    with pytest.raises(SpotifyAuthError) as caught:
        load_plays()

    assert "HTTP 401 The access token expired" in str(caught.value)
    assert "python -m pipelines auth" in str(caught.value)
    assert len(history_requests(spotify_server)) == 2  # asked, refreshed once, asked again: then it stopped
    assert len([request for request in spotify_server.requests if request.path == TOKEN]) == 2
    assert stored_plays(database_url) == []

    load_plays()  # the third 401 is refreshed away like any expired token
    record_all_loaded(
        "Spotify API",
        "401 again right after a token refresh",
        spotify_server,
        database_url,
        tried=1,
        result="run failed with one clear error (re-run `auth`), no loop; next run loaded every play",
    )


def test_a_token_without_the_history_scope_fails_in_one_line_naming_scope_and_command(
    spotify_server, database_url, loader_env, child_pipelines_dir
):
    add_plays(spotify_server, 3)
    spotify_server.grant_refresh_token_scope("user-read-email")  # authorised by an app that asked for less

    refused = run_cli(loader_env, "load")

    assert refused.returncode == 1
    assert_one_clear_error(refused.stderr, "HTTP 403", settings.SCOPE, "python -m pipelines auth")
    assert len(history_requests(spotify_server)) == 1  # a missing scope is not retried
    assert stored_plays(database_url) == []

    spotify_server.grant_refresh_token_scope(settings.SCOPE)  # the user ran `auth` again
    assert run_cli(loader_env, "load").returncode == 0
    record_all_loaded(
        "Spotify API",
        f"403: the authorisation lacks the {settings.SCOPE} scope",
        spotify_server,
        database_url,
        tried=1,
        result="one `error:` line naming the scope and `auth`, not retried; after `auth` every play loaded",
    )


def test_a_burst_longer_than_the_retry_budget_fails_cleanly_and_the_next_run_recovers(
    load_plays, spotify_server, database_url
):
    add_plays(spotify_server, 7)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 503, times=settings.MAX_ATTEMPTS)

    with pytest.raises(SpotifyApiError, match=r"HTTP 503"):
        load_plays()
    assert stored_plays(database_url) == []

    load_plays()
    record_all_loaded(
        "Spotify API",
        f"503 burst longer than the retry budget ({settings.MAX_ATTEMPTS} in a row)",
        spotify_server,
        database_url,
        tried=1,
        result=FAILED_THEN_RECOVERED,
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<!doctype html><title>Captive portal</title><p>Sign in to the Wi-Fi</p>", "text/html"),
        ('{"items": [', "application/json"),
        ("", "application/json"),
        ('["items"]', "application/json"),
    ],
    ids=["html", "truncated-json", "empty", "json-array"],
)
def test_a_200_that_is_not_a_json_object_fails_cleanly_and_the_next_run_recovers(
    load_plays, spotify_server, database_url, body, content_type
):
    add_plays(spotify_server, 4)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body=body, headers={"Content-Type": content_type})

    with pytest.raises(SpotifyApiError, match="not a JSON object"):
        load_plays()
    assert stored_plays(database_url) == []

    load_plays()
    record_all_loaded(
        "Spotify API",
        "200 whose body is not a JSON object (HTML, cut-off JSON, empty, array)",
        spotify_server,
        database_url,
        tried=1,
        result=FAILED_THEN_RECOVERED,
    )


def test_me_without_a_user_id_fails_cleanly(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 2)
    spotify_server.enqueue_fault(ME, 200, body={"display_name": "Nobody", "type": "user"})

    with pytest.raises(SpotifyApiError, match="without a user id"):
        load_plays()
    assert stored_plays(database_url) == []

    load_plays()
    record_all_loaded(
        "Spotify API",
        "GET /me answered without a user id",
        spotify_server,
        database_url,
        tried=1,
        result=FAILED_THEN_RECOVERED,
    )


def run_in_thread(load_plays, **overrides) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["summary"] = load_plays(**overrides)
        except Exception as exc:  # handed to the test thread, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_a_token_expiring_between_pages_is_refreshed_once_and_the_run_continues(
    load_plays, spotify_server, database_url
):
    spotify_server.limit_page_size(10)
    add_plays(spotify_server, 35)
    third_page = spotify_server.hold_requests(RECENTLY_PLAYED, skip=2)

    thread, outcome = run_in_thread(load_plays)
    assert third_page.wait_for_request()
    spotify_server.expire_access_tokens()  # the access token dies while the run is paging
    third_page.release()
    thread.join(timeout=60)

    assert outcome["summary"]["plays_loaded"] == 35
    assert len([r for r in spotify_server.requests if r.path == TOKEN]) == 2  # the first, and one refresh
    assert len(history_requests(spotify_server)) == 5  # 4 pages, one of them asked twice
    record_all_loaded(
        "Spotify API",
        "Access token expires between page 2 and 3 of a 4-page run",
        spotify_server,
        database_url,
        tried=1,
        result="refreshed once, continued; every play loaded",
    )


def test_a_refresh_token_revoked_mid_run_writes_nothing_and_says_to_reauthorise(
    load_plays, spotify_server, database_url
):
    spotify_server.limit_page_size(10)
    add_plays(spotify_server, 35)
    third_page = spotify_server.hold_requests(RECENTLY_PLAYED, skip=2)

    thread, outcome = run_in_thread(load_plays)
    assert third_page.wait_for_request()
    spotify_server.expire_access_tokens()
    spotify_server.revoke_refresh_token()  # the user removed the app's access while the run was paging
    third_page.release()
    thread.join(timeout=60)

    error = outcome["error"]
    assert isinstance(error, SpotifyAuthError)
    assert "invalid_grant" in str(error) and "python -m pipelines auth" in str(error)
    assert SPOTIFY_REFRESH_TOKEN not in str(error) and SPOTIFY_CLIENT_SECRET not in str(error)
    assert stored_plays(database_url) == []  # the two pages already read were not half-loaded
    record(
        "Spotify API",
        "Refresh token revoked between page 2 and 3 (invalid_grant)",
        tried=1,
        lost=None,
        duplicated=0,
        result="stopped, nothing half-written; error says to re-run `auth`",
    )


# --- items: extra, missing and unstorable fields ----------------------------------------------------------


def item(track: dict | None, minutes: int, **extra) -> dict:
    played_at = START + timedelta(minutes=minutes, milliseconds=7)
    return {
        "track": track,
        "played_at": played_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "context": None,
        **extra,
    }


def measure_items(items: list[dict], stored: Counter) -> tuple[int, int]:
    """Of these served items, how many raw.recently_played lacks, and how many rows it holds beyond one each."""
    moments = [parse_played_at(item["played_at"]) for item in items]
    return sum(stored[moment] == 0 for moment in moments), sum(max(0, stored[moment] - 1) for moment in moments)


def test_items_with_extra_missing_or_unusable_fields_are_kept_counted_or_repaired(
    spotify_server, database_url, loader_env, child_pipelines_dir
):
    from pipelines.sample_server import make_track

    extra = make_track("Extra Keys", "Someone")
    extra.update({"new_field_2027": {"nested": [1, 2, {"deep": None}]}, "is_playable": True})
    missing = make_track("Missing Keys", "Someone")
    for key in ("popularity", "preview_url", "external_ids", "available_markets", "explicit", "is_local"):
        missing.pop(key)
    missing["album"].pop("images")
    unstorable = make_track("Nul\x00In\x00Name", "Artist\x00Zero")
    usable = [
        item(extra, 0, played_from="a key Spotify may add one day"),
        item(missing, 4),
        item(unstorable, 8),
    ]
    unusable = [
        item(None, 12),  # a play whose track Spotify could not return
        {"played_at": "2026-11-20T08:16:00.000Z"},  # no track at all
        item(make_track("No Time", "Someone"), 20) | {"played_at": None},
        item(make_track("Bad Time", "Someone"), 24) | {"played_at": "yesterday-ish"},
        "not an object",
    ]
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"items": usable + unusable, "next": None})

    result = run_cli(loader_env, "load")

    rows_at = Counter(played_at for _, played_at in stored_plays(database_url))
    kept, repaired = measure_items(usable[:2], rows_at), measure_items(usable[2:], rows_at)
    record(
        "API items",
        "Extra keys in item and track; optional keys missing",
        tried=2,
        lost=kept[0],
        duplicated=kept[1],
        result="loaded verbatim",
    )
    record(
        "API items",
        "NUL characters in names (PostgreSQL cannot store U+0000)",
        tried=1,
        lost=repaired[0],
        duplicated=repaired[1],
        result="replaced by U+FFFD, counted, loaded",
    )
    assert (kept, repaired) == ((0, 0), (0, 0))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded 3 plays into raw.recently_played" in result.stderr
    assert "skipped 5 unusable items" in result.stderr
    # Four strings held NUL: the track's and album's names (a single is named after its track), and the
    # artist's name in the track's and in the album's artist list.
    assert "in 4 strings" in result.stderr
    stored = query(database_url, "select track from raw.recently_played order by played_at")
    assert stored[0][0]["new_field_2027"] == {"nested": [1, 2, {"deep": None}]}  # extra keys kept verbatim
    assert "popularity" not in stored[1][0]
    assert stored[2][0]["name"] == "Nul\ufffdIn\ufffdName"
    record(
        "API items",
        "No track, null track, null or unparsable played_at, not an object",
        tried=5,
        lost=None,
        duplicated=0,
        result="skipped, counted in the run summary and the CLI output",
    )
