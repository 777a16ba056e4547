"""A Spotify-compatible server on loopback, and sample data, for tests and the demo (no internet needed)."""

from pipelines.sample_server.accounts import REFRESH_OMITS, REFRESH_REPEATS, REFRESH_ROTATES
from pipelines.sample_server.catalog import (
    album_context,
    artist_context,
    make_album,
    make_artist,
    make_context,
    make_local_track,
    make_track,
    spotify_id,
)
from pipelines.sample_server.clock import ManualClock
from pipelines.sample_server.demo_data import demo_history, edge_case_tracks
from pipelines.sample_server.listeners import Listener
from pipelines.sample_server.recording import NEXT_LOOPS, NEXT_ON_EMPTY, NEXT_REPEATS, RecordedRequest
from pipelines.sample_server.server import QUOTA_EXCEEDED, SampleSpotifyServer

__all__ = [
    "NEXT_LOOPS",
    "NEXT_ON_EMPTY",
    "NEXT_REPEATS",
    "QUOTA_EXCEEDED",
    "REFRESH_OMITS",
    "REFRESH_REPEATS",
    "REFRESH_ROTATES",
    "Listener",
    "ManualClock",
    "RecordedRequest",
    "SampleSpotifyServer",
    "album_context",
    "artist_context",
    "demo_history",
    "edge_case_tracks",
    "make_album",
    "make_artist",
    "make_context",
    "make_local_track",
    "make_track",
    "spotify_id",
]
