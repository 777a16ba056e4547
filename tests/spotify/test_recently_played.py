"""The dlt source against the loopback Spotify server and a real PostgreSQL: incrementality, merge, faults."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.spotify.helpers import SpotifyApiError, SpotifyAuthError, to_unix_ms
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
RECENTLY_PLAYED = "/v1/me/player/recently-played"


def add_plays(server, count: int, start: datetime = START) -> list[datetime]:
    """Add `count` plays of distinct tracks, four minutes apart (with odd milliseconds), oldest first."""
    from pipelines.sample_server.catalog import make_track

    moments = []
    for n in range(count):
        played_at = start + timedelta(minutes=4 * n, milliseconds=n * 37 + 1)
        server.add_play(make_track(name=f"Song {start:%j}-{n}", artist_names=[f"Artist {n % 7}"]), played_at)
        moments.append(played_at)
    return moments


def history_requests(server) -> list[dict[str, str]]:
    return [request.query for request in server.requests if request.path == RECENTLY_PLAYED]


def raw_rows(database) -> list[tuple]:
    return query(database, "select user_id, played_at, track from raw.recently_played order by played_at")


def test_first_run_lands_every_visible_play_with_the_api_json_whole(load_plays, spotify_server, database_url):
    moments = add_plays(spotify_server, 30)

    summary = load_plays()

    rows = raw_rows(database_url)
    assert summary["plays_loaded"] == 30
    assert [row[1] for row in rows] == moments  # millisecond precision survives
    assert {row[0] for row in rows} == {"listener-1"}
    served = {item["played_at"]: item["track"] for item in spotify_server.plays}
    assert [row[2] for row in rows] == [served[item] for item in sorted(served)]


def test_second_run_asks_only_for_plays_after_the_stored_cursor(load_plays, spotify_server, database_url):
    first = add_plays(spotify_server, 10)
    load_plays()
    second = add_plays(spotify_server, 5, start=first[-1] + timedelta(minutes=3))

    summary = load_plays()

    assert history_requests(spotify_server)[-1]["after"] == str(to_unix_ms(first[-1]))
    assert summary["plays_loaded"] == 5
    assert [row[1] for row in raw_rows(database_url)] == first + second


def test_rerun_with_nothing_new_adds_no_rows(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 12)
    load_plays()

    summary = load_plays()

    assert summary["plays_loaded"] == 0
    assert len(raw_rows(database_url)) == 12


def test_overlapping_window_after_lost_state_leaves_no_duplicates(load_plays, spotify_server, database_url, tmp_path):
    add_plays(spotify_server, 20)
    load_plays()
    # Forget the cursor everywhere (local working dir and the copy dlt keeps in the database).
    query(database_url, "delete from raw._dlt_pipeline_state returning 1")
    import shutil

    shutil.rmtree(tmp_path / "dlt")

    load_plays()

    assert "after" not in history_requests(spotify_server)[-1]
    rows = query(database_url, "select count(*), count(distinct (user_id, played_at)) from raw.recently_played")
    assert rows == [(20, 20)]


def test_only_the_fifty_most_recent_plays_can_be_loaded(load_plays, spotify_server, database_url):
    moments = add_plays(spotify_server, 80)

    load_plays()

    assert [row[1] for row in raw_rows(database_url)] == moments[-50:]


def test_local_files_and_null_contexts_are_kept(load_plays, spotify_server, database_url):
    from pipelines.sample_server.catalog import make_local_track

    local = make_local_track("Home Recordings", "Demos", "Take 3", 201_000)
    spotify_server.add_play(local, START, None)

    load_plays()

    assert query(database_url, "select track, context from raw.recently_played") == [(local, None)]


def test_a_401_mid_run_refreshes_the_token_once_and_continues(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 3)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 401, body={"error": {"status": 401, "message": "expired"}})

    load_plays()

    token_calls = [r for r in spotify_server.requests if r.path == "/api/token"]
    assert len(token_calls) == 2
    assert len(raw_rows(database_url)) == 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(load_plays, spotify_server, database_url, status):
    add_plays(spotify_server, 4)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, status, times=2)

    load_plays()

    assert len(history_requests(spotify_server)) == 3
    assert len(raw_rows(database_url)) == 4


def test_rate_limit_waits_for_retry_after(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 4)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": "1"})

    load_plays()

    first, second = [r for r in spotify_server.requests if r.path == RECENTLY_PLAYED]
    assert second.received_at - first.received_at >= 0.9
    assert len(raw_rows(database_url)) == 4


@pytest.mark.parametrize("in_an_hour", ["3600", "http-date"])
def test_a_rate_limit_longer_than_the_bound_fails_the_run_clearly(load_plays, spotify_server, database_url, in_an_hour):
    add_plays(spotify_server, 2)
    if in_an_hour == "http-date":  # RFC 9110's other form of Retry-After
        in_an_hour = email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": in_an_hour})

    with pytest.raises(SpotifyApiError, match=r"rate limited by Spotify \(Retry-After 3[56]\d\ds\)"):
        load_plays()


def test_a_response_without_items_fails_without_writing(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 2)
    spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"unexpected": True})

    with pytest.raises(SpotifyApiError, match="'items'"):
        load_plays()

    assert query(database_url, "select count(*) from pg_tables where schemaname = 'raw'") == [(0,)]


@pytest.mark.parametrize(
    ("break_it", "expected", "fix"),
    [
        ("revoke_refresh_token", "invalid_grant", "python -m pipelines auth"),
        # authorising again cannot mend the app's own credentials
        ("wrong_secret", "invalid_client", "SPOTIFY_CLIENT_SECRET"),
    ],
)
def test_rejected_credentials_stop_the_run_and_name_the_fix(
    load_plays, spotify_server, database_url, break_it, expected, fix
):
    add_plays(spotify_server, 2)
    overrides = {}
    if break_it == "revoke_refresh_token":
        spotify_server.revoke_refresh_token()
    else:
        overrides["client_secret"] = "not-the-secret"

    with pytest.raises(SpotifyAuthError) as caught:
        load_plays(**overrides)

    message = str(caught.value)
    assert expected in message and fix in message
    assert SPOTIFY_CLIENT_SECRET not in message and SPOTIFY_REFRESH_TOKEN not in message
    assert query(database_url, "select count(*) from pg_tables where schemaname = 'raw'") == [(0,)]


def test_a_rotated_refresh_token_is_persisted_and_used_next_time(load_plays, spotify_server, database_url, tmp_path):
    from pipelines.spotify.secrets_file import read_spotify_secrets

    add_plays(spotify_server, 2)
    spotify_server.rotate_refresh_token("rotated-refresh-token-1")

    load_plays()

    stored = read_spotify_secrets(tmp_path / "secrets.toml")
    assert stored["refresh_token"] == "rotated-refresh-token-1"
    assert (tmp_path / "secrets.toml").stat().st_mode & 0o777 == 0o600
    add_plays(spotify_server, 1, start=START + timedelta(days=1))
    assert load_plays(refresh_token=stored["refresh_token"])["plays_loaded"] == 1


def test_played_at_json_round_trip_matches_what_spotify_served(load_plays, spotify_server, database_url):
    add_plays(spotify_server, 3)
    load_plays()

    stored = query(
        database_url,
        """select to_char(played_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           from raw.recently_played order by played_at desc""",
    )
    assert [row[0] for row in stored] == [item["played_at"] for item in spotify_server.plays]
    assert json.loads(json.dumps(spotify_server.plays[0]["track"])) == raw_rows(database_url)[-1][2]
