"""A Spotify-compatible HTTP server on loopback for tests and the demo.

It serves the accounts endpoints (`/authorize`, `/api/token`) and the Web API endpoints the
pipeline uses (`/v1/me`, `/v1/me/player/recently-played`) with Spotify's documented semantics,
for one app (or more, `register_app`) and any number of listeners (each refresh token acts for its
own listener, with their own history, and works only with the app the listener authorised). It
records every request, and can be scripted to fail, for everyone or for one listener (rate limits
and quota, outages, malformed bodies, expired, rotated, revoked or aged-out tokens, a scope not
granted, `next` links that never end). Standard library only; it runs in a
daemon thread.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pipelines.sample_server.accounts import REFRESH_OMITS, Accounts, ApiAuthError, OAuthError, check_refresh_mode
from pipelines.sample_server.clock import Clock, system_clock
from pipelines.sample_server.history import InvalidQuery, parse_page_query
from pipelines.sample_server.listeners import Listener, default_account_id, default_display_name
from pipelines.sample_server.recording import (
    RESET,
    SEND,
    TRUNCATE,
    FaultQueue,
    NextLinkFaults,
    RecordedRequest,
    Response,
    api_error,
    json_response,
)
from pipelines.spotify.settings import AUTHORIZE_PATH, SCOPE, TOKEN_PATH

logger = logging.getLogger(__name__)

RECENTLY_PLAYED_PATH = "/v1/me/player/recently-played"
ME_PATH = "/v1/me"


# A held request gives up waiting after this long, so a forgotten hold cannot hang a test run.
HOLD_LIMIT_SECONDS = 120.0
# The Web API's message on a 429, as clients have seen it; a quota 429 adds a `reason`.
RATE_LIMIT_MESSAGE = "API rate limit exceeded"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"

UserRef = str | Listener | None


def _first_values(raw: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}


class RequestHold:
    """Requests whose path starts with `path` wait before being answered, until `release()`.

    Lets a test act at a known moment of a client's run: while the response is "in flight" (kill the
    client, stop its database, expire its token), then let the server answer normally. With a `user`,
    only requests acting for that listener are held.
    """

    def __init__(self, path: str, skip: int = 0, user: str | None = None) -> None:
        self.path = path
        self.user = user
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._skip = skip
        self._lock = threading.Lock()

    def wait_for_request(self, timeout: float = 30.0) -> bool:
        """Block until a request is being held; False if none arrived within `timeout`."""
        return self.arrived.wait(timeout)

    def release(self) -> None:
        """Answer the held requests (and any later ones) normally."""
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def _hold(self) -> None:
        with self._lock:
            if self._skip > 0:
                self._skip -= 1
                return
        self.arrived.set()
        self._released.wait(HOLD_LIMIT_SECONDS)


class SampleSpotifyServer:
    """Spotify's accounts service and Web API for one app (or more) and its listeners, served on loopback.

    Use as a context manager, or call start() and stop(). Point the pipeline at `api_url`
    (SPOTIFY_API_URL) and `accounts_url` (SPOTIFY_ACCOUNTS_URL).

    The constructor makes the default listener (`user_id`, `refresh_token`); `add_listener` adds more
    to the same app, or to another one registered with `register_app` (a development-mode app takes only 5
    listeners). Methods about plays and tokens act on the default listener unless given `user=`
    (a user id or a Listener); faults and holds apply to every request unless given `user=`.

    `authorised_at` is when the default listener authorised the app (default: now by `clock`); refresh
    tokens expire 6 months after it. `refresh_returns` says what a refresh answers about the refresh
    token (REFRESH_OMITS, the default, as Spotify's responses often do since mid-2026; REFRESH_REPEATS;
    REFRESH_ROTATES), for the default listener and for listeners added without saying. `clock` is the
    accounts service's "now" for expiry (default: the real time), e.g. a ManualClock.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        user_id: str = "demo-user",
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str | None = None,
        authorised_at: datetime | None = None,
        refresh_returns: str = REFRESH_OMITS,
        clock: Clock | None = None,
    ) -> None:
        self.user_id = user_id
        self._host = host
        self._port = port
        self._refresh_returns = check_refresh_mode(refresh_returns)
        self._accounts = Accounts(client_id=client_id, client_secret=client_secret, clock=clock or system_clock)
        self._listeners: dict[str, Listener] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._next_faults = NextLinkFaults()
        self._holds: list[RequestHold] = []
        self._page_size_cap: int | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._default = self.add_listener(
            user_id, refresh_token=refresh_token, account_id=account_id, authorised_at=authorised_at
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SampleSpotifyServer:
        """Bind the port and serve in a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            raise RuntimeError("the sample server is already running")
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.app = self
        self._httpd = httpd
        # A short poll interval keeps stop() fast in tests.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sample-spotify-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SampleSpotifyServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, available once started."""
        if self._httpd is None:
            raise RuntimeError("the sample server is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The Web API base, for SPOTIFY_API_URL."""
        return self.base_url + "/v1"

    @property
    def accounts_url(self) -> str:
        """The accounts service base, for SPOTIFY_ACCOUNTS_URL (token endpoint: + "/api/token")."""
        return self.base_url

    # --- apps and listeners --------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The constructor's app: the one listeners authorise unless added with another `client_id`."""
        return self._accounts.client_id

    def register_app(self, client_id: str, client_secret: str) -> None:
        """Another Spotify app on this server, for `add_listener(..., client_id=...)`; ValueError if known."""
        self._accounts.register_app(client_id, client_secret)

    def add_listener(
        self,
        user_id: str,
        *,
        refresh_token: str | None = None,
        account_id: str | None = None,
        display_name: str | None = None,
        authorised_at: datetime | None = None,
        refresh_returns: str | None = None,
        client_id: str | None = None,
    ) -> Listener:
        """A listener who authorised an app: their own refresh token (default: a random one), history and ids.

        `account_id` (GET /v1/me) defaults to a stable id derived from `user_id`. `authorised_at` (default:
        now by the server's clock) starts the refresh token's 6 months. `refresh_returns` defaults to the
        server's. `client_id` is the app they authorised (default: the constructor's; another must be
        registered first): their refresh token works only with that app's credentials. Raises ValueError for
        a user id or refresh token that another listener has, or an app not registered.
        """
        listener = Listener(
            self,
            user_id,
            account_id=account_id or default_account_id(user_id),
            display_name=display_name or default_display_name(user_id),
        )
        with self._lock:
            if user_id in self._listeners:
                raise ValueError(f"there is a listener {user_id!r} already")
            self._accounts.add_grant(
                user_id,
                refresh_token or secrets.token_urlsafe(48),
                authorised_at=authorised_at,
                refresh_returns=self._refresh_returns if refresh_returns is None else refresh_returns,
                client_id=client_id,
            )
            self._listeners[user_id] = listener
        return listener

    def listener(self, user: str | Listener | None = None) -> Listener:
        """The listener with this user id (None: the default listener); KeyError if there is none."""
        if isinstance(user, Listener):
            user = user.user_id
        if user is None:
            return self._default
        found = self._listeners.get(user)
        if found is None:
            raise KeyError(f"no listener {user!r} on this server")
        return found

    @property
    def listeners(self) -> list[Listener]:
        """Every listener, the default one first, in the order they were added."""
        with self._lock:
            return list(self._listeners.values())

    @property
    def default_listener(self) -> Listener:
        """The listener the constructor made, whom methods without `user=` act on."""
        return self._default

    def sign_in(self, user: str | Listener) -> None:
        """Whom `/authorize` sees signed in to the browser (the default listener until this is called)."""
        self._accounts.sign_in(self.listener(user).user_id)

    # --- plays --------------------------------------------------------------------------------

    def add_play(
        self, track: dict[str, Any], played_at: datetime, context: dict[str, Any] | None = None, *, user: UserRef = None
    ) -> dict:
        """Record a play (timezone-aware `played_at`, kept to the millisecond); returns the API item."""
        return self.listener(user).add_play(track, played_at, context)

    def add_plays(
        self, items: Iterable[tuple[dict[str, Any], datetime, dict[str, Any] | None]], *, user: UserRef = None
    ) -> None:
        """Record many plays, e.g. `catalog.demo_history(now)`; all of them or, if one is invalid, none."""
        self.listener(user).add_plays(items)

    @property
    def plays(self) -> list[dict[str, Any]]:
        """Every play of the default listener ever added, newest first, including those the API no longer shows."""
        return self._default.plays

    # --- requests and faults ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests (e.g. after a setup phase)."""
        with self._lock:
            self._requests.clear()

    def enqueue_fault(
        self,
        path: str,
        status: int,
        *,
        body: str | bytes | dict | None = None,
        headers: Mapping[str, Any] | None = None,
        times: int = 1,
        delay: float = 0.0,
        user: UserRef = None,
    ) -> None:
        """Answer the next `times` requests whose path starts with `path` with this response instead.

        A dict body is sent as JSON; str and bytes as text/plain unless `headers` set a
        Content-Type. With no body, an error status gets Spotify's error JSON for it.
        `delay` seconds pass before the response is sent (a slow server; a read timeout for a client
        that waits less). Faults queue up in order: the oldest unused one matching a request applies.
        With `user`, only requests acting for that listener match: API calls by their access token,
        token requests by their refresh token or code.
        """
        self._faults.add(path, status, body, headers, times, delay, user=self._fault_user(user))

    def enqueue_rate_limit(
        self,
        path: str = "/v1",
        *,
        retry_after: int | None = 1,
        quota: bool = False,
        times: int = 1,
        user: UserRef = None,
    ) -> None:
        """Answer the next `times` requests to `path` (default: any Web API call) with a 429.

        The body is `{"error": {"status": 429, "message": "API rate limit exceeded"}}`, plus
        `"reason": "QUOTA_EXCEEDED"` with `quota` (the app's shared quota is spent). `Retry-After` carries
        `retry_after` seconds, or is left out with None. `user` as for enqueue_fault.
        """
        error: dict[str, Any] = {"status": 429, "message": RATE_LIMIT_MESSAGE}
        if quota:
            error["reason"] = QUOTA_EXCEEDED
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        self.enqueue_fault(path, 429, body={"error": error}, headers=headers, times=times, user=user)

    def enqueue_connection_reset(self, path: str, *, times: int = 1, user: UserRef = None) -> None:
        """Reset the TCP connection of the next `times` matching requests without answering them."""
        self._faults.add(path, 502, None, None, times, action=RESET, user=self._fault_user(user))

    def enqueue_truncated_response(self, path: str, *, times: int = 1, user: UserRef = None) -> None:
        """Answer the next `times` matching requests with a 200 whose body stops halfway (then hang up)."""
        body = {"items": [], "next": None, "padding": "x" * 2048}
        self._faults.add(path, 200, body, None, times, action=TRUNCATE, user=self._fault_user(user))

    def enqueue_next_fault(self, kind: str, *, times: int = 1, user: UserRef = None) -> None:
        """Give the next `times` recently-played pages a `next` link that goes wrong in the way `kind` names.

        Kinds (in pipelines.sample_server.recording): NEXT_REPEATS, the URL just requested; NEXT_ON_EMPTY, a link
        1 ms further on where paging would end, empty pages included; NEXT_LOOPS, a link back to the page asked
        for before. Pages answered by another fault do not count. Spotify does not document what `next` holds
        after an `after` query, so clients must end their paging whatever it holds. With `user`, only that
        listener's pages.
        """
        self._next_faults.add(kind, times, user=self._fault_user(user))

    def hold_requests(self, path: str, *, skip: int = 0, user: UserRef = None) -> RequestHold:
        """Make requests to `path` wait until the returned hold is released (see RequestHold).

        The first `skip` matching requests pass unheld, e.g. to stop a client at its third page.
        With `user`, only requests acting for that listener are held (and counted for `skip`).
        """
        hold = RequestHold(path, skip, self._fault_user(user))
        with self._lock:
            self._holds.append(hold)
        return hold

    def limit_page_size(self, cap: int | None) -> None:
        """Serve at most `cap` plays per page whatever `limit` asks (None: no cap), so runs span pages.

        Spotify may return fewer items than `limit`; clients must follow `next` until it is null.
        """
        if cap is not None and cap < 1:
            raise ValueError("the page size cap must be at least 1")
        self._page_size_cap = cap

    def _fault_user(self, user: UserRef) -> str | None:
        # Faults for nobody in particular stay None; a named listener must exist.
        return None if user is None else self.listener(user).user_id

    # --- tokens -------------------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str:
        """The default listener's refresh token that works right now (Listener.current_refresh_token: anyone's)."""
        return self._default.current_refresh_token

    @property
    def issued_access_tokens(self) -> list[str]:
        """Every access token handed out so far, to any listener (e.g. to prove none of them leaked into logs)."""
        return self._accounts.issued_access_tokens()

    def expire_access_tokens(self, *, user: UserRef = None) -> None:
        """Every access token issued so far (with `user`: to that listener) answers 401 "The access token expired"."""
        self._accounts.expire_access_tokens(self._fault_user(user))

    def rotate_refresh_token(self, new_token: str | None = None, *, user: UserRef = None) -> str:
        """The next successful refresh returns `new_token` (default: a random one, returned here); from then on
        the old one is invalid_grant. The authorisation time, and so the expiry, stays the same."""
        token = new_token or secrets.token_urlsafe(48)
        self._accounts.rotate_refresh_token(self.listener(user).user_id, token)
        return token

    def revoke_refresh_token(self, *, user: UserRef = None) -> None:
        """Refreshing now fails with invalid_grant "Refresh token revoked" until the listener authorises again
        (through `/authorize`, or `reauthorize`)."""
        self._accounts.revoke_refresh_token(self.listener(user).user_id)

    def reauthorize(
        self, *, user: UserRef = None, refresh_token: str | None = None, authorised_at: datetime | None = None
    ) -> str:
        """The listener authorises the app again, as after a revocation or expiry: returns their new refresh token.

        The token is `refresh_token` or a random one; the old one stops working. The 6 months start again
        at `authorised_at` (default: now by the server's clock). No pending rotation is left.
        """
        return self._accounts.reauthorize(self.listener(user).user_id, refresh_token, authorised_at)

    def grant_refresh_token_scope(self, scope: str, *, user: UserRef = None) -> None:
        """Refreshing now grants only `scope`, as if the user had authorised an app that asked for that."""
        self._accounts.grant_refresh_token_scope(self.listener(user).user_id, scope)

    def issue_access_token(self, scope: str = SCOPE, *, user: UserRef = None) -> str:
        """A valid access token, for tests of API calls that want to skip the token endpoint."""
        return self._accounts.issue_access_token(self.listener(user).user_id, scope)

    # --- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The accounts service's "now", which decides when refresh tokens expire."""
        return self._accounts.now()

    def set_clock(self, clock: Clock) -> None:
        """Use `clock` (a callable returning an aware datetime, e.g. a ManualClock) as "now" from here on."""
        self._accounts.set_clock(clock)

    # --- request handling (called from handler threads) -------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _owner(self, path: str, authorization: str | None, form: dict[str, str]) -> str | None:
        """The listener a request acts for, as far as its credentials tell; None if they name nobody known."""
        if path == TOKEN_PATH:
            return self._accounts.owner_of_token_request(form)
        if path == AUTHORIZE_PATH:
            return self._accounts.signed_in
        return self._accounts.owner_of_bearer(authorization)

    def _wait_if_held(self, path: str, user: str | None = None) -> None:
        with self._lock:
            self._holds = [hold for hold in self._holds if not hold.released]
            holds = [hold for hold in self._holds if path.startswith(hold.path) and hold.user in (None, user)]
        for hold in holds:
            hold._hold()

    def _dispatch(self, request: RecordedRequest, raw_query: str) -> Response:
        fault = self._faults.take(request.path, request.user)
        if fault is not None:
            return fault
        if request.path == AUTHORIZE_PATH:
            return self._authorize(request) if request.method == "GET" else api_error(405, "Method not allowed")
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return json_response(405, {"error": "invalid_request", "error_description": "Method not allowed"})
            return self._token(request)
        if request.path in (ME_PATH, RECENTLY_PLAYED_PATH):
            if request.method != "GET":
                return api_error(405, "Method not allowed")
            try:
                scope = "user-read-recently-played" if request.path == RECENTLY_PLAYED_PATH else None
                listener = self._listeners[self._accounts.check_bearer(request.header("Authorization"), scope)]
            except ApiAuthError as exc:
                return self._auth_failure(exc)
            if request.path == ME_PATH:
                return json_response(200, listener.me(self.api_url))
            return self._recently_played(listener, request, raw_query)
        return api_error(404, "Service not found")

    def _authorize(self, request: RecordedRequest) -> Response:
        result = self._accounts.authorize(request.query)
        if result.location is not None:
            return Response(302, b"", {"Location": result.location})
        page = f"<!doctype html><title>Error</title><h1>{result.error_page}</h1>".encode()
        return Response(400, page, {"Content-Type": "text/html; charset=utf-8"})

    def _token(self, request: RecordedRequest) -> Response:
        try:
            payload = self._accounts.token(request.header("Authorization"), request.form)
        except OAuthError as exc:
            return json_response(exc.status, exc.body())
        return json_response(200, payload, {"Cache-Control": "no-store"})

    @staticmethod
    def _auth_failure(exc: ApiAuthError) -> Response:
        response = api_error(exc.status, exc.message)
        if exc.status == 401:
            challenge = f'Bearer realm="spotify", error="invalid_token", error_description="{exc.message}"'
            response.headers["WWW-Authenticate"] = challenge
        return response

    def _recently_played(self, listener: Listener, request: RecordedRequest, raw_query: str) -> Response:
        try:
            page_request = parse_page_query(request.query)
        except InvalidQuery as exc:
            return api_error(400, str(exc))
        if self._page_size_cap is not None and page_request.limit > self._page_size_cap:
            page_request = replace(page_request, limit=self._page_size_cap)
        page = listener._history.page(page_request)
        endpoint = self.base_url + RECENTLY_PLAYED_PATH

        def link(cursor_name: str, cursor_ms: int) -> str:
            return f"{endpoint}?{urlencode({cursor_name: cursor_ms, 'limit': page_request.limit})}"

        requested = f"{endpoint}?{raw_query}" if raw_query else endpoint
        next_url = link(*page.next_cursor) if page.next_cursor is not None else None
        # Past the newest play served, or past the cursor asked for when the page is empty.
        last_ms = page.newest_ms if page.newest_ms is not None else page_request.after or page_request.before or 0
        next_url = self._next_faults.link(
            requested, next_url, further=link("after", last_ms + 1), user=listener.user_id
        )
        cursors = None
        if page.items:
            cursors = {"after": str(page.newest_ms), "before": str(page.oldest_ms)}
        return json_response(
            200,
            {
                "items": page.items,
                "next": next_url,
                "cursors": cursors,
                "limit": page_request.limit,
                "href": requested,
            },
        )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: SampleSpotifyServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-request are routine in retry tests; stay quiet (and print no request data).
        logger.debug("sample server connection error from %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    server_version = "SampleSpotify/1.0"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        received_at = time.monotonic()
        app = self.server.app
        parts = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._write(api_error(400, "Malformed request"))
            return
        body = self.rfile.read(length) if length > 0 else b""
        form: dict[str, str] = {}
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            form = _first_values(body.decode("utf-8", errors="replace"))
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=_first_values(parts.query),
            headers=dict(self.headers.items()),
            form=form,
            received_at=received_at,
            user=app._owner(parts.path, self.headers.get("Authorization"), form),
        )
        app._record(request)
        app._wait_if_held(parts.path, request.user)
        try:
            response = app._dispatch(request, parts.query)
        except Exception as exc:  # a bug here must not kill the thread silently or leak request data
            logger.error("sample server failed on %s %s: %s", self.command, parts.path, type(exc).__name__)
            response = api_error(500, "Internal server error")
        self._write(response)
        logger.debug("%s %s -> %d", self.command, parts.path, response.status)

    def _write(self, response: Response) -> None:
        if response.delay:
            time.sleep(response.delay)
        if response.action == RESET:
            self._reset_connection()
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.action == TRUNCATE:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            self._reset_connection()
            return
        if response.body and self.command != "HEAD" and response.action == SEND:
            self.wfile.write(response.body)

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send a TCP RST: "connection reset by peer".
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The default line includes the query string, which can carry codes and tokens.
        pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
        pass
