"""Sample Spotify objects (tracks, artists, contexts) shaped exactly like the Web API returns them.

Everything here is deterministic: ids are derived from names, so fixtures built in different
processes or test runs agree with each other. URLs point at the real Spotify hosts because that
is what the API embeds in its objects, whichever server the objects are served from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_plus

API_BASE = "https://api.spotify.com/v1"
OPEN_BASE = "https://open.spotify.com"
IMAGE_BASE = "https://i.scdn.co/image/"

# A short stand-in for the ~180 markets Spotify lists when a request carries no `market`.
SAMPLE_MARKETS = ["DE", "GB", "IS", "JP", "SE", "US"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RELEASE_PRECISIONS = {
    r"\d{4}": "year",
    r"\d{4}-\d{2}": "month",
    r"\d{4}-\d{2}-\d{2}": "day",
}
CONTEXT_TYPES = ("playlist", "album", "artist")


def spotify_id(*parts: str) -> str:
    """A stable 22-character base62 id (the Spotify id alphabet and length) derived from `parts`."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(22):
        number, index = divmod(number, 62)
        chars.append(_BASE62[index])
    return "".join(chars)


def release_date_precision(release_date: str) -> str:
    """Spotify's precision label for a release date: "1997" -> year, "2001-05" -> month, "2016-04-08" -> day."""
    for pattern, precision in _RELEASE_PRECISIONS.items():
        if re.fullmatch(pattern, release_date):
            return precision
    raise ValueError(f"release_date must look like YYYY, YYYY-MM or YYYY-MM-DD, got {release_date!r}")


def make_artist(name: str) -> dict[str, Any]:
    """A simplified artist object, as embedded in tracks and albums."""
    artist_id = spotify_id("artist", name)
    return {
        "external_urls": {"spotify": f"{OPEN_BASE}/artist/{artist_id}"},
        "href": f"{API_BASE}/artists/{artist_id}",
        "id": artist_id,
        "name": name,
        "type": "artist",
        "uri": f"spotify:artist:{artist_id}",
    }


def _images(album_id: str) -> list[dict[str, Any]]:
    # Spotify lists cover art largest first; each file name is a size-specific prefix plus 24 hex chars.
    stem = hashlib.sha256(album_id.encode("ascii")).hexdigest()[:24]
    return [
        {"height": size, "url": f"{IMAGE_BASE}{prefix}{stem}", "width": size}
        for size, prefix in ((640, "ab67616d0000b273"), (300, "ab67616d00001e02"), (64, "ab67616d00004851"))
    ]


def make_album(
    name: str,
    artists: Sequence[str],
    *,
    album_type: str = "album",
    release_date: str = "2020-01-01",
    total_tracks: int = 10,
) -> dict[str, Any]:
    """A simplified album object, as embedded in a track."""
    if album_type not in ("album", "single", "compilation"):
        raise ValueError(f"album_type must be album, single or compilation, got {album_type!r}")
    album_id = spotify_id("album", name, *artists)
    return {
        "album_type": album_type,
        "artists": [make_artist(artist) for artist in artists],
        "available_markets": list(SAMPLE_MARKETS),
        "external_urls": {"spotify": f"{OPEN_BASE}/album/{album_id}"},
        "href": f"{API_BASE}/albums/{album_id}",
        "id": album_id,
        "images": _images(album_id),
        "name": name,
        "release_date": release_date,
        "release_date_precision": release_date_precision(release_date),
        "total_tracks": total_tracks,
        "type": "album",
        "uri": f"spotify:album:{album_id}",
    }


def _isrc(track_id: str, release_date: str) -> str:
    # ISRC layout: country (2 letters), registrant (3 alphanumerics), year (2 digits), serial (5 digits).
    serial = int(hashlib.sha256(track_id.encode("ascii")).hexdigest()[:8], 16) % 100_000
    return f"QZ{track_id[:3].upper()}{release_date[2:4]}{serial:05d}"


def make_track(
    name: str,
    artist_names: str | Sequence[str] = "Sample Artist",
    *,
    album_name: str | None = None,
    album_type: str = "album",
    album_artists: Sequence[str] | None = None,
    release_date: str = "2020-01-01",
    total_tracks: int = 10,
    track_number: int = 1,
    disc_number: int = 1,
    duration_ms: int = 210_000,
    explicit: bool = False,
    popularity: int = 50,
    preview_url: str | None = None,
    isrc: str | None = None,
) -> dict[str, Any]:
    """A full track object. Its id depends only on the name, the artists and the album name.

    `album_name` defaults to the track name (a single's usual naming); `album_artists` default to the
    first credited artist. `preview_url` defaults to null, as Spotify returns for most apps since
    previews were withdrawn from the Web API.
    """
    artists = [artist_names] if isinstance(artist_names, str) else list(artist_names)
    if not artists:
        raise ValueError("a Spotify track credits at least one artist")
    album_name = name if album_name is None else album_name
    album_object = make_album(
        album_name,
        list(album_artists) if album_artists is not None else artists[:1],
        album_type=album_type,
        release_date=release_date,
        total_tracks=total_tracks,
    )
    track_id = spotify_id("track", name, album_name, *artists)
    return {
        "album": album_object,
        "artists": [make_artist(artist) for artist in artists],
        "available_markets": list(SAMPLE_MARKETS),
        "disc_number": disc_number,
        "duration_ms": duration_ms,
        "explicit": explicit,
        "external_ids": {"isrc": isrc or _isrc(track_id, release_date)},
        "external_urls": {"spotify": f"{OPEN_BASE}/track/{track_id}"},
        "href": f"{API_BASE}/tracks/{track_id}",
        "id": track_id,
        "is_local": False,
        "name": name,
        "popularity": popularity,
        "preview_url": preview_url,
        "track_number": track_number,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
    }


def local_track_uri(artist_name: str, album_name: str, title: str, duration_ms: int) -> str:
    """The URI Spotify gives a local file: form-encoded fields (spaces as +) and the length in whole seconds."""
    fields = (quote_plus(part, safe="") for part in (artist_name, album_name, title))
    return f"spotify:local:{':'.join(fields)}:{duration_ms // 1000}"


def make_local_track(artist_name: str, album_name: str, title: str, duration_ms: int) -> dict[str, Any]:
    """A local file played through Spotify: no ids, no catalogue metadata, only what the file tags said."""
    return {
        "album": {
            "album_type": None,
            "artists": [],
            "available_markets": [],
            "external_urls": {},
            "href": None,
            "id": None,
            "images": [],
            "name": album_name,
            "release_date": None,
            "release_date_precision": None,
            "type": "album",
            "uri": None,
        },
        "artists": [
            {
                "external_urls": {},
                "href": None,
                "id": None,
                "name": artist_name,
                "type": "artist",
                "uri": None,
            }
        ],
        "available_markets": [],
        "disc_number": 0,
        "duration_ms": duration_ms,
        "explicit": False,
        "external_urls": {},
        "href": None,
        "id": None,
        "is_local": True,
        "name": title,
        "popularity": 0,
        "preview_url": None,
        "track_number": 0,
        "type": "track",
        "uri": local_track_uri(artist_name, album_name, title, duration_ms),
    }


def make_context(context_type: str, name: str) -> dict[str, Any]:
    """The `context` of a play: the playlist, album or artist it was played from."""
    if context_type not in CONTEXT_TYPES:
        raise ValueError(f"context type must be one of {CONTEXT_TYPES}, got {context_type!r}")
    context_id = spotify_id(context_type, name)
    return {
        "type": context_type,
        "href": f"{API_BASE}/{context_type}s/{context_id}",
        "external_urls": {"spotify": f"{OPEN_BASE}/{context_type}/{context_id}"},
        "uri": f"spotify:{context_type}:{context_id}",
    }


def album_context(track: dict[str, Any]) -> dict[str, Any] | None:
    """The context of a play started from the track's own album page (None for local files)."""
    album = track["album"]
    if album.get("id") is None:
        return None
    return {
        "type": "album",
        "href": album["href"],
        "external_urls": dict(album["external_urls"]),
        "uri": album["uri"],
    }


def artist_context(track: dict[str, Any]) -> dict[str, Any] | None:
    """The context of a play started from the page of the track's first artist (None for local files)."""
    artist = track["artists"][0]
    if artist.get("id") is None:
        return None
    return {
        "type": "artist",
        "href": artist["href"],
        "external_urls": dict(artist["external_urls"]),
        "uri": artist["uri"],
    }
