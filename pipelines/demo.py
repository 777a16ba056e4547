"""Demo mode: when no Spotify credentials exist, a generated listener stands in for you.

`make run` (the `airflow-run` command) imports a generated year of listening as a Spotify data export
(`demo_year`), then lets the DAG load the newest 50 plays from the bundled Spotify-compatible sample server,
as it would from Spotify. The year is anchored in the database: its first play is the demo listener's oldest
imported play, so every later demo run generates the same year and the same recent plays, and adds nothing.
`load --demo` and `run --demo` read a short history from the sample server only (`sample_spotify`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.database import DatabaseUrl
from pipelines.load import CREDENTIAL_ENV
from pipelines.load.per_account import DEMO_ENV

if TYPE_CHECKING:
    from pipelines.export.importer import ImportSummary
    from pipelines.sample_server.demo_data import Play
    from pipelines.sample_server.demo_year import DemoYear

DEMO_CLIENT_ID = "demo-client"
DEMO_USER_ID = "demo-listener"
BANNER = (
    "DEMO DATA: no Spotify credentials are configured, so this run reads a generated listening history from "
    "the bundled sample server on 127.0.0.1, not from Spotify. Run `python -m pipelines auth` to use your own."
)
YEAR_BANNER = (
    "DEMO DATA: no Spotify credentials are configured, so this run uses a generated listener "
    f"({DEMO_USER_ID}): a year of plays imported as a Spotify data export, then the newest 50 plays read from "
    "the bundled sample server on 127.0.0.1, not from Spotify. Run `python -m pipelines auth` to use your own."
)


def spotify_credentials_configured() -> bool:
    """True when every Spotify credential is set in the environment or in `.dlt/secrets.toml`."""
    import dlt

    for env in CREDENTIAL_ENV:
        key = env.removeprefix("SPOTIFY_").lower()
        if not os.environ.get(env) and not dlt.secrets.get(f"sources.spotify.{key}"):
            return False
    return True


def demo_year_of(database: DatabaseUrl) -> DemoYear:
    """The demo year of this database: the one its first demo run imported, else a year ending now."""
    from pipelines.sample_server.demo_year import YEAR, demo_year

    stored = _demo_export(database)
    return demo_year(stored[1] if stored else datetime.now(UTC) - YEAR)


def import_demo_year(database: DatabaseUrl, year: DemoYear) -> ImportSummary | None:
    """Import the year's export for the demo listener with the project's importer; None if it is stored already.

    Generating the same year again gives the same file, which the importer would skip play by play; checking the
    count first also keeps `raw.export_files` from logging the same file on every run.
    """
    from pipelines.export.importer import import_history
    from pipelines.sample_server.demo_year import write_export

    stored = _demo_export(database)
    if stored and stored[0] == len(year.export_plays):
        return None
    importer_log = logging.getLogger("pipelines.export.importer")
    level = importer_log.level
    importer_log.setLevel(logging.WARNING)  # the caller says what was imported, in words about the demo
    try:
        with tempfile.TemporaryDirectory(prefix="spotify-demo-") as folder:
            export = write_export(year.export_plays, Path(folder) / "my_spotify_data.zip")
            return import_history(database, [export], user_id=DEMO_USER_ID)
    finally:
        importer_log.setLevel(level)


def _demo_export(database: DatabaseUrl) -> tuple[int, datetime] | None:
    """(plays, first play) of the demo listener's imported export; None before the first import."""
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass('raw.export_extended_plays') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute("select count(*), min(ts) from raw.export_extended_plays where user_id = %s", (DEMO_USER_ID,))
            count, first = cur.fetchone()
    finally:
        conn.close()
    return (count, first) if count else None


@contextmanager
def sample_spotify(plays: int = 120, *, history: Sequence[Play] | None = None) -> Iterator[None]:
    """Serve a generated history on loopback and point the `SPOTIFY_*` settings at it while inside.

    Args:
        plays: how many plays to generate, ending now (when `history` is not given).
        history: the plays to serve instead, e.g. a `DemoYear`'s recent plays.
    """
    import secrets

    from pipelines.sample_server import SampleSpotifyServer, demo_history

    client_secret, refresh_token = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    server = SampleSpotifyServer(
        client_id=DEMO_CLIENT_ID, client_secret=client_secret, refresh_token=refresh_token, user_id=DEMO_USER_ID
    )
    server.add_plays(history if history is not None else demo_history(datetime.now(UTC), count=plays))
    with server:
        yield from _pointed_at(server, client_secret, refresh_token)


def _pointed_at(server: Any, client_secret: str, refresh_token: str) -> Iterator[None]:
    overrides = {
        "SPOTIFY_CLIENT_ID": DEMO_CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": client_secret,
        "SPOTIFY_REFRESH_TOKEN": refresh_token,
        "SPOTIFY_API_URL": server.api_url,
        "SPOTIFY_ACCOUNTS_URL": server.accounts_url,
        # the throwaway token is loaded as before, never stored as an account (pipelines.load.per_account)
        DEMO_ENV: "1",
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
