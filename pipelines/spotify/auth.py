"""Spotify's Authorization Code flow (with PKCE) for `python -m pipelines auth`: returns a refresh token.

The user's browser is sent to Spotify's consent page; Spotify redirects it back to a one-shot
HTTP server on 127.0.0.1 that checks the `state`, exchanges the code for tokens and tells the
user they can close the tab. The code, tokens and client secret are never printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import re
import secrets
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from pipelines.errors import ConfigError, PipelineError
from pipelines.spotify.settings import (
    AUTHORIZE_PATH,
    DEFAULT_REDIRECT_URI,
    REQUEST_TIMEOUT_SECONDS,
    SCOPE,
    TOKEN_PATH,
)

logger = logging.getLogger(__name__)

# Spotify refuses `localhost` redirect URIs (since 2025): the loopback address must be spelled out.
LOOPBACK_HOSTS = ("127.0.0.1",)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
    "<body style='font-family: sans-serif; margin: 3em'><h1>{title}</h1><p>{message}</p></body></html>"
)


class AuthError(PipelineError):
    """The authorization did not produce a refresh token; the message says why and what to do."""


@dataclass(frozen=True)
class RedirectTarget:
    """Where the callback server listens: always 127.0.0.1, on the redirect URI's port and path."""

    port: int
    path: str


def parse_redirect_uri(redirect_uri: str) -> RedirectTarget:
    """Check that the redirect URI can be served locally; raises ConfigError naming SPOTIFY_REDIRECT_URI."""
    problem = (
        "SPOTIFY_REDIRECT_URI must be an http:// URL on 127.0.0.1 (Spotify rejects localhost) with the port "
        "to listen on, "
        f"e.g. {DEFAULT_REDIRECT_URI}, and registered in your Spotify app's settings; got {redirect_uri!r}"
    )
    parts = urlsplit(redirect_uri)
    if (
        parts.scheme != "http"
        or parts.hostname not in LOOPBACK_HOSTS
        or parts.username is not None
        or parts.password is not None
        or parts.fragment
    ):
        raise ConfigError(problem)
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(problem) from None
    return RedirectTarget(port=port, path=parts.path or "/")


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE code verifier (86 URL-safe characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    *, accounts_url: str, client_id: str, redirect_uri: str, state: str, code_challenge: str, scope: str = SCOPE
) -> str:
    """The consent page URL the user opens."""
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": scope,
            "code_challenge_method": "S256",
            "code_challenge": code_challenge,
        }
    )
    return f"{accounts_url.rstrip('/')}{AUTHORIZE_PATH}?{query}"


def _redact(text: str, *values: str) -> str:
    for value in values:
        if value:
            text = text.replace(value, "<redacted>")
    return text


def exchange_code(
    *, accounts_url: str, client_id: str, client_secret: str, code: str, redirect_uri: str, code_verifier: str
) -> dict[str, Any]:
    """Trade an authorization code for tokens at the token endpoint; raises AuthError on any failure."""
    token_url = f"{accounts_url.rstrip('/')}{TOKEN_PATH}"
    try:
        response = requests.post(
            token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            auth=(client_id, client_secret),
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        # The exception text can embed request details; its type is enough to act on.
        raise AuthError(f"could not reach the Spotify accounts service at {token_url} ({type(exc).__name__})") from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200:
        error = description = ""
        if isinstance(payload, dict):
            error, description = str(payload.get("error", "")), str(payload.get("error_description", ""))
        hint = {
            "invalid_client": "check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET",
            "invalid_grant": "the code expired or was used, or SPOTIFY_REDIRECT_URI differs from the app's setting",
        }.get(error, "run the command again")
        detail = _redact(f"{error or 'HTTP ' + str(response.status_code)}: {description}"[:300], client_secret, code)
        raise AuthError(f"Spotify refused the authorization code ({detail}); {hint}")
    if not isinstance(payload, dict) or not isinstance(payload.get("refresh_token"), str):
        raise AuthError(f"the token endpoint {token_url} answered without a refresh_token; is it Spotify's?")
    return payload


class _Callback:
    """What the callback handler needs, and the single outcome it reports back."""

    def __init__(self, path: str, state: str, exchange: Callable[[str], str]) -> None:
        self.path = path
        self.state = state
        self.exchange = exchange
        self.outcome: queue.Queue[str | AuthError] = queue.Queue(maxsize=1)
        self.lock = threading.Lock()
        self.handled = False

    def handle(self, query: dict[str, list[str]]) -> tuple[int, str, str, str | AuthError]:
        """(HTTP status, page title, page message, outcome) for one callback request."""
        received_state = (query.get("state") or [""])[0]
        if not hmac.compare_digest(received_state.encode("utf-8"), self.state.encode("utf-8")):
            error = AuthError(
                "state mismatch: the callback did not carry the state this command sent, so it was refused "
                "(a stale browser tab or a forged request); run the command again"
            )
            return 400, "Authorization refused", "The request did not match this sign-in attempt.", error
        if "error" in query:
            code = query["error"][0]
            code = code if _ERROR_CODE.fullmatch(code) else "unknown_error"
            message = "you declined access" if code == "access_denied" else "Spotify reported an error"
            error = AuthError(f"Spotify did not authorize the app ({code}): {message}; run the command again")
            return 400, "Authorization not granted", f"Spotify answered: {code}.", error
        authorization_code = (query.get("code") or [""])[0]
        if not authorization_code:
            error = AuthError("the callback carried neither an authorization code nor an error")
            return 400, "Authorization failed", "The callback carried no authorization code.", error
        try:
            refresh_token = self.exchange(authorization_code)
        except AuthError as exc:
            return 502, "Authorization failed", "The code could not be exchanged; see the terminal.", exc
        except Exception as exc:  # anything else would leave the command waiting until its timeout
            error = AuthError(f"the code exchange failed unexpectedly ({type(exc).__name__})")
            return 500, "Authorization failed", "The code could not be exchanged; see the terminal.", error
        return 200, "Spotify access granted", "You can close this tab and return to the terminal.", refresh_token


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser dropping a connection is harmless; the default would print a traceback.
        logger.debug("callback connection error from %s", client_address[0])


def _handler_class(callback: _Callback) -> type[BaseHTTPRequestHandler]:
    class CallbackHandler(BaseHTTPRequestHandler):
        server_version = "SpotifyAuthCallback/1.0"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
            parts = urlsplit(self.path)
            if parts.path != callback.path:
                self._page(404, "Not found", "This server only waits for Spotify's redirect.")
                return
            with callback.lock:
                if callback.handled:
                    self._page(409, "Already handled", "This sign-in attempt has already finished.")
                    return
                # Handled under the lock so a reload cannot exchange the same code twice.
                status, title, message, outcome = callback.handle(parse_qs(parts.query, keep_blank_values=True))
                callback.handled = True
            self._page(status, title, message)
            callback.outcome.put(outcome)

        def _page(self, status: int, title: str, message: str) -> None:
            body = _PAGE.format(title=title, message=message).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
            # The request line holds the authorization code: never write it anywhere.
            pass

    return CallbackHandler


def authorize(
    *,
    client_id: str,
    client_secret: str,
    accounts_url: str,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    open_browser: bool = True,
    timeout_seconds: float = 300,
    on_url: Callable[[str], None] = print,
) -> str:
    """Run the Authorization Code flow with PKCE for scope `user-read-recently-played`; return the refresh token.

    Raises:
        ConfigError: `redirect_uri` is not an http URL on 127.0.0.1.
        AuthError: the port is taken, the callback was refused or never came, or the exchange failed.
    """
    target = parse_redirect_uri(redirect_uri)
    state = secrets.token_urlsafe(32)
    code_verifier, code_challenge = pkce_pair()

    def exchange(code: str) -> str:
        tokens = exchange_code(
            accounts_url=accounts_url,
            client_id=client_id,
            client_secret=client_secret,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )
        return str(tokens["refresh_token"])

    callback = _Callback(target.path, state, exchange)
    try:
        # Loopback only: the callback carries an authorization code, no other machine may answer it.
        server = _CallbackServer(("127.0.0.1", target.port), _handler_class(callback))
    except OSError as exc:
        raise AuthError(
            f"cannot listen on 127.0.0.1:{target.port} for SPOTIFY_REDIRECT_URI ({exc.strerror or exc}); "
            "free the port or register another redirect URI"
        ) from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = authorize_url(
            accounts_url=accounts_url,
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=code_challenge,
        )
        on_url(url)
        if open_browser:
            try:
                webbrowser.open(url)
            except Exception:  # no usable browser is fine: the URL was already shown
                logger.debug("could not open a browser")
        try:
            outcome = callback.outcome.get(timeout=timeout_seconds)
        except queue.Empty:
            raise AuthError(
                f"no callback arrived at {redirect_uri} within {timeout_seconds:g} seconds; open the URL shown, "
                "approve access, and check the redirect URI is registered in your Spotify app"
            ) from None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome
