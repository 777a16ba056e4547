"""Fixed sample data: tracks that exercise awkward corners of the API, and a plausible listening history.

`edge_case_tracks()` feeds tests that check the pipeline survives what Spotify really sends;
`demo_history()` feeds the demo so the dbt models have repeats, sessions and mixed contexts to work on.
"""

from __future__ import annotations

import copy
import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.sample_server.catalog import (
    album_context,
    artist_context,
    make_context,
    make_local_track,
    make_track,
)

Play = tuple[dict[str, Any], datetime, dict[str, Any] | None]

# (artist, album, album_type, release_date, track names) for ordinary catalogue tracks.
_ALBUMS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("Aurora Fields", "Northern Static", "album", "2018-03-16", ("Glasshouse", "Polar Drift", "Signal Fires")),
    ("The Velvet Tramlines", "Overhead Wires", "album", "2012-10-01", ("Last Stop", "Copper Sky", "Night Shift")),
    ("Mira Okafor", "Saltwater Letters", "album", "2020-06-19", ("Tidal", "Harbour Lights", "Paper Boats")),
    ("Kasimir Lund", "Winter Etudes", "compilation", "2009", ("Etude No. 1", "Etude No. 4", "Etude No. 7")),
    ("Low Tide Motel", "Vacancy", "album", "2015-08-21", ("Neon Sign", "Room 12", "Checkout Time")),
    ("Juniper Vale", "Small Hours", "single", "2023-02-10", ("Small Hours",)),
    ("Static Bloom", "Feedback Loops", "album", "2019-11", ("Loop One", "Hum", "Overdrive", "Coda")),
    ("Paloma Reyes", "Calle Luna", "album", "2017-05-05", ("Luna Llena", "Mañana", "Despacito Lento")),
    ("Hollow Pines", "Cedar & Smoke", "album", "2011-09-30", ("Campfire", "Smoke Signals")),
    ("Nova Lane", "Crosswinds", "album", "2016-04-08", ("Crosswinds", "Gravity Well")),
    ("DJ Kestrel", "Hover", "single", "2022-07-29", ("Hover", "Hover (Extended Mix)")),
    ("The Quiet Hours", "Lanterns", "album", "2014-01-17", ("Lanterns", "Slow Burn")),
)
_PLAYLISTS = ("Morning Commute", "Deep Focus", "Late Night Drives")


def _duration_ms(*parts: str) -> int:
    # Stable lengths between 2:30 and 5:30 so the same track always lasts the same.
    value = int(hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:8], 16)
    return 150_000 + value % 180_000


def catalog_tracks() -> list[dict[str, Any]]:
    """The ordinary catalogue: every track of the sample albums, with stable ids and lengths."""
    tracks = []
    for artist, album, album_type, release_date, names in _ALBUMS:
        for number, name in enumerate(names, start=1):
            tracks.append(
                make_track(
                    name,
                    artist,
                    album_name=album,
                    album_type=album_type,
                    release_date=release_date,
                    total_tracks=len(names) if album_type == "single" else 10,
                    track_number=number,
                    duration_ms=_duration_ms(artist, name),
                    popularity=20 + _duration_ms(name) % 70,
                )
            )
    return tracks


def edge_case_tracks() -> list[dict[str, Any]]:
    """Tracks covering what trips up naive loaders, each one a separate object:

    a track credited to three artists; a local file; a track missing optional fields
    (`popularity`, album `images`, album `release_date_precision`); unicode names (Icelandic,
    Japanese, an emoji); a name with both quote kinds and a backslash; a name with a newline;
    a name over 1,000 characters; release dates with year, month and day precision.
    """
    sketches = {"album_name": "Sketches", "album_type": "single", "release_date": "2001-05", "total_tracks": 2}
    sparse = make_track("Unmastered Sketch", "Hollow Pines", track_number=1, **sketches)
    del sparse["popularity"]
    del sparse["album"]["images"]
    del sparse["album"]["release_date_precision"]
    long_name = ("Symphony of Endless Words, " * 40 + "Part II (Extended)").strip()
    return [
        make_track(
            "Carry the Weight (feat. DJ Kestrel & The Quiet Hours)",
            ["Nova Lane", "DJ Kestrel", "The Quiet Hours"],
            album_name="Crosswinds",
            release_date="2016-04-08",
            track_number=3,
            duration_ms=243_120,
            explicit=True,
            popularity=71,
        ),
        make_local_track("Basement Tapes Collective", "Garage Demos Vol. 1", "Demo #3 (rough mix)", 187_500),
        sparse,
        make_track("Hoppípolla", "Sigur Rós", album_name="Takk...", release_date="2005-09-12", duration_ms=268_000),
        make_track("Jóga", "Björk", album_name="Homogenic", release_date="1997", duration_ms=305_000),
        make_track("夜に駆ける", "YOASOBI", album_name="THE BOOK", release_date="2021-01", duration_ms=261_000),
        make_track("Fire 🔥 Drill", "Nova Lane", album_name="Crosswinds", release_date="2016-04-08", track_number=4),
        make_track(
            'She said "don\'t" \\ then left',
            'Dana "D" O\'Hara',
            album_name="Back\\Slash Sessions",
            release_date="2010-02",
        ),
        make_track("Line One\nLine Two", "Hollow Pines", track_number=2, **sketches),
        make_track(
            long_name,
            "Kasimir Lund",
            album_name="Winter Etudes",
            album_type="compilation",
            release_date="2009",
            track_number=4,
        ),
    ]


def listening_session(rng: random.Random, library: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    """One listening session: a run of tracks from one context (playlist, album, artist or none), in play order."""
    kind = rng.choices(("playlist", "album", "artist", None), weights=(4, 3, 2, 2))[0]
    length = rng.randint(3, 10)
    if kind == "album":
        albums = sorted({track["album"]["name"] for track in library if track["album"].get("id")})
        album = rng.choice(albums)
        tracks = [track for track in library if track["album"]["name"] == album]
        tracks.sort(key=lambda track: track["track_number"])
        start = rng.randrange(len(tracks))
        return [(track, album_context(track)) for track in tracks[start:] + tracks[:start]][:length]
    if kind == "artist":
        artist = rng.choice(sorted({track["artists"][0]["name"] for track in library if not track["is_local"]}))
        tracks = [track for track in library if track["artists"][0]["name"] == artist]
        return [(track, artist_context(track)) for track in rng.choices(tracks, k=min(length, 2 * len(tracks)))]
    if kind == "playlist":
        name = rng.choice(_PLAYLISTS)
        # Each playlist is a fixed slice of the library, so its plays repeat the same tracks.
        members = random.Random(name).sample(library, k=len(library) // 2)
        context = make_context("playlist", name)
        return [(track, context) for track in rng.sample(members, k=min(length, len(members)))]
    return [(track, None) for track in rng.sample(library, k=length)]


def demo_history(now: datetime, count: int = 120, seed: int = 7) -> list[Play]:
    """`count` plays ending a few minutes before `now`, oldest first, as (track, played_at, context).

    Plays come in sessions (a playlist, an album, an artist's page, or no context) separated by
    breaks of half an hour to half a day; within a session each play follows the previous one by
    the track's length (sometimes less: a skip) plus a short pause. The newest session holds every
    edge case from `edge_case_tracks()`. Same `now` and `seed`, same history.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    if count < 0:
        raise ValueError("count must not be negative")
    rng = random.Random(seed)
    edge_cases = edge_case_tracks()
    library = catalog_tracks() + edge_cases
    earlier = max(count - len(edge_cases), 0)
    chronological: list[tuple[dict[str, Any], Any, bool]] = []
    while len(chronological) < earlier:
        session = listening_session(rng, library)
        for index, (track, context) in enumerate(session):
            chronological.append((track, context, index == 0))
    chronological = chronological[len(chronological) - earlier :]
    # The newest session plays every edge case, so they all sit in the 50 plays the API shows.
    for index, track in enumerate(rng.sample(edge_cases, k=len(edge_cases))):
        playlist = make_context("playlist", rng.choice(_PLAYLISTS))
        context = rng.choice((album_context(track), artist_context(track), playlist, None))
        chronological.append((track, context, index == 0))
    chronological = chronological[-count:] if count else []

    # Lay plays out backwards from just before `now`; played_at marks when a play ended.
    end = now.astimezone(UTC)
    end = end.replace(microsecond=end.microsecond // 1000 * 1000)  # the API keeps milliseconds only
    played_at = end - timedelta(milliseconds=rng.randint(60_000, 600_000))
    plays: list[Play] = []
    for track, context, starts_session in reversed(chronological):
        plays.append((copy.deepcopy(track), played_at, copy.deepcopy(context)))
        listened = track["duration_ms"] if rng.random() > 0.15 else rng.randint(31_000, track["duration_ms"])
        pause = rng.randint(1_800_000, 43_200_000) if starts_session else rng.randint(0, 4_000)
        played_at -= timedelta(milliseconds=listened + pause + rng.randint(1, 999))
    plays.reverse()
    return plays
