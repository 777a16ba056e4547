"""dlt source for a Spotify user's recently played tracks.

Spotify's `GET /me/player/recently-played` only ever shows the **50 most recent plays**: a play that scrolls
out of that window before the next run is gone from the API for good. Run the pipeline often enough (hourly by
default) for your listening, and backfill older history from Spotify's data export.

Each play lands as one row of `raw.recently_played`: the API's `track` and `context` objects kept whole as
jsonb (flattening is dbt's job), plus `user_id` and `played_at`. Rows are merged on (`user_id`, `played_at`),
so reruns and overlapping windows never duplicate a play.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
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


@dlt.source(name="spotify", max_table_nesting=0)
def spotify_source(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    refresh_token: str = dlt.secrets.value,
    api_url: str = settings.DEFAULT_API_URL,
    accounts_url: str = settings.DEFAULT_ACCOUNTS_URL,
    on_refresh_token_rotated: Callable[[str], None] | None = None,
) -> DltResource:
    """The Spotify source: one resource, `recently_played`.

    Args:
        client_id: Spotify app client id (`sources.spotify.client_id` in `.dlt/secrets.toml`).
        client_secret: Spotify app client secret.
        refresh_token: The user's refresh token, from `python -m pipelines auth`.
        api_url: Web API base URL.
        accounts_url: Accounts service base URL (token endpoint `/api/token`).
        on_refresh_token_rotated: Persists a refresh token that Spotify rotates during the run.

    Returns:
        The `recently_played` resource, bound to an authenticated client.
    """
    client = SpotifyClient(
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        api_url=api_url,
        accounts_url=accounts_url,
        on_refresh_token_rotated=on_refresh_token_rotated,
    )
    return recently_played(client)


@dlt.resource(
    name="recently_played",
    primary_key=("user_id", "played_at"),
    write_disposition="merge",
    columns=RECENTLY_PLAYED_COLUMNS,
)
def recently_played(
    client: SpotifyClient,
    played_at: dlt.sources.incremental[datetime] = dlt.sources.incremental("played_at", initial_value=None),  # noqa: B008 (dlt idiom)
) -> Iterator[list[dict[str, Any]]]:
    """Plays newer than the last loaded `played_at`, one page (at most 50 plays) at a time.

    The cursor lives in dlt state (stored in the destination too), so a fresh worker resumes where the last
    run stopped. Spotify's `after` cursor is exclusive; dlt's primary-key dedup guards the boundary anyway.

    Args:
        client: An authenticated Spotify client.
        played_at: dlt's incremental cursor on `played_at`.

    Yields:
        Lists of rows: `user_id`, `played_at` (aware datetime), `track` and `context` as the API sent them.
    """
    user_id = client.current_user_id()
    after = ensure_pendulum_datetime(played_at.last_value) if played_at.last_value is not None else None
    log.info("reading plays of user %s after %s", user_id, after.isoformat() if after else "the beginning")
    for items in client.recently_played_pages(after):
        yield [_to_row(user_id, item) for item in items if _is_play(item)]


def _is_play(item: Any) -> bool:
    usable = isinstance(item, dict) and isinstance(item.get("track"), dict) and isinstance(item.get("played_at"), str)
    if not usable:
        log.warning("skipping a recently-played item without a track or played_at")
    return usable


def _to_row(user_id: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "played_at": parse_played_at(item["played_at"]),
        "track": item["track"],
        "context": item.get("context"),
    }
