"""The play history behind `GET /v1/me/player/recently-played`, with Spotify's paging rules.

Spotify only ever shows the 50 most recent plays, newest first; `before`/`after` are exclusive
unix-millisecond cursors. Paging with `after` returns the *oldest* plays past the cursor, so a
client stepping forward page by page never skips one.
"""

from __future__ import annotations

import bisect
import copy
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.spotify.settings import PAGE_LIMIT, VISIBLE_WINDOW

DEFAULT_LIMIT = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = re.compile(r"[0-9]+")


class InvalidQuery(ValueError):
    """A query parameter Spotify would answer with 400; the message is what the API says."""


def to_unix_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, truncated (never rounded up into the next millisecond)."""
    if moment.tzinfo is None:
        raise ValueError("played_at must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def format_played_at(unix_ms: int) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, as Spotify writes `played_at`."""
    moment = _EPOCH + timedelta(milliseconds=unix_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{unix_ms % 1000:03d}Z"


@dataclass(frozen=True)
class PageRequest:
    """A validated recently-played query."""

    limit: int = DEFAULT_LIMIT
    after: int | None = None
    before: int | None = None


@dataclass(frozen=True)
class Page:
    """One page of plays (newest first) and which cursor, if any, leads to the next page."""

    items: list[dict[str, Any]]
    newest_ms: int | None
    oldest_ms: int | None
    next_cursor: tuple[str, int] | None  # ("before" | "after", unix ms)


def _unix_ms_param(name: str, raw: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise InvalidQuery(f"Invalid {name} value: must be a unix timestamp in milliseconds")
    return int(raw)


def parse_page_query(query: dict[str, str]) -> PageRequest:
    """Validate `limit`, `after` and `before` the way the API does."""
    raw_limit = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not _DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= PAGE_LIMIT:
            raise InvalidQuery(f"Invalid limit: must be an integer between 1 and {PAGE_LIMIT}")
        limit = int(raw_limit)
    if "after" in query and "before" in query:
        raise InvalidQuery("Only one of after or before may be specified")
    after = _unix_ms_param("after", query["after"]) if "after" in query else None
    before = _unix_ms_param("before", query["before"]) if "before" in query else None
    return PageRequest(limit=limit, after=after, before=before)


class PlayHistory:
    """Every play ever added, kept sorted; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Sorted oldest first by (unix ms, insertion order); ties keep the later-added play as newer.
        self._keys: list[tuple[int, int]] = []
        self._items: list[dict[str, Any]] = []
        self._added = 0

    def add(self, track: dict[str, Any], played_at: datetime, context: dict[str, Any] | None) -> dict[str, Any]:
        """Store a play and return it as the API item (a copy the caller may modify)."""
        unix_ms = to_unix_ms(played_at)
        item = {
            "track": copy.deepcopy(track),
            "played_at": format_played_at(unix_ms),
            "context": copy.deepcopy(context),
        }
        with self._lock:
            key = (unix_ms, self._added)
            self._added += 1
            index = bisect.bisect(self._keys, key)
            self._keys.insert(index, key)
            self._items.insert(index, item)
        return copy.deepcopy(item)

    def all_newest_first(self) -> list[dict[str, Any]]:
        """Every stored play, including those that fell out of the visible window."""
        with self._lock:
            return copy.deepcopy(self._items[::-1])

    def page(self, request: PageRequest) -> Page:
        """The page Spotify would return for `request`."""
        with self._lock:
            visible = list(zip(self._keys[-VISIBLE_WINDOW:], self._items[-VISIBLE_WINDOW:], strict=True))
        # `visible` is oldest first here; cursors compare on milliseconds only, like Spotify's.
        if request.after is not None:
            newer = [entry for entry in visible if entry[0][0] > request.after]
            chosen = newer[: request.limit]
            direction = "after"
        else:
            older = visible if request.before is None else [e for e in visible if e[0][0] < request.before]
            chosen = older[-request.limit :]
            direction = "before"
        if not chosen:
            return Page(items=[], newest_ms=None, oldest_ms=None, next_cursor=None)
        oldest_ms, newest_ms = chosen[0][0][0], chosen[-1][0][0]
        if direction == "after":
            remaining = any(entry[0][0] > newest_ms for entry in visible)
            next_cursor = ("after", newest_ms) if remaining else None
        else:
            remaining = any(entry[0][0] < oldest_ms for entry in visible)
            next_cursor = ("before", oldest_ms) if remaining else None
        return Page(
            items=copy.deepcopy([item for _, item in reversed(chosen)]),
            newest_ms=newest_ms,
            oldest_ms=oldest_ms,
            next_cursor=next_cursor,
        )
