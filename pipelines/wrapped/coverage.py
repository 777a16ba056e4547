"""`python -m pipelines coverage`: per listener, which stretches of time the stored history covers, and its gaps.

Read from `analytics.coverage` as the last transform built it (one read-only transaction): per content type,
ranges covered by API loads, by imported exports, by both or by nothing, and the gaps the loads detected, `open`
until an imported export covers them, then `filled`. One block per account (a single-listener setup, or a role
that may not read the accounts: one per Spotify user in the mart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg2
from psycopg2 import errors as pg_errors

from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.spotify.accounts import readable_accounts, resolve_account

# Music first: the API loads tracks only, the export everything.
_SPANS = """
    select
        user_id,
        content_type,
        covered_from,
        covered_to,
        covered_by,
        gap_status
    from analytics.coverage
    where %(every_user)s or user_id = any(%(users)s)
    order by
        user_id,
        array_position(array['track', 'episode', 'audiobook', 'video'], content_type),
        content_type,
        covered_from
"""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
HEADER = ("content", "from (UTC)", "to (UTC)", "length", "covered by", "gap")


@dataclass(frozen=True)
class Span:
    """One row of `analytics.coverage`: a stretch of one content type and what covers it."""

    content_type: str
    covered_from: datetime
    covered_to: datetime
    covered_by: str  # api, export, api and export, none
    gap_status: str | None  # open, filled, or None outside detected gaps


@dataclass(frozen=True)
class ListenerCoverage:
    """What one listener's block shows: an account (or a Spotify user without one) and its spans."""

    account: str | None
    user_id: str | None
    spans: list[Span] = field(default_factory=list)

    @property
    def open_gaps(self) -> list[Span]:
        return [span for span in self.spans if span.gap_status == "open"]


def coverage(database: DatabaseUrl, account: str | None = None) -> list[ListenerCoverage]:
    """Every account's coverage (`account`: that one only), then the mart's Spotify users that are no account's.

    Raises:
        ConfigError: an unknown `account`, one whose Spotify user is unknown, or a role that may not read the mart.
        PipelineError: `analytics.coverage` is not built yet.
    """
    chosen = resolve_account(database, account) if account is not None else None
    accounts = [chosen] if chosen is not None else readable_accounts(database) or []
    users = [listener.user_id for listener in accounts if listener.user_id]
    spans = _spans(database, users if chosen is not None else None)
    found = [
        ListenerCoverage(listener.name, listener.user_id, spans.pop(listener.user_id, []) if listener.user_id else [])
        for listener in accounts
    ]
    return found + [ListenerCoverage(None, user_id, user_spans) for user_id, user_spans in spans.items()]


def _spans(database: DatabaseUrl, users: Sequence[str] | None) -> dict[str, list[Span]]:
    """The mart's rows by user, oldest first per content type (`users`: only theirs; None: everyone's)."""
    conn = database.connect()
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            cur.execute(_SPANS, {"every_user": users is None, "users": list(users or [])})
            rows = cur.fetchall()
    except pg_errors.UndefinedTable:
        raise PipelineError(
            "analytics.coverage is not built yet: load plays or import an export, then run "
            "`python -m pipelines transform`"
        ) from None
    except pg_errors.InsufficientPrivilege as exc:
        raise ConfigError(
            f"{exc.diag.message_primary} as {database.user}: coverage needs SELECT on schema analytics"
        ) from None
    except psycopg2.Error as exc:
        raise PipelineError(f"reading analytics.coverage failed: {exc.diag.message_primary or exc}") from None
    finally:
        conn.close()
    by_user: dict[str, list[Span]] = {}
    for user_id, *span in rows:
        by_user.setdefault(user_id, []).append(Span(*span))
    return by_user


def render(listeners: Sequence[ListenerCoverage]) -> list[str]:
    """The lines `coverage` prints: per listener, a title, an aligned table of its spans, then its open gaps."""
    if not listeners:
        return [
            "no coverage yet: load plays (`python -m pipelines load`) or import an export "
            "(`python -m pipelines import-history`), then run `python -m pipelines transform`"
        ]
    lines: list[str] = []
    for listener in listeners:
        if lines:
            lines.append("")
        lines += _block(listener)
    return lines


def _block(listener: ListenerCoverage) -> list[str]:
    if listener.account is None:
        title = f"Spotify user {listener.user_id} (no account)"
    else:
        title = f"account {listener.account} (Spotify user {listener.user_id or 'not known yet'})"
    if listener.user_id is None:
        return [title, "  nothing to show until a load has run: `python -m pipelines load`"]
    if not listener.spans:
        return [title, "  nothing covered yet: load or import its plays, then run `python -m pipelines transform`"]
    rows = [HEADER] + [
        (
            span.content_type,
            _moment(span.covered_from),
            _moment(span.covered_to),
            _length(span.covered_to - span.covered_from),
            span.covered_by,
            span.gap_status or "",
        )
        for span in listener.spans
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
    lines = [title]
    lines += [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    gaps = listener.open_gaps
    if not gaps:
        lines.append("  open gaps: none")
        return lines
    account = f" --account {listener.account}" if listener.account else ""
    lines.append(
        f"  open gaps: {len(gaps)}, plays in them may be lost: import your Spotify data export to fill them "
        f"(`python -m pipelines import-history{account} PATH`, then `transform`)"
    )
    lines += [
        f"    {gap.content_type} {_moment(gap.covered_from)} to {_moment(gap.covered_to)} UTC "
        f"({_length(gap.covered_to - gap.covered_from)})"
        for gap in gaps
    ]
    return lines


def _moment(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):{TIME_FORMAT}}"


def _length(length: timedelta) -> str:
    """A duration in words at a readable precision: `45 s`, `12 min`, `2 h 31 min`, `3 d 4 h`."""
    seconds = int(length.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"
