"""`authorize()` against the sample server over real loopback HTTP, and the secrets file it feeds."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from rich.console import Console

from pipelines.sample_server import SampleSpotifyServer
from pipelines.spotify.auth import AuthError, authorize, parse_redirect_uri
from pipelines.spotify.secrets_file import read_spotify_secrets, update_refresh_token, write_spotify_secrets

CLIENT_ID = "auth-test-client"
CLIENT_SECRET = "auth-client-secret-3b5d5c3712955042"
REFRESH_TOKEN = "auth-refresh-token-a87ff679a2f3e71d"
BROWSER_THREAD = "test-browser"


@pytest.fixture
def server() -> Iterator[SampleSpotifyServer]:
    with SampleSpotifyServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN) as running:
        yield running


@pytest.fixture
def redirect_uri() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/callback"


class Browser:
    """Plays the user's browser: opens the URL in a thread, as a click would, and keeps what it saw."""

    def __init__(self, visit: Callable[[str], str] | None = None) -> None:
        self.visit = visit or (lambda url: url)
        self.responses: list[requests.Response] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, url: str) -> None:
        def open_page() -> None:
            self.responses.append(requests.get(self.visit(url), allow_redirects=True, timeout=5))

        thread = threading.Thread(target=open_page, name=BROWSER_THREAD, daemon=True)
        thread.start()
        self.threads.append(thread)

    def wait(self) -> requests.Response:
        for thread in self.threads:
            thread.join(timeout=5)
        return self.responses[-1]


def run(server: SampleSpotifyServer, redirect_uri: str, browser: Browser, **kwargs) -> str:
    args = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "accounts_url": server.accounts_url,
        "redirect_uri": redirect_uri,
        "open_browser": False,
        "timeout_seconds": 5,
        "on_url": browser,
        **kwargs,
    }
    return authorize(**args)


def callback_with(redirect_uri: str, **params: str) -> Callable[[str], str]:
    """A 'browser' that skips Spotify and hits the callback directly with `params` (state copied unless given)."""

    def visit(url: str) -> str:
        sent = parse_qs(urlsplit(url).query)
        return f"{redirect_uri}?{urlencode({'state': sent['state'][0], **params})}"

    return visit


def test_full_flow_returns_the_refresh_token_and_exchanges_the_code_properly(server, redirect_uri):
    browser = Browser()

    refresh_token = run(server, redirect_uri, browser)

    assert refresh_token == server.current_refresh_token == REFRESH_TOKEN
    page = browser.wait()
    assert page.status_code == 200 and "close this tab" in page.text
    authorize_request, token_request = server.requests
    sent = authorize_request.query
    assert (sent["client_id"], sent["response_type"], sent["redirect_uri"]) == (CLIENT_ID, "code", redirect_uri)
    assert sent["scope"] == "user-read-recently-played" and sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 32
    code = parse_qs(urlsplit(page.history[0].headers["Location"]).query)["code"][0]
    form = token_request.form
    assert (form["grant_type"], form["code"], form["redirect_uri"]) == ("authorization_code", code, redirect_uri)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
    assert challenge.decode() == sent["code_challenge"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.header("Authorization") == f"Basic {basic}"


def test_each_run_uses_a_fresh_state_and_verifier(server, redirect_uri):
    run(server, redirect_uri, Browser())
    run(server, redirect_uri, Browser())

    authorizations = [request.query for request in server.requests if request.path == "/authorize"]
    assert authorizations[0]["state"] != authorizations[1]["state"]
    assert authorizations[0]["code_challenge"] != authorizations[1]["code_challenge"]


def run_auth_command(server, redirect_uri: str, browser: Browser, monkeypatch, secrets_path: Path) -> str:
    """`python -m pipelines auth`'s own code (`run_account_auth` without a database, as on a first laptop run),
    with `browser` as the user's; returns what it printed."""
    from pipelines import paths
    from pipelines.spotify import auth as spotify_auth
    from pipelines.spotify.accounts import run_account_auth

    monkeypatch.setenv("SPOTIFY_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", server.accounts_url)
    monkeypatch.setattr(paths, "secrets_file", lambda: secrets_path)
    monkeypatch.setattr(spotify_auth.webbrowser, "open", browser)
    output = io.StringIO()
    run_account_auth(
        "default",
        database=None,
        redirect_uri=redirect_uri,
        open_browser=True,
        timeout_seconds=5,
        console=Console(file=output),
    )
    return output.getvalue()


def test_the_auth_command_writes_the_refresh_token_it_was_given(server, redirect_uri, tmp_path, monkeypatch):
    secrets_path = tmp_path / ".dlt" / "secrets.toml"

    printed = run_auth_command(server, redirect_uri, Browser(), monkeypatch, secrets_path)

    assert read_spotify_secrets(secrets_path)["refresh_token"] == REFRESH_TOKEN
    assert str(secrets_path) in printed and REFRESH_TOKEN not in printed


def test_a_wrong_state_is_refused_and_nothing_is_written(server, redirect_uri, tmp_path, monkeypatch):
    secrets_path = tmp_path / ".dlt" / "secrets.toml"
    browser = Browser(callback_with(redirect_uri, code="stolen-code-123", state="forged"))

    with pytest.raises(AuthError, match="state mismatch") as caught:
        run_auth_command(server, redirect_uri, browser, monkeypatch, secrets_path)

    assert "stolen-code-123" not in str(caught.value)
    assert browser.wait().status_code == 400
    assert list(tmp_path.iterdir()) == []  # no secrets file, not even its directory
    assert [request.path for request in server.requests if request.path == "/api/token"] == []


def test_a_callback_without_state_is_refused(server, redirect_uri):
    browser = Browser(lambda url: f"{redirect_uri}?code=abc")

    with pytest.raises(AuthError, match="state mismatch"):
        run(server, redirect_uri, browser)


def test_access_denied_is_a_clear_error(server, redirect_uri):
    browser = Browser(callback_with(redirect_uri, error="access_denied"))

    with pytest.raises(AuthError, match="access_denied"):
        run(server, redirect_uri, browser)

    assert browser.wait().status_code == 400


def test_a_token_endpoint_error_names_spotifys_code_but_not_the_secret(server, redirect_uri):
    with pytest.raises(AuthError, match="invalid_client") as caught:
        run(server, redirect_uri, Browser(), client_secret="wrong-secret-e4da3b7fbbce")

    assert "wrong-secret-e4da3b7fbbce" not in str(caught.value) and CLIENT_SECRET not in str(caught.value)


def test_no_callback_times_out_with_a_clear_error(server, redirect_uri):
    with pytest.raises(AuthError, match=r"no callback arrived .* within 0\.3 seconds"):
        run(server, redirect_uri, lambda url: None, timeout_seconds=0.3)


def test_other_paths_do_not_end_the_wait(server, redirect_uri):
    def visit(url: str) -> str:
        assert requests.get(redirect_uri.replace("/callback", "/favicon.ico"), timeout=5).status_code == 404
        return url

    assert run(server, redirect_uri, Browser(visit)) == REFRESH_TOKEN


def test_a_busy_port_is_an_auth_error(server, redirect_uri):
    port = urlsplit(redirect_uri).port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(AuthError, match=f"127.0.0.1:{port}"):
            run(server, redirect_uri, Browser())


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:8888/callback",
        "http://example.com:8888/callback",
        "http://0.0.0.0:8888/callback",
        "http://[::1]:8888/callback",
        "http://user:pw@127.0.0.1:8888/callback",
        "http://127.0.0.1:99999/callback",
        "127.0.0.1:8888/callback",
    ],
)
def test_redirect_uri_must_be_http_on_loopback(uri):
    with pytest.raises(ValueError, match="SPOTIFY_REDIRECT_URI"):
        authorize(client_id="c", client_secret="s", accounts_url="http://127.0.0.1:9", redirect_uri=uri)


def test_accepted_redirect_uris():
    assert parse_redirect_uri("http://127.0.0.1:8888/callback").port == 8888
    with pytest.raises(ValueError, match="rejects localhost"):
        parse_redirect_uri("http://localhost:8888/callback")
    assert parse_redirect_uri("http://127.0.0.1:8888").path == "/"


def test_secrets_never_reach_output_or_logs(server, redirect_uri, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    secrets_path = tmp_path / "secrets.toml"
    browser = Browser()

    refresh_token = run(server, redirect_uri, browser, on_url=lambda url: (print(url), browser(url)))
    write_spotify_secrets(secrets_path, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=refresh_token)
    with pytest.raises(AuthError) as caught:
        run(server, redirect_uri, Browser(), client_secret="another-secret-1679091c5a88")
    logging.getLogger("test").info("requests: %r", server.requests)

    code = server.requests[1].form["code"]
    captured = capsys.readouterr()
    # The simulated browser's own HTTP client logs the callback URL; a real browser knows the code anyway.
    logs = "\n".join(record.getMessage() for record in caplog.records if record.threadName != BROWSER_THREAD)
    output = captured.out + captured.err + logs + str(caught.value)
    sensitive = {
        "client secret": CLIENT_SECRET,
        "refresh token": REFRESH_TOKEN,
        "wrong client secret": "another-secret-1679091c5a88",
        "authorization code": code,
    }
    # Compare names, not values, so a failure does not print the secret it found.
    assert [name for name, value in sensitive.items() if value in output] == []
    assert "/authorize?" in captured.out and "POST /api/token" in logs  # output and logs were really captured


# --- the secrets file -----------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_file_is_created_private_with_its_directory(tmp_path):
    path = tmp_path / "project" / ".dlt" / "secrets.toml"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        write_spotify_secrets(path, client_id="id", client_secret='se"cr\\et', refresh_token="rt")
    finally:
        os.umask(old_umask)

    assert mode(path) == 0o600
    assert read_spotify_secrets(path) == {"client_id": "id", "client_secret": 'se"cr\\et', "refresh_token": "rt"}
    assert [p.name for p in path.parent.iterdir()] == ["secrets.toml"]  # no temporary file left behind


def test_existing_content_is_preserved_and_permissions_tightened(tmp_path):
    path = tmp_path / "secrets.toml"
    original = (
        "# database credentials\n"
        '[destination.postgres.credentials]\npassword = "pg-pass" # keep me\n\n'
        '[sources.spotify]\nclient_id = "old-id"\nmarket = "SE"\n'
    )
    path.write_text(original)
    path.chmod(0o644)

    write_spotify_secrets(path, client_id="new-id", client_secret="secret", refresh_token="rt-1")
    update_refresh_token(path, "rt-2")

    text = path.read_text()
    assert mode(path) == 0o600
    assert text.startswith('# database credentials\n[destination.postgres.credentials]\npassword = "pg-pass" # keep me')
    assert read_spotify_secrets(path) == {
        "client_id": "new-id",
        "market": "SE",
        "client_secret": "secret",
        "refresh_token": "rt-2",
    }


def test_update_refresh_token_creates_a_missing_file(tmp_path):
    path = tmp_path / "secrets.toml"

    update_refresh_token(path, "rotated")

    assert read_spotify_secrets(path) == {"refresh_token": "rotated"} and mode(path) == 0o600


def test_reading_a_missing_file_or_table_gives_nothing(tmp_path):
    assert read_spotify_secrets(tmp_path / "absent.toml") == {}
    other = tmp_path / "other.toml"
    other.write_text('[sources.github]\ntoken = "x"\n')
    assert read_spotify_secrets(other) == {}


def test_invalid_toml_is_reported_without_quoting_it(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text('[sources.spotify]\nclient_secret = "unterminated-s3cr3t\n')

    with pytest.raises(ValueError, match="not valid TOML") as caught:
        update_refresh_token(path, "rt")

    assert "s3cr3t" not in str(caught.value)
