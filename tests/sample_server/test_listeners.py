"""Several listeners of one app on the sample server, over real loopback HTTP: each refresh token is its own user's."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipelines.sample_server import (
    NEXT_REPEATS,
    REFRESH_OMITS,
    REFRESH_REPEATS,
    REFRESH_ROTATES,
    ManualClock,
    SampleSpotifyServer,
    make_track,
)
from pipelines.sample_server.clock import add_months
from tests.sample_server.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    RECENTLY_PLAYED,
    REFRESH_TOKEN,
    START,
    ms_of,
    refresh,
    unix_ms,
)

ALICE_TOKEN = "alice-refresh-token-1b2c"
BOB_TOKEN = "bob-refresh-token-9f8e"
REDIRECT_URI = "http://127.0.0.1:9/callback"
AUTHORISED = datetime(2026, 7, 20, 12, 0, tzinfo=UTC)


def revoked(body: dict) -> bool:
    return body == {"error": "invalid_grant", "error_description": "Refresh token revoked"}


def access_token(server: SampleSpotifyServer, refresh_token: str) -> str:
    response = refresh(server, refresh_token)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(server: SampleSpotifyServer, token: str, path: str = RECENTLY_PLAYED, **params: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(server.base_url + path, params=params, headers=headers, timeout=5)


def add_songs(listener, prefix: str, count: int, start: datetime = START) -> list[int]:
    """`count` plays of songs named `prefix N`, three minutes apart, oldest first; returns their unix ms."""
    moments = [start + timedelta(minutes=3 * n, milliseconds=7 * n) for n in range(count)]
    listener.add_plays(
        (make_track(f"{prefix} {n}", f"{prefix} Band"), moment, None) for n, moment in enumerate(moments)
    )
    return [unix_ms(moment) for moment in moments]


def names(response: requests.Response) -> list[str]:
    return [item["track"]["name"] for item in response.json()["items"]]


@pytest.fixture
def household(server: SampleSpotifyServer):
    """Two more listeners of the same app beside the default one."""
    alice = server.add_listener("alice", refresh_token=ALICE_TOKEN)
    bob = server.add_listener("bob", refresh_token=BOB_TOKEN, account_id="bob-account-0001")
    return alice, bob


# --- who is who ------------------------------------------------------------------------------


def test_each_refresh_token_reads_its_own_listener_s_plays_and_ids(server, household):
    alice, bob = household
    add_songs(alice, "Alice Song", 3)
    add_songs(bob, "Bob Song", 2, start=START + timedelta(minutes=1))
    server.add_play(make_track("Default Song"), START)

    for listener, refresh_token, expected in [
        (alice, ALICE_TOKEN, ["Alice Song 2", "Alice Song 1", "Alice Song 0"]),
        (bob, BOB_TOKEN, ["Bob Song 1", "Bob Song 0"]),
        (server.default_listener, REFRESH_TOKEN, ["Default Song"]),
    ]:
        token = access_token(server, refresh_token)
        me = api(server, token, "/v1/me").json()
        assert (me["id"], me["account_id"], me["uri"]) == (
            listener.user_id,
            listener.account_id,
            f"spotify:user:{listener.user_id}",
        )
        assert names(api(server, token)) == expected

    assert [item["track"]["name"] for item in bob.plays] == ["Bob Song 1", "Bob Song 0"]
    assert [item["track"]["name"] for item in server.plays] == ["Default Song"]  # the default listener's
    assert [listener.user_id for listener in server.listeners] == ["demo-user", "alice", "bob"]
    assert server.listener("bob") is bob and server.listener() is server.default_listener


def test_account_id_is_present_stable_and_can_be_given(server, household):
    alice, bob = household

    me = api(server, access_token(server, ALICE_TOKEN), "/v1/me").json()

    assert me["account_id"] == alice.account_id and me["account_id"] != me["id"]
    assert len({server.default_listener.account_id, alice.account_id, bob.account_id}) == 3
    assert bob.account_id == "bob-account-0001"
    with SampleSpotifyServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token="x") as other:
        assert other.add_listener("alice").account_id == alice.account_id  # immutable: same user, same id
    default_me = api(server, access_token(server, REFRESH_TOKEN), "/v1/me").json()
    assert default_me["account_id"] == server.default_listener.account_id


def test_a_listener_needs_a_user_id_and_a_refresh_token_of_their_own(server, household):
    with pytest.raises(ValueError, match="already"):
        server.add_listener("alice")
    with pytest.raises(ValueError, match="belongs to listener 'alice'"):
        server.add_listener("carol", refresh_token=ALICE_TOKEN)
    with pytest.raises(ValueError, match="belongs to listener 'bob'"):
        server.rotate_refresh_token(BOB_TOKEN, user="alice")
    with pytest.raises(KeyError, match="carol"):
        server.revoke_refresh_token(user="carol")

    carol = server.add_listener("carol")  # a random refresh token of her own

    assert carol.current_refresh_token not in {ALICE_TOKEN, BOB_TOKEN, REFRESH_TOKEN}
    assert api(server, access_token(server, carol.current_refresh_token), "/v1/me").json()["id"] == "carol"


def test_requests_are_recorded_with_the_listener_they_act_for(server, household):
    alice, bob = household
    alice_token = access_token(server, ALICE_TOKEN)
    api(server, alice_token)
    api(server, access_token(server, BOB_TOKEN), "/v1/me")
    api(server, "not-a-token")

    assert [(request.path, request.user) for request in server.requests] == [
        ("/api/token", "alice"),
        (RECENTLY_PLAYED, "alice"),
        ("/api/token", "bob"),
        ("/v1/me", "bob"),
        (RECENTLY_PLAYED, None),
    ]
    assert [request.path for request in alice.requests] == ["/api/token", RECENTLY_PLAYED]
    assert alice_token in alice.issued_access_tokens and alice_token not in bob.issued_access_tokens
    assert alice_token not in repr(server.requests) and ALICE_TOKEN not in repr(alice.requests)


# --- refresh tokens: revocation, re-authorisation, rotation ---------------------------------


def test_a_revoked_listener_gets_invalid_grant_while_the_other_keeps_working(server, household):
    alice, bob = household
    add_songs(bob, "Bob Song", 2)
    alice.revoke_refresh_token()

    refused = refresh(server, ALICE_TOKEN)

    assert refused.status_code == 400 and revoked(refused.json())
    assert names(api(server, access_token(server, BOB_TOKEN))) == ["Bob Song 1", "Bob Song 0"]
    assert access_token(server, REFRESH_TOKEN)
    assert revoked(refresh(server, ALICE_TOKEN).json())  # stays refused: no retry helps


def test_reauthorising_a_revoked_listener_issues_a_new_refresh_token(server, household):
    alice, _ = household
    alice.revoke_refresh_token()

    fresh = alice.reauthorize()

    assert fresh != ALICE_TOKEN and alice.current_refresh_token == fresh
    assert api(server, access_token(server, fresh), "/v1/me").json()["id"] == "alice"
    old = refresh(server, ALICE_TOKEN).json()
    assert old == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    assert alice.reauthorize(refresh_token="alice-chosen-token") == "alice-chosen-token"
    assert refresh(server, "alice-chosen-token").status_code == 200
    assert refresh(server, fresh).status_code == 400


def authorise_in_browser(server: SampleSpotifyServer) -> dict:
    """Whoever is signed in agrees at `/authorize`; the app exchanges the code (Basic auth)."""
    query = {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "x y"}
    authorize = requests.get(server.accounts_url + "/authorize", params=query, allow_redirects=False, timeout=5)
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    exchange = requests.post(server.accounts_url + "/api/token", data=data, auth=(CLIENT_ID, CLIENT_SECRET), timeout=5)
    assert exchange.status_code == 200, exchange.text
    return exchange.json()


def test_authorize_issues_the_code_for_the_listener_signed_in(server, household):
    alice, bob = household
    bob.revoke_refresh_token()
    bob.sign_in()

    body = authorise_in_browser(server)

    assert body["refresh_token"] == bob.current_refresh_token != BOB_TOKEN
    assert api(server, body["access_token"], "/v1/me").json()["id"] == "bob"
    assert access_token(server, body["refresh_token"])
    assert alice.current_refresh_token == ALICE_TOKEN  # nobody else's token changed
    assert [request.user for request in server.requests[:2]] == ["bob", "bob"]


def test_rotation_changes_only_that_listener_s_token(server, household):
    alice, bob = household
    new = alice.rotate_refresh_token()

    bob_refresh = refresh(server, BOB_TOKEN).json()
    rotated = refresh(server, ALICE_TOKEN).json()

    assert "refresh_token" not in bob_refresh
    assert rotated["refresh_token"] == new == alice.current_refresh_token != ALICE_TOKEN
    assert refresh(server, ALICE_TOKEN).json()["error"] == "invalid_grant"
    assert "refresh_token" not in refresh(server, new).json()  # a rotation is used once
    assert bob.current_refresh_token == BOB_TOKEN and access_token(server, BOB_TOKEN)
    assert alice.rotate_refresh_token("alice-named") == "alice-named"
    assert refresh(server, new).json()["refresh_token"] == "alice-named"


# --- what a refresh returns -----------------------------------------------------------------


def test_by_default_a_refresh_returns_no_new_refresh_token(server, household):
    alice, _ = household

    bodies = [refresh(server, ALICE_TOKEN).json() for _ in range(3)]

    assert alice.refresh_returns == REFRESH_OMITS
    assert all(body["access_token"] and "refresh_token" not in body for body in bodies)
    assert alice.current_refresh_token == ALICE_TOKEN


def test_a_refresh_can_repeat_the_token_or_rotate_it_every_time(server, household):
    alice, bob = household
    alice.refresh_returns = REFRESH_REPEATS
    bob.refresh_returns = REFRESH_ROTATES

    repeated = [refresh(server, ALICE_TOKEN).json()["refresh_token"] for _ in range(2)]
    first = refresh(server, BOB_TOKEN).json()["refresh_token"]
    second = refresh(server, first).json()["refresh_token"]

    assert repeated == [ALICE_TOKEN, ALICE_TOKEN]
    assert len({BOB_TOKEN, first, second}) == 3 and bob.current_refresh_token == second
    assert refresh(server, first).json()["error"] == "invalid_grant"
    assert refresh(server, BOB_TOKEN).json()["error"] == "invalid_grant"
    assert "refresh_token" not in refresh(server).json()  # the default listener is unchanged


def test_the_server_wide_refresh_mode_applies_to_every_listener_not_given_one():
    with SampleSpotifyServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, refresh_returns=REFRESH_REPEATS
    ) as server:
        server.add_listener("alice", refresh_token=ALICE_TOKEN)
        server.add_listener("bob", refresh_token=BOB_TOKEN, refresh_returns=REFRESH_OMITS)

        assert refresh(server).json()["refresh_token"] == REFRESH_TOKEN
        assert refresh(server, ALICE_TOKEN).json()["refresh_token"] == ALICE_TOKEN
        assert "refresh_token" not in refresh(server, BOB_TOKEN).json()
    with pytest.raises(ValueError, match="refresh_returns"):
        server.listener("bob").refresh_returns = "sometimes"


# --- refresh-token expiry ------------------------------------------------------------------


def test_a_refresh_token_expires_six_months_after_the_listener_authorised():
    clock = ManualClock(AUTHORISED)
    with SampleSpotifyServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, clock=clock
    ) as server:
        alice = server.add_listener("alice", refresh_token=ALICE_TOKEN)  # authorised now, by the clock
        bob = server.add_listener("bob", refresh_token=BOB_TOKEN, authorised_at=AUTHORISED + timedelta(days=40))
        expiry = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)
        assert alice.refresh_token_expires_at == expiry and alice.authorised_at == AUTHORISED
        assert bob.refresh_token_expires_at == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)  # no 29 Feb 2027

        clock.set(expiry - timedelta(seconds=1))
        assert refresh(server, ALICE_TOKEN).status_code == 200

        clock.set(expiry)
        expired = refresh(server, ALICE_TOKEN)
        assert (expired.status_code, expired.json()["error"]) == (400, "invalid_grant")
        assert refresh(server).json()["error"] == "invalid_grant"  # the default listener authorised then too
        assert access_token(server, BOB_TOKEN)  # authorised 40 days later: still valid

        clock.advance(days=40)
        assert refresh(server, BOB_TOKEN).json()["error"] == "invalid_grant"


def test_refreshing_or_rotating_does_not_extend_the_six_months_but_authorising_again_does():
    clock = ManualClock(AUTHORISED)
    with SampleSpotifyServer(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        clock=clock,
        refresh_returns=REFRESH_ROTATES,
    ) as server:
        clock.advance(days=150)
        rotated = refresh(server).json()["refresh_token"]
        clock.set(add_months(AUTHORISED, 6))

        assert refresh(server, rotated).json()["error"] == "invalid_grant"

        fresh = server.reauthorize()
        assert server.default_listener.authorised_at == clock()
        assert refresh(server, fresh).status_code == 200
        clock.advance(days=180)
        assert refresh(server, server.current_refresh_token).status_code == 200
        clock.advance(days=5)
        assert refresh(server, server.current_refresh_token).status_code == 400


def test_authorising_again_in_the_browser_restarts_the_six_months():
    clock = ManualClock(AUTHORISED)
    with SampleSpotifyServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, clock=clock
    ) as server:
        alice = server.add_listener("alice", refresh_token=ALICE_TOKEN)
        alice.sign_in()
        clock.advance(days=170)

        body = authorise_in_browser(server)

        assert body["refresh_token"] == ALICE_TOKEN  # still valid, so Spotify's answer keeps it here
        assert alice.authorised_at == clock() and alice.refresh_token_expires_at == add_months(clock(), 6)
        clock.advance(days=30)  # 200 days after the first authorisation
        assert refresh(server, ALICE_TOKEN).status_code == 200
        assert refresh(server).json()["error"] == "invalid_grant"  # the default listener did not authorise again


def test_the_server_clock_can_be_swapped_and_must_be_timezone_aware(server):
    expiry = server.default_listener.refresh_token_expires_at  # authorised by the real clock, at the start
    server.set_clock(lambda: expiry - timedelta(minutes=1))
    assert server.now == expiry - timedelta(minutes=1)
    assert refresh(server).status_code == 200

    server.set_clock(lambda: expiry)

    assert refresh(server).json()["error"] == "invalid_grant"
    with pytest.raises(ValueError, match="timezone-aware"):
        server.add_listener("naive", authorised_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("authorised", "expires"),
    [
        (datetime(2026, 8, 31, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2027, 8, 31, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 12, 15, 9, 30, tzinfo=UTC), datetime(2027, 6, 15, 9, 30, tzinfo=UTC)),
        (datetime(2026, 6, 30, tzinfo=UTC), datetime(2026, 12, 30, tzinfo=UTC)),
    ],
)
def test_six_months_are_calendar_months(authorised, expires):
    assert add_months(authorised, 6) == expires


# --- faults aimed at one listener ------------------------------------------------------------


def test_a_quota_429_for_one_listener_leaves_the_other_alone(server, household):
    alice, bob = household
    alice_token, bob_token = access_token(server, ALICE_TOKEN), access_token(server, BOB_TOKEN)
    alice.enqueue_rate_limit(quota=True, retry_after=30, times=2)

    bob_first = api(server, bob_token)
    limited = [api(server, alice_token), api(server, alice_token, "/v1/me")]
    after = api(server, alice_token)

    assert bob_first.status_code == 200
    for response in limited:
        assert (response.status_code, response.headers["Retry-After"]) == (429, "30")
        assert response.json() == {
            "error": {"status": 429, "message": "API rate limit exceeded", "reason": "QUOTA_EXCEEDED"}
        }
    assert after.status_code == 200


def test_a_429_may_come_without_retry_after_or_quota_reason(server, household):
    alice, _ = household
    token = access_token(server, ALICE_TOKEN)
    server.enqueue_rate_limit(RECENTLY_PLAYED, retry_after=None, user="alice")

    limited = api(server, token)

    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert limited.json() == {"error": {"status": 429, "message": "API rate limit exceeded"}}
    assert api(server, token).status_code == 200


def test_5xx_for_one_listener_on_the_api_and_on_the_token_endpoint(server, household):
    alice, bob = household
    add_songs(bob, "Bob Song", 1)
    alice_token = access_token(server, ALICE_TOKEN)
    alice.enqueue_fault("/v1", 503, times=2)
    alice.enqueue_fault("/api/token", 502)

    assert [api(server, alice_token).status_code for _ in range(3)] == [503, 503, 200]
    assert names(api(server, access_token(server, BOB_TOKEN))) == ["Bob Song 0"]  # bob's refresh: no 502
    token_fault = refresh(server, ALICE_TOKEN)
    assert (token_fault.status_code, token_fault.json()["error"]) == (502, "server_error")
    assert refresh(server, ALICE_TOKEN).status_code == 200


def test_faults_for_everyone_still_hit_every_listener(server, household):
    server.enqueue_fault(RECENTLY_PLAYED, 500, times=2)

    statuses = [api(server, access_token(server, token)).status_code for token in (ALICE_TOKEN, BOB_TOKEN)]

    assert statuses == [500, 500]


def test_next_faults_can_aim_at_one_listener(server, household):
    alice, bob = household
    add_songs(alice, "Alice Song", 5)
    bob_moments = add_songs(bob, "Bob Song", 5)
    alice.enqueue_next_fault(NEXT_REPEATS)

    bob_page = api(server, access_token(server, BOB_TOKEN), limit=3).json()
    alice_page = api(server, access_token(server, ALICE_TOKEN), limit=3).json()

    assert bob_page["next"].endswith(f"?before={bob_moments[2]}&limit=3")
    assert alice_page["next"] == alice_page["href"]


def test_a_held_listener_does_not_hold_the_others(server, household):
    alice, bob = household
    add_songs(bob, "Bob Song", 2)
    alice_token, bob_token = access_token(server, ALICE_TOKEN), access_token(server, BOB_TOKEN)
    hold = alice.hold_requests(RECENTLY_PLAYED)
    answers: list[int] = []
    waiting = threading.Thread(target=lambda: answers.append(api(server, alice_token).status_code))
    waiting.start()
    try:
        assert hold.wait_for_request(timeout=5)

        assert names(api(server, bob_token)) == ["Bob Song 1", "Bob Song 0"]
        assert answers == []
    finally:
        hold.release()
        waiting.join(timeout=5)
    assert answers == [200]


# --- storage ---------------------------------------------------------------------------------


def test_plays_added_in_bulk_out_of_order_are_merged_per_listener(server, household):
    alice, bob = household
    late = add_songs(alice, "Late", 30, start=START + timedelta(days=1))
    early = add_songs(alice, "Early", 30)  # older than everything stored: merged, not appended
    add_songs(bob, "Bob Song", 3, start=START + timedelta(days=2))

    token = access_token(server, ALICE_TOKEN)
    newest = api(server, token, limit=50).json()

    assert ms_of(newest["items"]) == sorted(early + late, reverse=True)[:50]
    assert [item["played_at"] for item in alice.plays] == sorted((p["played_at"] for p in alice.plays), reverse=True)
    assert alice.play_count == 60 and bob.play_count == 3
    with pytest.raises(ValueError, match="timezone-aware"):
        alice.add_plays([(make_track("Fine"), START, None), (make_track("Naive"), datetime(2026, 1, 1), None)])
    assert alice.play_count == 60  # all or nothing


def test_stored_plays_do_not_change_when_the_caller_changes_its_dicts(server):
    track = make_track("Original")
    context = {"type": "album", "uri": "spotify:album:x", "href": "h", "external_urls": {"spotify": "u"}}
    returned = server.add_play(track, START, context)
    server.add_plays([(track, START + timedelta(minutes=1), context)])

    track["name"] = "Changed"
    context["uri"] = "spotify:album:changed"
    returned["track"]["name"] = "Also changed"
    served = server.plays
    served[0]["track"]["name"] = "Changed again"

    assert [item["track"]["name"] for item in server.plays] == ["Original", "Original"]
    assert {item["context"]["uri"] for item in server.plays} == {"spotify:album:x"}


def test_many_listeners_each_page_through_only_their_own_history(server):
    listeners = [server.add_listener(f"listener-{n:03d}") for n in range(20)]
    for n, listener in enumerate(listeners):
        add_songs(listener, f"L{n}", 200 + n, start=START + timedelta(seconds=n))

    for n in (0, 7, 19):
        token = access_token(server, listeners[n].current_refresh_token)
        page = api(server, token, limit=50)
        assert names(page) == [f"L{n} {count}" for count in range(200 + n - 1, 200 + n - 51, -1)]
        assert api(server, token, "/v1/me").json()["id"] == listeners[n].user_id
