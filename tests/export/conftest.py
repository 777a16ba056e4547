"""Export fixtures written by the tests: both formats, as Spotify lays them out (zip, folder, files)."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

USER = "listener-1"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EXTENDED_DIR = "Spotify Extended Streaming History"
ACCOUNT_DIR = "Spotify Account Data"


# Everything a name can hold that JSON, CSV or COPY's text format treat specially.
AWKWARD_TRACK_NAME = 'Ünïcødé "quotes", {braces}, a\ttab, a\r\nline break and \\ back\\slash 🎧'


def extended_play(at: datetime, **fields: Any) -> dict[str, Any]:
    """One extended-history object; `fields` override, a None value stays null, as Spotify writes it."""
    play: dict[str, Any] = {
        "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": "android",
        "ms_played": 200_000,
        "conn_country": "DE",
        "ip_addr": "192.0.2.10",
        "master_metadata_track_name": None,
        "master_metadata_album_artist_name": None,
        "master_metadata_album_album_name": None,
        "spotify_track_uri": None,
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "audiobook_title": None,
        "audiobook_uri": None,
        "audiobook_chapter_uri": None,
        "audiobook_chapter_title": None,
        "reason_start": "trackdone",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": False,
        "offline": False,
        "offline_timestamp": 0,
        "incognito_mode": False,
    }
    play.update(fields)
    return play


def track_play(at: datetime, n: int, **fields: Any) -> dict[str, Any]:
    music = {
        "master_metadata_track_name": f"Song {n}",
        "master_metadata_album_artist_name": f"Artist {n % 3}",
        "master_metadata_album_album_name": f"Album {n % 2}",
        "spotify_track_uri": f"spotify:track:track{n:018d}",
    }
    return extended_play(at, **{**music, **fields})


def sample_extended_plays() -> list[dict[str, Any]]:
    """Music (one under 30 s), an episode, an audiobook chapter, a play without metadata, unicode."""
    minute = timedelta(minutes=4)
    return [
        track_play(T0, 1),
        track_play(T0 + minute, 2, ms_played=12_000, skipped=True, reason_end="fwdbtn"),  # under 30 s
        extended_play(
            T0 + 2 * minute,
            episode_name="Épisode 42: naïve café ☕",
            episode_show_name="Le Podcast",
            spotify_episode_uri="spotify:episode:episode000000000042",
            ms_played=1_800_000,
        ),
        extended_play(
            T0 + 3 * minute,
            audiobook_title="Der Zauberberg",
            audiobook_uri="spotify:audiobook:book00000000000001",
            audiobook_chapter_uri="spotify:chapter:chapter00000000001",
            audiobook_chapter_title="Kapitel 1",
            ms_played=900_000,
        ),
        extended_play(T0 + 4 * minute, ms_played=0),  # null track fields: nothing known about the play
        extended_play(
            T0 + 5 * minute,
            master_metadata_track_name=AWKWARD_TRACK_NAME,
            master_metadata_album_artist_name="Björk",
            master_metadata_album_album_name="Homogenic",
            spotify_track_uri="spotify:track:unicode00000000000001",
            shuffle=True,
        ),
    ]


def sample_account_plays() -> list[dict[str, Any]]:
    """Account-data music plays: the first duplicates extended Song 1 (same minute), one is new."""
    return [
        {
            "endTime": T0.strftime("%Y-%m-%d %H:%M"),
            "artistName": "Artist 1",
            "trackName": "Song 1",
            "msPlayed": 200_000,
        },
        {
            "endTime": (T0 + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
            "artistName": "Nils Frähm",
            "trackName": "Says",
            "msPlayed": 248_000,
        },
    ]


def write_json(path: Path, plays: list[dict[str, Any]], indent: int | None = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plays, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def export_zip(tmp_path: Path) -> Path:
    """A my_spotify_data.zip with both formats and other export files that are not streaming history."""
    extended = json.dumps(sample_extended_plays(), indent=4, ensure_ascii=False).encode()
    account = json.dumps(sample_account_plays(), indent=2, ensure_ascii=False).encode()
    return write_zip(
        tmp_path / "my_spotify_data.zip",
        {
            f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": extended,
            f"{EXTENDED_DIR}/ReadMeFirst_ExtendedStreamingHistory.pdf": b"%PDF-1.4",
            f"{ACCOUNT_DIR}/StreamingHistory_music_0.json": account,
            f"{ACCOUNT_DIR}/Playlist1.json": b'{"playlists": []}',
        },
    )


@pytest.fixture
def import_into(database_url):
    """Run the real importer into the test database."""
    from pipelines.export.importer import import_history

    def run(*paths: Path, **options: Any):
        options.setdefault("user_id", USER)
        return import_history(database_url, list(paths), **options)

    return run


@pytest.fixture
def dbt_build(database_url, tmp_path, monkeypatch):
    """`dbt build` on the project against the test database, in-process, with per-test artefacts."""
    from dbt.cli.main import dbtRunner

    from pipelines import paths

    for name, value in database_url.dbt_env().items():
        monkeypatch.setenv(name, value)

    def run(*extra: str) -> None:
        result = dbtRunner().invoke(
            [
                "build",
                *extra,
                "--project-dir",
                str(paths.DBT_PROJECT_DIR),
                "--profiles-dir",
                str(paths.DBT_PROFILES_DIR),
                "--target-path",
                str(tmp_path / "dbt-target"),
                "--log-path",
                str(tmp_path / "dbt-logs"),
            ]
        )
        if result.exception is not None:
            raise result.exception
        failures = [
            f"{r.node.unique_id}: {r.status} {r.message or ''}"
            for r in result.result.results
            if str(r.status) not in {"success", "pass"}
        ]
        assert result.success and not failures, "\n".join(failures)

    return run


# Shapes of real exports that the play key must survive (see /work/shared/SPOTIFY-FACTS.md).


def endsong_play(at: datetime, n: int, **fields: Any) -> dict[str, Any]:
    """One object of an older export's `endsong_<N>.json`: `username`, the decrypted network fields, a long
    `platform` string, no audiobook fields, `offline_timestamp` in 13-digit milliseconds."""
    play: dict[str, Any] = {
        "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "username": USER,
        "platform": "Android OS 9 API 28 (samsung, SM-G960F)",
        "ms_played": 200_000,
        "conn_country": "DE",
        "ip_addr_decrypted": "192.0.2.10",
        "user_agent_decrypted": "unknown",
        "master_metadata_track_name": f"Song {n}",
        "master_metadata_album_artist_name": f"Artist {n % 3}",
        "master_metadata_album_album_name": f"Album {n % 2}",
        "spotify_track_uri": f"spotify:track:track{n:018d}",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "reason_start": "trackdone",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": None,
        "offline": False,
        "offline_timestamp": 0,
        "incognito_mode": False,
    }
    play.update(fields)
    return play


def offline_batch(synced_at: datetime, *, old_export: bool) -> list[dict[str, Any]]:
    """Seven rows of an offline session that reached Spotify in one sync, so every row ends at `synced_at`:
    three different tracks; track 13 twice, the rows identical in every field; track 14 played twice for the
    same time, the rows differing only in `offline_timestamp` (when each play happened). An older export
    (`endsong_*.json`) writes that in 13-digit milliseconds, a newer one in 10-digit seconds."""
    make = endsong_play if old_export else track_play
    scale = 1000 if old_export else 1

    def played(n: int, minutes_before: int, **fields: Any) -> dict[str, Any]:
        offline_at = int((synced_at - timedelta(minutes=minutes_before)).timestamp()) * scale
        return make(synced_at, n, offline=True, offline_timestamp=offline_at, **fields)

    return [
        played(10, 60),
        played(11, 55, ms_played=61_000, reason_end="fwdbtn", skipped=True),
        played(12, 50),
        played(13, 45),
        played(13, 45),  # identical in every field
        played(14, 40, ms_played=180_000),
        played(14, 30, ms_played=180_000),  # differs only in offline_timestamp
    ]


def account_music(at: datetime, artist: str, track: str, ms: int) -> dict[str, Any]:
    """One row of `StreamingHistory_music_<N>.json` (minute precision)."""
    return {"endTime": at.strftime("%Y-%m-%d %H:%M"), "artistName": artist, "trackName": track, "msPlayed": ms}


def account_podcast(at: datetime, show: str, episode: str, ms: int) -> dict[str, Any]:
    """One row of `StreamingHistory_podcast_<N>.json`."""
    return {"endTime": at.strftime("%Y-%m-%d %H:%M"), "podcastName": show, "episodeName": episode, "msPlayed": ms}


def account_audiobook(at: datetime, book: str, chapter: str, author: str, ms: int) -> dict[str, Any]:
    """One row of `StreamingHistory_audiobook_<N>.json`."""
    return {
        "endTime": at.strftime("%Y-%m-%d %H:%M"),
        "audiobookName": book,
        "chapterName": chapter,
        "authorName": author,
        "msPlayed": ms,
    }


def write_encoded(
    path: Path, plays: list[dict[str, Any]], encoding: str, *, bom: bytes = b"", newline: str = "\n"
) -> Path:
    """The plays as pretty-printed JSON, the way an editor saves a file: in `encoding` (a Python codec name),
    after the byte order mark `bom`, with lines ending in `newline`."""
    text = json.dumps(plays, indent=2, ensure_ascii=False).replace("\n", newline)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bom + text.encode(encoding))
    return path
