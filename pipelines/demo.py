"""Demo mode: the bundled Spotify-compatible sample server stands in for Spotify when no credentials exist."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pipelines.load import CREDENTIAL_ENV

log = logging.getLogger(__name__)

DEMO_CLIENT_ID = "demo-client"
DEMO_USER_ID = "demo-listener"
BANNER = (
    "DEMO DATA: no Spotify credentials are configured, so this run reads a generated listening history from "
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


@contextmanager
def sample_spotify(plays: int = 120) -> Iterator[None]:
    """Serve a generated history on loopback and point the `SPOTIFY_*` settings at it while inside."""
    import secrets

    from pipelines.sample_server import SampleSpotifyServer, demo_history

    client_secret, refresh_token = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    server = SampleSpotifyServer(
        client_id=DEMO_CLIENT_ID, client_secret=client_secret, refresh_token=refresh_token, user_id=DEMO_USER_ID
    )
    server.add_plays(demo_history(datetime.now(UTC), count=plays))
    with server:
        yield from _pointed_at(server, client_secret, refresh_token)


def _pointed_at(server: Any, client_secret: str, refresh_token: str) -> Iterator[None]:
    overrides = {
        "SPOTIFY_CLIENT_ID": DEMO_CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": client_secret,
        "SPOTIFY_REFRESH_TOKEN": refresh_token,
        "SPOTIFY_API_URL": server.api_url,
        "SPOTIFY_ACCOUNTS_URL": server.accounts_url,
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
