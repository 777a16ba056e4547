"""HTTP client for the Spotify Web API: token refresh, retries and the recently-played cursor pages.

Kept free of dlt so it can be read, tested and reused on its own. Tokens never enter log lines or errors.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from pipelines.errors import PipelineError
from pipelines.spotify import settings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {500, 502, 503, 504}
RECENTLY_PLAYED_PATH = "/me/player/recently-played"


class SpotifyApiError(PipelineError):
    """Spotify answered with something the pipeline cannot use, even after retries."""


class SpotifyAuthError(PipelineError):
    """The app credentials or the refresh token were rejected: the user has to re-authorise."""


class SpotifyTokenRejected(SpotifyAuthError):
    """Spotify answered `invalid_grant`: this listener's refresh token is dead (expired or revoked).

    Spotify says not to retry it: the listener has to go through login again.
    """


def to_unix_ms(moment: datetime) -> int:
    """Spotify's cursors are unix milliseconds; integer arithmetic avoids float rounding."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def parse_played_at(value: str) -> datetime:
    """Spotify's `played_at` ("2026-11-27T05:12:30.123Z") as an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class SpotifyClient:
    """A minimal, defensive client for the endpoints this pipeline reads.

    Args:
        client_id: The Spotify app's client id.
        client_secret: The Spotify app's client secret.
        refresh_token: The user's refresh token from `python -m pipelines auth`.
        api_url: Web API base, e.g. https://api.spotify.com/v1.
        accounts_url: Accounts service base; the token endpoint is `/api/token` below it.
        on_refresh_token_rotated: Called with the new refresh token when Spotify issues one, so it can be
            persisted; the old one stops working.
        sleep: Injected so retry waits stay real but bounded.
        backoff_base_seconds: First retry wait, doubled per attempt (default settings.BACKOFF_BASE_SECONDS).
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        api_url: str = settings.DEFAULT_API_URL,
        accounts_url: str = settings.DEFAULT_ACCOUNTS_URL,
        on_refresh_token_rotated: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base_seconds: float | None = None,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.api_url = api_url.rstrip("/")
        self.accounts_url = accounts_url.rstrip("/")
        self._on_rotated = on_refresh_token_rotated
        self._sleep = sleep
        # Read at construction, not import, so a deployment (or a test) can tune settings.BACKOFF_BASE_SECONDS.
        self._backoff_base = settings.BACKOFF_BASE_SECONDS if backoff_base_seconds is None else backoff_base_seconds
        self._access_token: str | None = None
        self._session = requests.Session()
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"SpotifyClient(api_url={self.api_url!r}, accounts_url={self.accounts_url!r})"

    # -- tokens ---------------------------------------------------------------------------------

    def refresh_access_token(self) -> None:
        """Trade the refresh token for a fresh access token (grant_type=refresh_token, Basic client auth)."""
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        response = self._send(
            "POST",
            self.accounts_url + settings.TOKEN_PATH,
            what="token refresh",
            headers={"Authorization": f"Basic {basic}"},
            data={"grant_type": "refresh_token", "refresh_token": self._refresh_token},
        )
        body = _json_or_none(response)
        if response.status_code != 200:
            error = (body or {}).get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else "?"
            if error in {"invalid_grant", "invalid_client"}:
                if error == "invalid_grant":
                    raise SpotifyTokenRejected(
                        "Spotify rejected the refresh token (invalid_grant): it expired or was revoked. Run "
                        "`python -m pipelines auth` again to authorise."
                    )
                raise SpotifyAuthError(
                    "Spotify rejected the client id/secret (invalid_client). Check SPOTIFY_CLIENT_ID/"
                    "SPOTIFY_CLIENT_SECRET (or the account's app's SPOTIFY_CLIENT_SECRET_<client id>)."
                )
            raise SpotifyApiError(f"token refresh failed: {error} (HTTP {response.status_code})")
        if not isinstance(body, dict) or not body.get("access_token"):
            raise SpotifyApiError("token refresh answered without an access_token")
        self._access_token = body["access_token"]
        rotated = body.get("refresh_token")
        if rotated and rotated != self._refresh_token:
            self._refresh_token = rotated
            log.info("Spotify issued a new refresh token; persisting it")
            if self._on_rotated is not None:
                self._on_rotated(rotated)

    # -- requests -------------------------------------------------------------------------------

    def get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a Web API URL (absolute, or a path below api_url) and return its JSON object.

        A 401 refreshes the access token once and retries; 429/5xx/timeouts are retried by `_send`.
        """
        if not url.startswith("http"):
            url = self.api_url + url
        if self._access_token is None:
            self.refresh_access_token()
        refreshed = False
        while True:
            response = self._send(
                "GET",
                url,
                what=_path_of(url),
                params=params,
                headers={"Authorization": f"Bearer {self._access_token}"},
            )
            if response.status_code == 401 and not refreshed:
                log.info("access token expired; refreshing once")
                self.refresh_access_token()
                refreshed = True
                continue
            refusal = _auth_refusal(response, _path_of(url))
            if refusal is not None:
                raise refusal
            if response.status_code != 200:
                raise SpotifyApiError(
                    f"GET {_path_of(url)} failed: HTTP {response.status_code} {_error_message(response)}"
                )
            body = _json_or_none(response)
            if not isinstance(body, dict):
                raise SpotifyApiError(f"GET {_path_of(url)} answered with something that is not a JSON object")
            return body

    def _send(self, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
        """Send with bounded retries: honour 429 Retry-After, back off on 5xx, timeouts and resets."""
        for attempt in range(1, settings.MAX_ATTEMPTS + 1):
            last = attempt == settings.MAX_ATTEMPTS
            try:
                self.requests_made += 1
                response = self._session.request(method, url, timeout=settings.REQUEST_TIMEOUT_SECONDS, **kwargs)
            # ChunkedEncodingError: the connection broke mid-body (a truncated response), as transient as a reset.
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if last:
                    raise SpotifyApiError(f"{what}: {type(exc).__name__} after {attempt} attempts") from None
                self._wait(attempt, f"{what}: {type(exc).__name__}")
                continue
            if response.status_code == 429:
                wait = _retry_after(response)
                if last or (wait is not None and wait > settings.MAX_RETRY_AFTER_SECONDS):
                    asked = "no usable Retry-After" if wait is None else f"Retry-After {wait:.0f}s"
                    raise SpotifyApiError(f"{what}: rate limited by Spotify ({asked}); the next run will catch up")
                if wait is None:
                    # No wait named: back off as for a 5xx (doubling, capped) rather than retry at a fixed pace.
                    self._wait(attempt, f"{what}: rate limited without a usable Retry-After")
                else:
                    log.warning("%s: rate limited, waiting %.1fs as Retry-After asks", what, wait)
                    self._sleep(wait)
                continue
            if response.status_code in RETRYABLE_STATUS and not last:
                self._wait(attempt, f"{what}: HTTP {response.status_code}")
                continue
            return response
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, reason: str) -> None:
        delay = min(settings.BACKOFF_MAX_SECONDS, self._backoff_base * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter, so many workers do not retry in lockstep
        log.warning("%s; retry %d/%d in %.1fs", reason, attempt, settings.MAX_ATTEMPTS - 1, delay)
        self._sleep(delay)

    # -- endpoints ------------------------------------------------------------------------------

    def current_user_id(self) -> str:
        """The Spotify user id of the token's owner (`GET /me`)."""
        user_id = self.get("/me").get("id")
        if not user_id:
            raise SpotifyApiError("GET /me answered without a user id")
        return str(user_id)

    def recently_played_pages(self, after: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of play items newer than `after` (all visible plays when None), following `next`.

        Spotify only ever shows the 50 most recent plays, whatever the cursor. Paging ends, within
        settings.MAX_PAGES requests, at the first empty page or a `next` that would not move on (see `PageTrail`);
        a run that stops for such an anomaly warns once and keeps what it read.
        """
        params: dict[str, Any] | None = {"limit": settings.PAGE_LIMIT}
        if after is not None:
            params["after"] = to_unix_ms(after)
        url: str = self.api_url + RECENTLY_PLAYED_PATH
        trail = PageTrail(self.api_url, url, params)
        for pages in range(1, settings.MAX_PAGES + 1):
            body = self.get(url, params)
            items = body.get("items")
            if not isinstance(items, list):
                raise SpotifyApiError(f"GET {RECENTLY_PLAYED_PATH} answered without an 'items' list")
            next_url = body.get("next")
            if not items:
                if next_url is not None:
                    _stop_paging(pages, "an empty page still carried a `next` link")
                return
            yield items
            if next_url is None:
                return
            problem = trail.refuse(next_url)
            if problem is not None:
                _stop_paging(pages, problem)
                return
            url, params = next_url, None  # `next` already carries limit and cursor
        _stop_paging(
            settings.MAX_PAGES, f"`next` still pointed on after {settings.MAX_PAGES} pages, the most a run reads"
        )


class PageTrail:
    """The recently-played pages a run has asked for, to refuse a `next` that would not move the run on.

    A run pages one way: forward in time from an `after` cursor, or back from the newest play (no cursor, then
    `before`). A `next` must stay on the API, carry that cursor, and move it on past the last page asked for;
    one that repeats a page, points backwards or stands still would make the run read the same plays forever.
    """

    def __init__(self, api_url: str, url: str, params: dict[str, Any]) -> None:
        self._api_prefix = api_url.rstrip("/") + "/"
        self._direction = "after" if "after" in params else "before"
        self._cursor: int | None = params.get(self._direction)
        self._asked = {_page_key(url, {name: str(value) for name, value in params.items()})}

    def refuse(self, next_url: Any) -> str | None:
        """Why following `next_url` would not move the run on; None (and it is noted as asked) if it would."""
        if not isinstance(next_url, str) or not next_url.startswith(self._api_prefix):
            # Following it would also hand the access token to whoever answers there.
            return "`next` does not point to the Web API"
        query = dict(parse_qsl(urlsplit(next_url).query))
        key = _page_key(next_url, query)
        if key in self._asked:
            return "`next` repeats a page already read"
        raw = query.get(self._direction, "")
        if not raw.isdigit():
            return f"`next` carries no `{self._direction}` cursor to move on with"
        cursor = int(raw)
        forward = self._direction == "after"
        if self._cursor is not None and (cursor <= self._cursor if forward else cursor >= self._cursor):
            return f"`next` does not move past the last cursor ({self._direction}={self._cursor}, then {cursor})"
        self._asked.add(key)
        self._cursor = cursor
        return None


def _page_key(url: str, query: dict[str, str]) -> tuple[str, frozenset[tuple[str, str]]]:
    # The same page whatever the order of its query parameters.
    return urlsplit(url).path, frozenset(query.items())


def _stop_paging(pages: int, problem: str) -> None:
    log.warning(
        "stopped reading recently played tracks after %d page(s): %s. Loading the plays read so far; the next run "
        "asks for plays after the newest of them",
        pages,
        problem,
    )


def _auth_refusal(response: requests.Response, path: str) -> SpotifyAuthError | None:
    """The error for a 401 that a token refresh did not cure, or a 403 for a missing scope; None for others."""
    message = _error_message(response)
    if response.status_code == 401:
        return SpotifyAuthError(
            f"Spotify still refused GET {path} after a token refresh (HTTP 401 {message}). "
            "Run `python -m pipelines auth` again to authorise."
        )
    if response.status_code == 403 and "scope" in message.lower():
        return SpotifyAuthError(
            f"Spotify refused GET {path} (HTTP 403 {message}): the authorisation lacks the {settings.SCOPE} "
            "scope. Run `python -m pipelines auth` again to grant it."
        )
    return None


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_message(response: requests.Response) -> str:
    body = _json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return ""


def _retry_after(response: requests.Response) -> float | None:
    """What a 429's Retry-After asks to wait: delay-seconds or an HTTP date (RFC 9110); None if absent or garbled."""
    value = (response.headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, says RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _path_of(url: str) -> str:
    # Query strings are dropped from messages: they carry cursors, never needed to diagnose.
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
