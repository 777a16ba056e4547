"""Fixtures for the sample server tests: a running server, a valid access token, plays to page through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from pipelines.sample_server import SampleSpotifyServer, make_track

CLIENT_ID = "sample-client-id"
CLIENT_SECRET = "sample-client-secret-5f4dcc3b"
REFRESH_TOKEN = "sample-refresh-token-7c6a180b"
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RECENTLY_PLAYED = "/v1/me/player/recently-played"
JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
def server() -> Iterator[SampleSpotifyServer]:
    with SampleSpotifyServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN) as running:
        yield running


def refresh(server: SampleSpotifyServer, refresh_token: str = REFRESH_TOKEN, **kwargs: object) -> requests.Response:
    """A refresh_token grant, authenticated with Basic auth unless `auth` is overridden."""
    kwargs.setdefault("auth", (CLIENT_ID, CLIENT_SECRET))
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return requests.post(server.accounts_url + "/api/token", data=data, timeout=5, **kwargs)


@pytest.fixture
def token(server: SampleSpotifyServer) -> str:
    response = refresh(server)
    assert response.status_code == 200
    return response.json()["access_token"]


@pytest.fixture
def recent(server: SampleSpotifyServer, token: str) -> Callable[..., requests.Response]:
    """GET recently-played with the given query parameters (or an absolute URL) and a valid token."""

    def get(url: str | None = None, **params: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(url or server.base_url + RECENTLY_PLAYED, params=params, headers=headers, timeout=5)

    return get


def add_plays(server: SampleSpotifyServer, count: int, start: datetime = START) -> list[int]:
    """`count` plays three minutes apart with odd milliseconds, oldest first; returns their unix ms."""
    moments = []
    for n in range(count):
        played_at = start + timedelta(minutes=3 * n, milliseconds=17 * n + 3)
        server.add_play(make_track(f"Song {n}", f"Artist {n % 5}"), played_at)
        moments.append(unix_ms(played_at))
    return moments


def unix_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def ms_of(items: list[dict]) -> list[int]:
    """The played_at of API items as unix ms."""
    return [unix_ms(datetime.strptime(item["played_at"], "%Y-%m-%dT%H:%M:%S.%f%z")) for item in items]
