"""A second app on the sample server: each listener's refresh token and codes work only with their own app."""

from __future__ import annotations

import pytest
import requests

from tests.sample_server.conftest import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, refresh

SECOND_ID = "secondApp0123456789"
SECOND_SECRET = "second-app-secret-8f14e45f"


def test_a_listener_of_the_second_app_refreshes_only_with_that_apps_credentials(server):
    server.register_app(SECOND_ID, SECOND_SECRET)
    carl = server.add_listener("carl", client_id=SECOND_ID)

    own_app = refresh(server, carl.current_refresh_token, auth=(SECOND_ID, SECOND_SECRET))
    other_app = refresh(server, carl.current_refresh_token, auth=(CLIENT_ID, CLIENT_SECRET))
    wrong_secret = refresh(server, carl.current_refresh_token, auth=(SECOND_ID, CLIENT_SECRET))
    default_with_second = refresh(server, REFRESH_TOKEN, auth=(SECOND_ID, SECOND_SECRET))

    assert own_app.status_code == 200
    assert (carl.client_id, server.default_listener.client_id) == (SECOND_ID, CLIENT_ID)
    assert (other_app.status_code, other_app.json()["error"]) == (400, "invalid_grant")
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (400, "invalid_client")
    assert (default_with_second.status_code, default_with_second.json()["error"]) == (400, "invalid_grant")


def test_authorize_codes_belong_to_the_app_that_asked_for_them(server):
    server.register_app(SECOND_ID, SECOND_SECRET)
    carl = server.add_listener("carl", client_id=SECOND_ID)
    carl.sign_in()
    redirect_uri = "http://127.0.0.1:8888/callback"

    def authorize(client_id: str) -> dict[str, str]:
        query = {"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri, "state": "s"}
        response = requests.get(server.accounts_url + "/authorize", params=query, allow_redirects=False, timeout=5)
        assert response.status_code == 302
        location = requests.utils.urlparse(response.headers["Location"])
        return dict(pair.split("=", 1) for pair in location.query.split("&"))

    # carl authorised the second app only: asked by the first, he says no
    assert authorize(CLIENT_ID) == {"error": "access_denied", "state": "s"}

    def exchange(code: str, auth: tuple[str, str]) -> requests.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return requests.post(server.accounts_url + "/api/token", data=data, auth=auth, timeout=5)

    stolen = exchange(authorize(SECOND_ID)["code"], (CLIENT_ID, CLIENT_SECRET))
    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    exchanged = exchange(authorize(SECOND_ID)["code"], (SECOND_ID, SECOND_SECRET))
    assert exchanged.status_code == 200
    assert exchanged.json()["refresh_token"] == carl.current_refresh_token


def test_an_app_must_be_registered_before_its_listeners_and_only_once(server):
    with pytest.raises(ValueError, match="register_app"):
        server.add_listener("carl", client_id=SECOND_ID)
    server.register_app(SECOND_ID, SECOND_SECRET)
    with pytest.raises(ValueError, match="already"):
        server.register_app(SECOND_ID, "another-secret")
