"""The sample server speaks Spotify's documented semantics over real loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipelines.sample_server import NEXT_LOOPS, NEXT_ON_EMPTY, NEXT_REPEATS, SampleSpotifyServer, make_track
from tests.sample_server.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    JSON_TYPE,
    RECENTLY_PLAYED,
    REFRESH_TOKEN,
    START,
    add_plays,
    ms_of,
    refresh,
)

INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client"}
INVALID_REFRESH = {"error": "invalid_grant", "error_description": "Invalid refresh token"}
REDIRECT_URI = "http://127.0.0.1:9/callback"


# --- token endpoint --------------------------------------------------------------------------


def test_refresh_with_basic_auth_returns_a_bearer_token(server):
    response = refresh(server)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_TYPE
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh_token unless rotating
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "user-read-recently-played")
    assert body["access_token"] != refresh(server).json()["access_token"]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        (CLIENT_ID, "wrong-secret"),
        ("other-client", CLIENT_SECRET),
        "Basic !!!not-base64",
        "Bearer something",
    ],
    ids=["missing", "wrong-secret", "wrong-client-id", "malformed-basic", "not-basic"],
)
def test_token_endpoint_refuses_bad_client_credentials(server, auth):
    headers = {"Authorization": auth} if isinstance(auth, str) else {}
    data = {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
    response = requests.post(
        server.accounts_url + "/api/token",
        data=data,
        auth=auth if isinstance(auth, tuple) else None,
        headers=headers,
        timeout=5,
    )

    assert (response.status_code, response.json()) == (400, INVALID_CLIENT)
    assert response.headers["Content-Type"] == JSON_TYPE


def test_client_secret_in_the_form_is_not_basic_auth(server):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH_TOKEN,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    response = requests.post(server.accounts_url + "/api/token", data=data, timeout=5)

    assert (response.status_code, response.json()) == (400, INVALID_CLIENT)


def test_token_endpoint_grant_errors(server):
    wrong_token = refresh(server, "not-the-token")
    assert (wrong_token.status_code, wrong_token.json()) == (400, INVALID_REFRESH)
    url = server.accounts_url + "/api/token"
    auth = (CLIENT_ID, CLIENT_SECRET)
    missing_token = requests.post(url, data={"grant_type": "refresh_token"}, auth=auth, timeout=5)
    assert (missing_token.status_code, missing_token.json()["error"]) == (400, "invalid_request")
    missing_grant = requests.post(url, data={"refresh_token": REFRESH_TOKEN}, auth=auth, timeout=5)
    assert (missing_grant.status_code, missing_grant.json()["error"]) == (400, "unsupported_grant_type")
    as_json = requests.post(
        url, json={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}, auth=auth, timeout=5
    )
    assert as_json.status_code == 400  # the token endpoint reads form bodies only
    assert requests.get(url, timeout=5).status_code == 405


def test_rotation_hands_out_the_new_token_once_then_the_old_one_is_dead(server):
    server.rotate_refresh_token("rotated-token-2")
    assert server.current_refresh_token == REFRESH_TOKEN
    assert refresh(server, "rotated-token-2").json() == INVALID_REFRESH  # not issued yet

    rotated = refresh(server)

    assert rotated.status_code == 200 and rotated.json()["refresh_token"] == "rotated-token-2"
    assert server.current_refresh_token == "rotated-token-2"
    old = refresh(server)
    assert (old.status_code, old.json()) == (400, INVALID_REFRESH)
    again = refresh(server, "rotated-token-2")
    assert again.status_code == 200 and "refresh_token" not in again.json()


def test_revoked_refresh_token_is_invalid_grant(server):
    server.revoke_refresh_token()

    response = refresh(server)

    # What Spotify answers once the user removed the app's access.
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Refresh token revoked"},
    )


# --- access tokens on the Web API -----------------------------------------------------------


def test_api_rejects_missing_unknown_and_expired_tokens(server, token):
    def me(header: str | None) -> requests.Response:
        headers = {"Authorization": header} if header else {}
        return requests.get(server.api_url + "/me", headers=headers, timeout=5)

    assert me(f"Bearer {token}").status_code == 200
    for header, message in [(None, "No token provided"), ("Bearer nope", "Invalid access token")]:
        response = me(header)
        assert (response.status_code, response.json()) == (401, {"error": {"status": 401, "message": message}})
        assert response.headers["Content-Type"] == JSON_TYPE

    server.expire_access_tokens()

    expired = me(f"Bearer {token}")
    assert expired.status_code == 401
    assert expired.json() == {"error": {"status": 401, "message": "The access token expired"}}
    assert me(f"Bearer {refresh(server).json()['access_token']}").status_code == 200


def test_me_describes_the_user(server, token):
    response = requests.get(server.api_url + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)

    body = response.json()
    assert response.headers["Content-Type"] == JSON_TYPE
    assert (body["id"], body["type"], body["uri"]) == ("demo-user", "user", "spotify:user:demo-user")
    assert body["display_name"]
    assert body["account_id"] == server.default_listener.account_id and len(body["account_id"]) == 22


def test_unknown_paths_are_404_json(server, token):
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.get(server.api_url + "/me/top/tracks", headers=headers, timeout=5)

    assert (response.status_code, response.json()) == (404, {"error": {"status": 404, "message": "Service not found"}})
    assert response.headers["Content-Type"] == JSON_TYPE


# --- recently played: paging ----------------------------------------------------------------


def test_default_page_is_the_newest_20_newest_first(server, recent):
    moments = add_plays(server, 30)

    response = recent()

    body = response.json()
    assert response.headers["Content-Type"] == JSON_TYPE
    assert list(body) == ["items", "next", "cursors", "limit", "href"]
    assert ms_of(body["items"]) == moments[::-1][:20]
    assert body["limit"] == 20
    assert body["cursors"] == {"after": str(moments[-1]), "before": str(moments[10])}
    assert body["next"] == f"{server.base_url}{RECENTLY_PLAYED}?before={moments[10]}&limit=20"
    assert body["href"] == f"{server.base_url}{RECENTLY_PLAYED}"
    assert recent(limit=5).json()["href"] == f"{server.base_url}{RECENTLY_PLAYED}?limit=5"


def test_items_have_the_api_shape_with_millisecond_played_at(server, recent):
    track = make_track("Exact", "Someone")
    context = {"type": "album", "uri": "spotify:album:x", "href": "h", "external_urls": {"spotify": "u"}}
    returned = server.add_play(track, datetime(2026, 11, 27, 5, 12, 30, 123_999, tzinfo=UTC), context)

    item = recent().json()["items"][0]

    assert item == returned == {"track": track, "played_at": "2026-11-27T05:12:30.123Z", "context": context}
    assert list(item) == ["track", "played_at", "context"]


@pytest.mark.parametrize("limit", ["0", "51", "-1", "abc", "1.5", "", " 5"])
def test_limit_outside_1_to_50_is_400(recent, limit):
    response = recent(limit=limit)

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400 and response.json()["error"]["message"]
    assert response.headers["Content-Type"] == JSON_TYPE


def test_limit_bounds_1_and_50_are_accepted(server, recent):
    add_plays(server, 60)

    assert len(recent(limit=1).json()["items"]) == 1
    assert len(recent(limit=50).json()["items"]) == 50


@pytest.mark.parametrize(
    "params", [{"after": "1", "before": "2"}, {"after": "yesterday"}, {"before": "1.5"}, {"before": "-3"}]
)
def test_bad_cursors_are_400(recent, params):
    response = recent(**params)

    assert response.status_code == 400 and response.json()["error"]["status"] == 400


def test_cursors_are_exclusive(server, recent):
    moments = add_plays(server, 10)

    before = recent(before=moments[5], limit=50).json()
    after = recent(after=moments[5], limit=50).json()

    assert ms_of(before["items"]) == moments[:5][::-1]
    assert ms_of(after["items"]) == moments[6:][::-1]
    assert before["next"] is None and after["next"] is None


def test_only_the_50_most_recent_plays_are_ever_visible(server, recent):
    moments = add_plays(server, 80)

    seen: list[int] = []
    url = None
    while True:
        page = recent(url, limit=7).json() if url is None else recent(url).json()
        seen += ms_of(page["items"])
        url = page["next"]
        if url is None:
            break

    assert seen == moments[30:][::-1]
    older = recent(before=moments[30]).json()
    assert (older["items"], older["cursors"], older["next"]) == ([], None, None)
    assert ms_of(recent(after=0, limit=5).json()["items"]) == moments[30:35][::-1]
    assert len(server.plays) == 80  # the invisible plays are still known to the test


def test_after_paging_returns_the_oldest_chunk_first_so_nothing_is_skipped(server, recent):
    moments = add_plays(server, 23)

    pages = []
    page = recent(after=moments[0] - 1, limit=10).json()
    while True:
        pages.append(ms_of(page["items"]))
        assert page["cursors"] == {"after": str(pages[-1][0]), "before": str(pages[-1][-1])}
        if page["next"] is None:
            break
        assert page["next"] == f"{server.base_url}{RECENTLY_PLAYED}?after={pages[-1][0]}&limit=10"
        page = recent(page["next"]).json()

    assert pages == [moments[0:10][::-1], moments[10:20][::-1], moments[20:23][::-1]]


def test_after_the_newest_play_is_an_empty_page(server, recent):
    moments = add_plays(server, 3)

    body = recent(after=moments[-1]).json()

    assert (body["items"], body["cursors"], body["next"], body["limit"]) == ([], None, None, 20)


def test_plays_added_out_of_order_are_served_newest_first(server, recent):
    for offset in (5, 1, 9, 3):
        server.add_play(make_track(f"T{offset}"), START + timedelta(minutes=offset))

    names = [item["track"]["name"] for item in recent().json()["items"]]

    assert names == ["T9", "T5", "T3", "T1"]
    assert [item["track"]["name"] for item in server.plays] == names


def test_add_play_needs_an_aware_datetime(server):
    with pytest.raises(ValueError, match="timezone-aware"):
        server.add_play(make_track("Naive"), datetime(2026, 1, 1))


def test_recently_played_needs_the_scope(server):
    token = server.issue_access_token(scope="user-read-email")
    headers = {"Authorization": f"Bearer {token}"}

    response = requests.get(server.base_url + RECENTLY_PLAYED, headers=headers, timeout=5)

    assert (response.status_code, response.json()["error"]["message"]) == (403, "Insufficient client scope")


# --- scripted faults ------------------------------------------------------------------------


def test_a_429_fault_carries_retry_after_then_the_real_answer_returns(server, recent):
    add_plays(server, 2)
    server.enqueue_fault(RECENTLY_PLAYED, 429, headers={"Retry-After": "1"})

    limited = recent()

    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"error": {"status": 429, "message": "Too Many Requests"}}
    assert recent().status_code == 200


def test_faults_repeat_times_and_match_by_path_prefix_only(server, recent):
    server.enqueue_fault("/v1/me/player", 503, times=2)

    assert refresh(server).status_code == 200  # other paths are untouched
    assert [recent().status_code for _ in range(3)] == [503, 503, 200]


def test_faults_can_send_bodies_that_are_not_what_the_client_expects(server, recent):
    server.enqueue_fault(RECENTLY_PLAYED, 200, body="<html>gateway</html>", headers={"Content-Type": "text/html"})
    server.enqueue_fault(RECENTLY_PLAYED, 200, body={"unexpected": True})
    server.enqueue_fault(RECENTLY_PLAYED, 502, body=b"\xff\xfe")

    html, wrong_shape, binary = recent(), recent(), recent()

    assert (html.status_code, html.headers["Content-Type"], html.text) == (200, "text/html", "<html>gateway</html>")
    assert wrong_shape.json() == {"unexpected": True} and wrong_shape.headers["Content-Type"] == JSON_TYPE
    assert (binary.status_code, binary.content) == (502, b"\xff\xfe")


def test_faults_apply_even_without_a_token_and_are_recorded(server):
    server.enqueue_fault("/api/token", 500)

    response = refresh(server)

    assert response.status_code == 500 and response.json()["error"] == "server_error"
    assert [request.path for request in server.requests] == ["/api/token"]


def test_a_repeating_next_links_each_page_to_itself_for_as_many_pages_as_asked(server, recent):
    moments = add_plays(server, 5)
    server.enqueue_next_fault(NEXT_REPEATS, times=2)

    pages = [recent(after=moments[0]).json(), recent(limit=3).json(), recent(limit=3).json()]

    assert [page["next"] for page in pages[:2]] == [page["href"] for page in pages[:2]]
    assert pages[0]["href"] == f"{server.base_url}{RECENTLY_PLAYED}?after={moments[0]}"
    assert pages[2]["next"] == f"{server.base_url}{RECENTLY_PLAYED}?before={moments[2]}&limit=3"  # used up


def test_a_next_on_empty_pages_links_one_millisecond_further_each_time(server, recent):
    moments = add_plays(server, 3)
    server.enqueue_next_fault(NEXT_ON_EMPTY, times=3)

    last = recent(after=moments[0]).json()
    empty = recent(last["next"]).json()
    emptier = recent(empty["next"]).json()

    assert ms_of(last["items"]) == moments[:0:-1]
    assert last["next"] == f"{server.base_url}{RECENTLY_PLAYED}?after={moments[-1] + 1}&limit=20"
    assert (empty["items"], empty["next"]) == (
        [],
        f"{server.base_url}{RECENTLY_PLAYED}?after={moments[-1] + 2}&limit=20",
    )
    assert emptier["next"].endswith(f"?after={moments[-1] + 3}&limit=20")


def test_a_looping_next_sends_the_client_back_to_the_page_before(server, recent):
    moments = add_plays(server, 20)
    server.enqueue_next_fault(NEXT_LOOPS, times=4)

    first = recent(after=moments[0] - 1, limit=10).json()
    second = recent(first["next"]).json()
    again = recent(second["next"]).json()

    assert first["next"] == f"{server.base_url}{RECENTLY_PLAYED}?after={moments[9]}&limit=10"  # as Spotify's rules say
    assert ms_of(second["items"]) == moments[10:][::-1]
    assert second["next"] == first["href"] and again["next"] == second["href"]  # A, B, A, B, ...
    assert ms_of(again["items"]) == ms_of(first["items"])


def test_next_faults_name_a_known_kind(server):
    with pytest.raises(ValueError, match="kind must be"):
        server.enqueue_next_fault("sideways")


def test_a_refresh_token_granted_without_the_scope_cannot_read_history(server):
    server.grant_refresh_token_scope("user-read-email")

    granted = refresh(server).json()

    assert granted["scope"] == "user-read-email"
    headers = {"Authorization": f"Bearer {granted['access_token']}"}
    response = requests.get(server.base_url + RECENTLY_PLAYED, headers=headers, timeout=5)
    assert (response.status_code, response.json()["error"]["message"]) == (403, "Insufficient client scope")


# --- authorize and the code exchange --------------------------------------------------------


def authorize(server: SampleSpotifyServer, **params: str) -> requests.Response:
    query = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "state": "xyz",
        "scope": "user-read-recently-played",
        **params,
    }
    return requests.get(server.accounts_url + "/authorize", params=query, allow_redirects=False, timeout=5)


def code_from(response: requests.Response) -> str:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def exchange(server: SampleSpotifyServer, code: str, **form: str) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **form}
    auth = None if "client_id" in form else (CLIENT_ID, CLIENT_SECRET)
    return requests.post(server.accounts_url + "/api/token", data=data, auth=auth, timeout=5)


def test_authorize_redirects_with_a_code_that_works_once(server):
    code = code_from(authorize(server))

    first = exchange(server, code)
    second = exchange(server, code)

    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] == REFRESH_TOKEN and body["scope"] == "user-read-recently-played"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert requests.get(server.base_url + RECENTLY_PLAYED, headers=headers, timeout=5).status_code == 200
    assert (second.status_code, second.json()["error"]) == (400, "invalid_grant")


def test_the_code_is_bound_to_its_redirect_uri(server):
    code = code_from(authorize(server))

    response = exchange(server, code, redirect_uri="http://127.0.0.1:9/other")

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_authorize_refuses_an_unknown_client_with_a_page(server):
    response = authorize(server, client_id="someone-else")

    assert response.status_code == 400 and "INVALID_CLIENT" in response.text
    assert response.headers["Content-Type"].startswith("text/html")


def test_authorize_reports_a_wrong_response_type_to_the_client(server):
    response = authorize(server, response_type="token")

    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {
        "error": ["unsupported_response_type"],
        "state": ["xyz"],
    }


def test_pkce_public_client_exchanges_with_the_verifier(server):
    verifier = "v" * 43 + "-pkce_verifier.~"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

    wrong = exchange(
        server,
        code_from(authorize(server, code_challenge=challenge, code_challenge_method="S256")),
        client_id=CLIENT_ID,
        code_verifier="x" * 43,
    )
    right = exchange(
        server,
        code_from(authorize(server, code_challenge=challenge, code_challenge_method="S256")),
        client_id=CLIENT_ID,
        code_verifier=verifier,
    )

    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert right.status_code == 200 and right.json()["refresh_token"] == REFRESH_TOKEN


def test_a_code_granted_without_the_scope_cannot_read_history(server):
    code = code_from(authorize(server, scope="user-read-email"))

    token = exchange(server, code).json()["access_token"]

    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(server.base_url + RECENTLY_PLAYED, headers=headers, timeout=5).status_code == 403


def test_authorizing_again_after_a_revocation_grants_a_working_refresh_token(server):
    server.revoke_refresh_token()

    fresh = exchange(server, code_from(authorize(server))).json()["refresh_token"]

    assert fresh != REFRESH_TOKEN and fresh == server.current_refresh_token
    assert refresh(server, fresh).status_code == 200


def test_concurrent_clients_and_writers_see_consistent_pages(server, recent):
    old = add_plays(server, 40)
    pages: list[list[int]] = []

    def read() -> None:
        for _ in range(5):
            pages.append(ms_of(recent(limit=50).json()["items"]))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    new = add_plays(server, 20, start=START + timedelta(days=1))
    for reader in readers:
        reader.join(timeout=5)

    assert len(pages) == 20
    for page in pages:
        # Each page is a snapshot: the newest 50 of the old plays plus however many new ones existed then.
        added = sum(1 for moment in page if moment in new)
        assert page == sorted(old + new[:added], reverse=True)[:50]
    assert len(server.requests) == 21  # one token request, twenty history requests


# --- recording, lifecycle -------------------------------------------------------------------


def test_requests_are_recorded_and_print_without_credentials(server, recent):
    recent(limit=3)

    token_request, history_request = server.requests

    assert (token_request.method, token_request.path) == ("POST", "/api/token")
    assert token_request.form == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN}
    expected_basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.header("authorization") == expected_basic
    assert (history_request.path, history_request.query) == (RECENTLY_PLAYED, {"limit": "3"})
    printed = repr(server.requests)
    assert REFRESH_TOKEN not in printed and expected_basic not in printed and "Bearer" not in printed


def test_stop_releases_the_port_and_base_url_needs_a_running_server():
    server = SampleSpotifyServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    port = int(server.base_url.rsplit(":", 1)[1])

    server.stop()
    server.stop()

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
