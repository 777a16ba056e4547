"""The sample server's notion of "now" for refresh-token expiry, injectable so tests need not wait 6 months."""

from __future__ import annotations

import calendar
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)


def require_aware(moment: datetime, what: str) -> datetime:
    """`moment` itself, or a ValueError if it has no timezone (naive times cannot be compared with UTC ones)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return moment


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months later; a day the month lacks becomes its last day."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class ManualClock:
    """A clock that stands still until a test moves it: `clock = ManualClock(start); clock.advance(days=183)`."""

    def __init__(self, now: datetime) -> None:
        self._lock = threading.Lock()
        self._now = require_aware(now, "the clock's time")

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        """Jump to `now` (backwards too)."""
        with self._lock:
            self._now = require_aware(now, "the clock's time")

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword parts (days=..., hours=...); returns the new now."""
        step = (delta or timedelta()) + timedelta(**parts)
        with self._lock:
            self._now += step
            return self._now
