"""The play history behind `GET /v1/me/player/recently-played`, with Spotify's paging rules.

Spotify only ever shows the 50 most recent plays, newest first; `before`/`after` are exclusive
unix-millisecond cursors. Paging with `after` returns the *oldest* plays past the cursor, so a
client stepping forward page by page never skips one.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipelines.spotify.settings import PAGE_LIMIT, VISIBLE_WINDOW

DEFAULT_LIMIT = 20
# msgspec: the same JSON as the json module for API objects, several times faster (1M plays for a benchmark).
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
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
    """Every play of one listener ever added, kept sorted; thread-safe.

    Plays are stored as JSON (UTF-8 bytes), so what a caller does to its dicts afterwards changes nothing
    here and reads hand out fresh objects. The JSON of a track or context is shared between plays: a
    listener with 10,000 plays of a few hundred tracks keeps a few hundred copies, not 10,000.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Sorted oldest first: (unix ms, insertion order, track JSON, context JSON). Ties keep the later-added
        # play as newer; the insertion order is unique, so sorting never compares the JSON.
        self._entries: list[tuple[int, int, bytes, bytes]] = []
        self._added = 0
        self._shared: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def add(self, track: dict[str, Any], played_at: datetime, context: dict[str, Any] | None) -> dict[str, Any]:
        """Store a play and return it as the API item (a copy the caller may modify)."""
        return _item(self._store([(track, played_at, context)])[0])

    def add_many(self, plays: Iterable[tuple[dict[str, Any], datetime, dict[str, Any] | None]]) -> int:
        """Store plays (all of them or, if one is invalid, none); returns how many."""
        return len(self._store(plays))

    def _store(
        self, plays: Iterable[tuple[dict[str, Any], datetime, dict[str, Any] | None]]
    ) -> list[tuple[int, int, bytes, bytes]]:
        # The same dict object is serialised once per call; holding it in `seen` keeps its id() from being reused.
        seen: dict[int, tuple[object, bytes]] = {}

        def encoded(value: dict[str, Any] | None) -> bytes:
            cached = seen.get(id(value))
            if cached is None:
                text = _ENCODER.encode(value)
                cached = seen[id(value)] = (value, self._shared.setdefault(text, text))
            return cached[1]

        staged = [(to_unix_ms(played_at), encoded(track), encoded(context)) for track, played_at, context in plays]
        with self._lock:
            first = self._added
            self._added += len(staged)
            entries = [(ms, first + n, track, context) for n, (ms, track, context) in enumerate(staged)]
            fresh = sorted(entries)
            if len(fresh) == 1:
                bisect.insort(self._entries, fresh[0])
            elif fresh and self._entries and fresh[0] < self._entries[-1]:
                # Both runs are sorted already: Timsort merges them in one pass.
                self._entries = sorted(self._entries + fresh)
            else:
                self._entries.extend(fresh)
        return entries

    def all_newest_first(self) -> list[dict[str, Any]]:
        """Every stored play, including those that fell out of the visible window."""
        with self._lock:
            entries = self._entries[::-1]
        return [_item(entry) for entry in entries]

    def page(self, request: PageRequest) -> Page:
        """The page Spotify would return for `request`; reads only the visible window, whatever is stored."""
        with self._lock:
            visible = self._entries[-VISIBLE_WINDOW:]
        # `visible` is oldest first here; cursors compare on milliseconds only, like Spotify's.
        if request.after is not None:
            newer = [entry for entry in visible if entry[0] > request.after]
            chosen = newer[: request.limit]
            direction = "after"
        else:
            older = visible if request.before is None else [e for e in visible if e[0] < request.before]
            chosen = older[-request.limit :]
            direction = "before"
        if not chosen:
            return Page(items=[], newest_ms=None, oldest_ms=None, next_cursor=None)
        oldest_ms, newest_ms = chosen[0][0], chosen[-1][0]
        if direction == "after":
            remaining = any(entry[0] > newest_ms for entry in visible)
            next_cursor = ("after", newest_ms) if remaining else None
        else:
            remaining = any(entry[0] < oldest_ms for entry in visible)
            next_cursor = ("before", oldest_ms) if remaining else None
        return Page(
            items=[_item(entry) for entry in reversed(chosen)],
            newest_ms=newest_ms,
            oldest_ms=oldest_ms,
            next_cursor=next_cursor,
        )


def _item(entry: tuple[int, int, bytes, bytes]) -> dict[str, Any]:
    """The API item of a stored play, as new objects."""
    unix_ms, _, track, context = entry
    return {
        "track": _DECODER.decode(track),
        "played_at": format_played_at(unix_ms),
        "context": _DECODER.decode(context),
    }
