"""A listening year (2025) small enough to check by hand, loaded and built through the real pipeline.

The plays go through the sample Spotify server, the real dlt loader and a real `dbt build`, once per test
session, into a database that the analyst-facing tests (listening marts, Wrapped, browser) share read-only.
Use it by importing the fixture into a test module: `from tests.listening_year import year_database`.

What the year holds, by construction (reporting time zone UTC):
- Static Bloom and Nova Lane were first played in 2024; Hollow Pines, Kasimir Lund, "Ünïcødé & <Friends>" and
  Late Discovery are new in 2025 (Late Discovery at 23:59 on 31 December); 2026 has two plays that must not count.
- The longest streak is 10-16 March (7 days); the most-replayed day is 4 July ("Say "Hi" <3", 6 times).
"""

from __future__ import annotations

import secrets
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import transform
from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database
from pipelines.load import load_recently_played
from pipelines.sample_server import SampleSpotifyServer, make_context, make_track

YEAR = 2025
ROLE = "spotify_year"

LOOP_ONE = make_track("Loop One", "Static Bloom", album_name="Feedback", duration_ms=200_000)
LOOP_TWO = make_track("Loop Two", "Static Bloom", album_name="Feedback", duration_ms=180_000)
WESTWARD = make_track("Westward", "Hollow Pines", album_name="Crosswinds", duration_ms=240_000)
EMBERS = make_track("Embers", "Hollow Pines", album_name="Crosswinds", duration_ms=150_000)
HARBOUR = make_track("Harbour", "Nova Lane", duration_ms=210_000)
NORTH = make_track("North", "Kasimir Lund", album_name="Fjords", duration_ms=300_000)
# Markup and quotes in names: the page must show them as text.
SAY_HI = make_track('Say "Hi" <3', ["Ünïcødé & <Friends>", "Nova Lane"], album_name="A & B", duration_ms=195_000)
LAST_CALL = make_track("Last Call", "Late Discovery", duration_ms=200_000)


def _at(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def year_plays() -> list[tuple[dict[str, Any], datetime, dict[str, Any] | None]]:
    """Every play of the fixture, oldest first: (track, played_at, context)."""
    plays: list[tuple[dict[str, Any], datetime, dict[str, Any] | None]] = [
        (HARBOUR, _at(2024, 12, 30, 20), None),
        (LOOP_ONE, _at(2024, 12, 31, 23, 50), None),
        (HARBOUR, _at(2025, 1, 1, 0, 10), None),
    ]
    plays += [(EMBERS, _at(YEAR, month, 15, 12), make_context("playlist", "Monthly")) for month in range(1, 13)]
    for day in range(10, 17):  # the streak: 10-16 March, two plays a day
        plays += [(LOOP_ONE, _at(YEAR, 3, day, 8), None), (WESTWARD, _at(YEAR, 3, day, 18, 30), None)]
    plays += [(NORTH, _at(YEAR, 6, day, 21), None) for day in (1, 2, 3)]
    plays += [(SAY_HI, _at(YEAR, 7, 4, 13) + timedelta(minutes=4 * n), None) for n in range(6)]
    plays += [(LOOP_TWO, _at(YEAR, 7, 4, 14), None), (LAST_CALL, _at(YEAR, 12, 31, 23, 59), None)]
    plays += [(NORTH, _at(2026, 1, 1, 0, 5), None), (LAST_CALL, _at(2026, 1, 1, 0, 15), None)]
    return sorted(plays, key=lambda play: play[1])


def _load_and_build(database: DatabaseUrl, workdir: Path) -> None:
    server = SampleSpotifyServer(
        client_id="year-client", client_secret="year-secret", refresh_token="year-refresh", user_id="year-listener"
    )
    plays = year_plays()
    with server:
        # The API shows the last 50 plays only: load in chunks, as an hourly schedule would.
        for start in range(0, len(plays), 40):
            server.add_plays(plays[start : start + 40])
            load_recently_played(
                database,
                pipelines_dir=workdir / "dlt",
                secrets_file=workdir / "secrets.toml",
                client_id="year-client",
                client_secret="year-secret",
                refresh_token=server.current_refresh_token,
                api_url=server.api_url,
                accounts_url=server.accounts_url,
            )
    transform.build(database)


class _Shared:
    """One database for every module that imports the fixture (each import registers its own fixture)."""

    database: DatabaseUrl | None = None
    users = 0


@pytest.fixture(scope="session")
def year_database(postgres_admin: DatabaseUrl) -> Iterator[DatabaseUrl]:
    """The built fixture year; tests must only read it."""
    if _Shared.database is None:
        database = ensure_role_and_database(
            postgres_admin, ROLE, secrets.token_urlsafe(16), f"test_year_{uuid.uuid4().hex[:8]}"
        )
        with tempfile.TemporaryDirectory(prefix="listening-year-") as workdir:
            _load_and_build(database, Path(workdir))
        _Shared.database = database
    _Shared.users += 1
    yield _Shared.database
    _Shared.users -= 1
    if _Shared.users == 0:
        drop_database(postgres_admin, _Shared.database.dbname)
        _Shared.database = None
