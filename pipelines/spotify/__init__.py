"""dlt source for a Spotify user's recently played tracks.

Spotify's `GET /me/player/recently-played` only ever shows the **50 most recent plays**: a play that scrolls
out of that window before the next run is gone from the API for good. Run the pipeline often enough (hourly by
default) for your listening, and backfill older history from Spotify's data export.

Each play lands as one row of `raw.recently_played`: the API's `track` and `context` objects kept whole as
jsonb (flattening is dbt's job), plus `user_id` and `played_at`. Rows are merged on (`user_id`, `played_at`),
so reruns and overlapping windows never duplicate a play.

Paging is bounded: what Spotify puts in `next` after an `after` query is undocumented, so a run reads at most
`settings.MAX_PAGES` pages and stops early, with one warning, at an empty page that still links on or at a `next`
that repeats a page, points backwards or stands still. What it read is loaded; the next run resumes after it.

Gap detection: when a run that asked for plays `after` the stored cursor receives a full window (50 plays, all
newer than the cursor), plays between the cursor and the oldest play received may have scrolled out of reach.
The run records that span in `raw.gaps` (`user_id`, `gap_from`, `gap_to`, `detected_at`) and warns; the data
export (`python -m pipelines import-history`) fills it, and dbt's `coverage` model shows it as filled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.time import ensure_pendulum_datetime
from dlt.sources import DltResource

from pipelines.spotify import settings
from pipelines.spotify.helpers import SpotifyClient, parse_played_at

log = logging.getLogger(__name__)

# Declared up front: a column that has only seen nulls (context) would otherwise never be created.
RECENTLY_PLAYED_COLUMNS: dict[str, dict[str, Any]] = {
    "user_id": {"data_type": "text", "nullable": False},
    "played_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "track": {"data_type": "json", "nullable": False},
    "context": {"data_type": "json", "nullable": True},
}

GAP_COLUMNS: dict[str, dict[str, Any]] = {
    "user_id": {"data_type": "text", "nullable": False},
    "gap_from": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "gap_to": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "detected_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
}


@dataclass
class ReadWindow:
    """What one run asked Spotify for and received: `recently_played` fills it, `gaps` judges it."""

    user_id: str = ""
    after: datetime | None = None  # the stored cursor; None on the first run ever
    received: int = 0  # items Spotify sent
    oldest: datetime | None = None  # the oldest play among them
    gap_reported: bool = False


@dlt.source(name="spotify", max_table_nesting=0)
def spotify_source(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    refresh_token: str = dlt.secrets.value,
    api_url: str = settings.DEFAULT_API_URL,
    accounts_url: str = settings.DEFAULT_ACCOUNTS_URL,
    on_refresh_token_rotated: Callable[[str], None] | None = None,
) -> list[DltResource]:
    """The Spotify source: `recently_played`, and `gaps`, which watches what `recently_played` reads.

    Args:
        client_id: Spotify app client id (`sources.spotify.client_id` in `.dlt/secrets.toml`).
        client_secret: Spotify app client secret.
        refresh_token: The user's refresh token, from `python -m pipelines auth`.
        api_url: Web API base URL.
        accounts_url: Accounts service base URL (token endpoint `/api/token`).
        on_refresh_token_rotated: Persists a refresh token that Spotify rotates during the run.

    Returns:
        The `recently_played` resource, bound to an authenticated client, and the `gaps` transformer fed by it.
    """
    client = SpotifyClient(
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        api_url=api_url,
        accounts_url=accounts_url,
        on_refresh_token_rotated=on_refresh_token_rotated,
    )
    window = ReadWindow()
    played = recently_played(client, window)
    return [played, played | gaps(window)]


@dlt.resource(
    name="recently_played",
    primary_key=("user_id", "played_at"),
    write_disposition="merge",
    columns=RECENTLY_PLAYED_COLUMNS,
)
def recently_played(
    client: SpotifyClient,
    window: ReadWindow | None = None,
    played_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("played_at", initial_value=None),  # noqa: B008 (dlt idiom)
) -> Iterator[list[dict[str, Any]]]:
    """Plays newer than the last loaded `played_at`, one page (at most 50 plays) at a time.

    The cursor lives in dlt state (stored in the destination too), so a fresh worker resumes where the last
    run stopped. Spotify's `after` cursor is exclusive; dlt's primary-key dedup guards the boundary anyway.

    Args:
        client: An authenticated Spotify client.
        window: Filled with the cursor and what was received, for `gaps`.
        played_at: dlt's incremental cursor on `played_at`.

    Yields:
        Lists of rows: `user_id`, `played_at` (aware datetime), `track` and `context` as the API sent them.
    """
    user_id = client.current_user_id()
    after = ensure_pendulum_datetime(played_at.last_value) if played_at.last_value is not None else None
    log.info("reading plays of user %s after %s", user_id, after.isoformat() if after else "the beginning")
    window = window if window is not None else ReadWindow()
    window.user_id, window.after = user_id, after
    for items in client.recently_played_pages(after):
        rows = [_to_row(user_id, item) for item in items if _is_play(item)]
        window.received += len(items)
        for row in rows:
            if window.oldest is None or row["played_at"] < window.oldest:
                window.oldest = row["played_at"]
        yield rows


@dlt.transformer(name="gaps", primary_key=("user_id", "gap_from"), write_disposition="merge", columns=GAP_COLUMNS)
def gaps(pages: list[dict[str, Any]], window: ReadWindow) -> Iterator[dict[str, Any]]:
    """A span whose plays may be lost, once per run, when the run after a cursor received a full window.

    Spotify shows at most 50 plays: when all 50 are newer than the cursor, plays between the cursor and the
    oldest of them may have scrolled out of reach. The first run ever has no cursor, so nothing before it
    counts as lost. Merged on (user_id, gap_from): a run retried from the same cursor updates its gap.

    Args:
        pages: The pages `recently_played` yields (only their arrival matters; `window` holds the counts).
        window: What the run asked for and received so far.

    Yields:
        At most one row: `user_id`, `gap_from` (the cursor), `gap_to` (the oldest play received), `detected_at`.
    """
    del pages
    full = window.received >= settings.VISIBLE_WINDOW
    if window.gap_reported or window.after is None or window.oldest is None or not full:
        return
    if window.oldest <= window.after:
        return
    window.gap_reported = True
    log.warning(
        "gap: Spotify showed a full window of %d plays after the last stored play (%s), so plays between "
        "then and %s may be lost. Fill it from your Spotify data export: "
        "python -m pipelines import-history PATH/TO/my_spotify_data.zip",
        window.received,
        window.after.isoformat(),
        window.oldest.isoformat(),
    )
    yield {
        "user_id": window.user_id,
        "gap_from": window.after,
        "gap_to": window.oldest,
        "detected_at": datetime.now(UTC),
    }


def _is_play(item: Any) -> bool:
    usable = isinstance(item, dict) and isinstance(item.get("track"), dict) and _is_timestamp(item.get("played_at"))
    if not usable:
        # Counted, so the run reports it: an item the pipeline cannot store must never vanish silently.
        metrics = dlt.current.resource_metrics()
        metrics[settings.REJECTED_ITEMS_METRIC] = metrics.get(settings.REJECTED_ITEMS_METRIC, 0) + 1
        log.warning("skipping a recently-played item without a track or a valid played_at")
    return usable


def _is_timestamp(value: Any) -> bool:
    # An unparsable played_at would otherwise fail every run for as long as the item stays visible.
    try:
        parse_played_at(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _to_row(user_id: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "played_at": parse_played_at(item["played_at"]),
        "track": item["track"],
        "context": item.get("context"),
    }
