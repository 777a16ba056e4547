"""What the sample server remembers and replays: received requests, and scripted faulty responses.

Also the small response type the server builds, with Spotify's JSON error shape.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
# Request fields that carry credentials; RecordedRequest hides them when printed.
_SECRET_HEADERS = frozenset({"authorization"})
_SECRET_FIELDS = frozenset({"client_secret", "refresh_token", "code", "code_verifier", "access_token"})


# How a response leaves the server: whole, cut off mid-body, or not at all (the TCP connection is reset).
SEND = "send"
TRUNCATE = "truncate"
RESET = "reset"

# How a recently-played page's `next` can go wrong (Spotify does not document `next` after an `after` query).
NEXT_REPEATS = "repeats"  # `next` is the URL just requested: the same page again
NEXT_ON_EMPTY = "on-empty"  # `next` is never null: where paging would end, it links 1 ms further on
NEXT_LOOPS = "loops"  # `next` links back to the page requested before this one (A, B, A, B, ...)


@dataclass
class Response:
    """An HTTP response before it is written.

    `delay` seconds pass before anything is sent (a slow server, or a read timeout for a client that waits
    less); `action` says how it is sent: SEND, TRUNCATE (headers announce the full body, half arrives, then
    the connection closes) or RESET (the connection is reset before any byte of the response).
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str = SEND


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response; Spotify sends UTF-8 text, not \\u escapes."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(status, body, {"Content-Type": JSON_TYPE, **(headers or {})})


def api_error(status: int, message: str) -> Response:
    """The Web API's error body: `{"error": {"status": ..., "message": ...}}`."""
    return json_response(status, {"error": {"status": status, "message": message}})


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request as the server received it (query and form values: first occurrence of each name).

    `received_at` is `time.monotonic()` on arrival, for asserting waits between requests. `user` is the
    listener the request acts for, as far as its credentials tell (None when they name nobody known).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)
    user: str | None = None

    def header(self, name: str) -> str | None:
        """A header value looked up case-insensitively, as HTTP intends."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    def __repr__(self) -> str:
        # Test failures print these; credentials must not end up in the output.
        headers = {k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers.items()}
        form = {k: ("<redacted>" if k in _SECRET_FIELDS else v) for k, v in self.form.items()}
        query = {k: ("<redacted>" if k in _SECRET_FIELDS else v) for k, v in self.query.items()}
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, query={query!r}, "
            f"headers={headers!r}, form={form!r}, received_at={self.received_at!r}, user={self.user!r})"
        )


@dataclass
class _Fault:
    path: str
    response: Response
    remaining: int
    user: str | None = None  # None: whoever the request is for

    def matches(self, path: str, user: str | None) -> bool:
        return path.startswith(self.path) and (self.user is None or self.user == user)


def _default_fault_response(path: str, status: int, body: str | bytes | dict | None) -> Response:
    if isinstance(body, dict):
        return json_response(status, body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes):
        return Response(status, body, {"Content-Type": "text/plain; charset=utf-8"})
    if status < 400:
        return Response(status)
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    if path.startswith("/v1"):
        return api_error(status, reason)
    return json_response(status, {"error": "server_error", "error_description": reason})


class FaultQueue:
    """Scripted responses, each used for the next `times` requests whose path starts with its prefix.

    A fault given a `user` applies only to requests acting for that listener.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(
        self,
        path: str,
        status: int,
        body: str | bytes | dict | None,
        headers: Mapping[str, Any] | None,
        times: int,
        delay: float = 0.0,
        action: str = SEND,
        user: str | None = None,
    ) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        if action not in (SEND, TRUNCATE, RESET):
            raise ValueError(f"action must be {SEND!r}, {TRUNCATE!r} or {RESET!r}, got {action!r}")
        response = _default_fault_response(path, status, body)
        extra = {name: str(value) for name, value in (headers or {}).items()}
        overridden = {name.lower() for name in extra}
        response.headers = {k: v for k, v in response.headers.items() if k.lower() not in overridden} | extra
        response.delay, response.action = delay, action
        with self._lock:
            self._faults.append(_Fault(path, response, times, user))

    def take(self, path: str, user: str | None = None) -> Response | None:
        """The response of the oldest fault matching `path` and the request's `user` (using it up once), if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, user):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    response = fault.response
                    return Response(
                        response.status, response.body, dict(response.headers), response.delay, response.action
                    )
        return None


@dataclass
class _NextFault:
    kind: str
    remaining: int
    previous: str | None = None  # the page served before, under this fault
    user: str | None = None  # None: whoever the page is for


class NextLinkFaults:
    """Scripted `next` links, each used for the next `times` recently-played pages the server answers itself.

    A fault given a `user` applies only to that listener's pages.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_NextFault] = []

    def add(self, kind: str, times: int, user: str | None = None) -> None:
        if kind not in (NEXT_REPEATS, NEXT_ON_EMPTY, NEXT_LOOPS):
            raise ValueError(f"kind must be {NEXT_REPEATS!r}, {NEXT_ON_EMPTY!r} or {NEXT_LOOPS!r}, got {kind!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_NextFault(kind, times, user=user))

    def link(self, requested: str, proper: str | None, further: str, user: str | None = None) -> str | None:
        """The `next` for the page at URL `requested`: `proper` (what Spotify's rules give), or the oldest fault's.

        `further` is a link past the page, for a fault that links on where paging would end.
        """
        with self._lock:
            fault = next((fault for fault in self._faults if fault.user in (None, user)), None)
            if fault is None:
                return proper
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
            if fault.kind == NEXT_REPEATS:
                return requested
            if fault.kind == NEXT_ON_EMPTY:
                return proper or further
            back, fault.previous = fault.previous, requested
            return back if back is not None and back != requested else proper
