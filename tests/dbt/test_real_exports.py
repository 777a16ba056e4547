"""A listener's real-shaped exports, imported and built as a user does, with exact counts in raw and every mart.

The story follows the usual order (../shared/SPOTIFY-FACTS.md): account data arrives first (within days, before
any API load), the extended streaming history weeks later, then the same zip again, a later export that overlaps
the first, and finally the API. The files carry the shapes real exports have:

- account data: minute precision, two skips of one track in one minute with equal `msPlayed` (identical rows),
  two different tracks ending in the same minute, the "Unknown Artist" / "Unknown Track" placeholders, a
  podcast file, an audiobook file (`audiobookName`, `chapterName`, `authorName`), consecutive music files, an
  empty `[]` file, a file the user renamed, files that are not history, a UTF-8 BOM with CRLF line ends and a
  UTF-16 file;
- extended history: an offline batch synced with one `ts` (three plays, two of them differing only in
  `offline_timestamp`), two rows identical in every field, a play without metadata, a video file.

Every step goes through the CLI (`import-history`, `transform`), which must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import query
from tests.export.conftest import USER, extended_play, write_zip

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "Spotify Account Data"
EXTENDED = "Spotify Extended Streaming History"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def catalog() -> dict[str, dict[str, Any]]:
    from pipelines.sample_server.catalog import make_track

    return {
        "A": make_track("Song A", "Artist A", album_name="Album A", duration_ms=180_000),
        "B": make_track("Song B", "Artist A", album_name="Album A", duration_ms=200_000),
        "C": make_track("Song C", "Artist C", album_name="Album C", duration_ms=150_000),
        "D": make_track("Song D", "Artist B", album_name="Album B", duration_ms=200_000),
        "E": make_track("Song E", "Artist B", album_name="Album B", duration_ms=190_000),
        "F": make_track("Song F", "Artist B", album_name="Album B", duration_ms=210_000),
        "V": make_track("Song V", "Artist V", album_name="Album V", duration_ms=240_000),
        "W": make_track("Song W", "Artist V", album_name="Album V", duration_ms=230_000),
    }


def account_music(end: str, artist: str, track: str, ms: int) -> dict[str, Any]:
    return {"endTime": end, "artistName": artist, "trackName": track, "msPlayed": ms}


def extended(track: dict[str, Any], ts: str, ms: int, **fields: Any) -> dict[str, Any]:
    return extended_play(
        at(ts),
        master_metadata_track_name=track["name"],
        master_metadata_album_artist_name=track["artists"][0]["name"],
        master_metadata_album_album_name=track["album"]["name"],
        spotify_track_uri=track["uri"],
        ms_played=ms,
        **fields,
    )


def crlf_json_with_bom(rows: list[dict[str, Any]]) -> bytes:
    """As a Windows editor re-saves a file: UTF-8 with a byte order mark, CR LF line ends."""
    return b"\xef\xbb\xbf" + json.dumps(rows, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode()


def utf16(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps(rows, indent=2, ensure_ascii=False).encode("utf-16")  # with its byte order mark


def account_data_zip(path: Path) -> Path:
    """The account-data export, as Spotify sends it within days (music, podcast, audiobook files, others)."""
    music_0 = [
        account_music("2024-05-01 10:03", "Artist A", "Song A", 180_000),
        # two skips of one track in one minute: identical rows, two plays
        account_music("2024-05-01 10:05", "Artist A", "Song B", 2_000),
        account_music("2024-05-01 10:05", "Artist A", "Song B", 2_000),
        # Spotify's placeholders where it has no name
        account_music("2024-05-01 10:09", "Unknown Artist", "Unknown Track", 60_000),
        account_music("2024-05-01 10:12", "Unknown Artist", "Song C", 150_000),
    ]
    music_1 = [
        # two tracks ending in the same minute
        account_music("2024-05-02 08:00", "Artist B", "Song D", 200_000),
        account_music("2024-05-02 08:00", "Artist B", "Song E", 30_000),
    ]
    renamed = [account_music("2024-05-04 12:00", "Artist A", "Song A", 180_000)]
    podcast = [{"endTime": "2024-05-01 20:00", "podcastName": "Show", "episodeName": "Ep 1", "msPlayed": 1_200_000}]
    audiobook = [
        {
            "endTime": "2024-05-03 21:00",
            "audiobookName": "Book",
            "chapterName": "Chapter 1",
            "authorName": "Author",
            "msPlayed": 900_000,
        }
    ]
    return write_zip(
        path,
        {
            f"{ACCOUNT}/StreamingHistory_music_0.json": crlf_json_with_bom(music_0),
            f"{ACCOUNT}/StreamingHistory_music_1.json": json.dumps(music_1).encode(),
            f"{ACCOUNT}/StreamingHistory_music_2.json": b"[]",
            f"{ACCOUNT}/my history (1).json": json.dumps(renamed).encode(),
            f"{ACCOUNT}/StreamingHistory_podcast_0.json": json.dumps(podcast).encode(),
            f"{ACCOUNT}/StreamingHistory_audiobook_0.json": utf16(audiobook),
            f"{ACCOUNT}/Userdata.json": b'{"username": "listener-1"}',
            f"{ACCOUNT}/Playlist1.json": b'{"playlists": []}',
        },
    )


def extended_history(tracks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The same plays in the extended history: seconds within the account minutes, URIs, playback fields."""
    a, b, c, d, e = (tracks[key] for key in "ABCDE")
    synced = "2024-05-02T08:00:59Z"  # an offline batch, synced at once: one ts for three plays
    return [
        extended(a, "2024-05-01T10:03:41Z", 180_000),
        extended(b, "2024-05-01T10:05:10Z", 2_000, skipped=True, reason_end="fwdbtn"),
        extended(b, "2024-05-01T10:05:10Z", 2_000, skipped=True, reason_end="fwdbtn"),  # identical in every field
        extended_play(at("2024-05-01T10:09:30Z"), ms_played=60_000),  # no metadata: the placeholder play
        extended(c, "2024-05-01T10:12:20Z", 150_000),
        extended(d, synced, 200_000, offline=True, offline_timestamp=1714636800),
        extended(e, synced, 30_000, offline=True, offline_timestamp=1714636800),
        extended(d, synced, 200_000, offline=True, offline_timestamp=1714636801),  # differs only there
        extended(a, "2024-05-04T12:00:15Z", 180_000),
    ]


def video_history(tracks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        extended(tracks["V"], "2024-05-05T19:00:00Z", 240_000),
        extended(tracks["W"], "2024-05-05T19:04:00Z", 230_000),
    ]


def extended_zip(path: Path, tracks: dict[str, dict[str, Any]]) -> Path:
    return write_zip(
        path,
        {
            f"{EXTENDED}/Streaming_History_Audio_2024.json": json.dumps(extended_history(tracks)).encode(),
            f"{EXTENDED}/Streaming_History_Video_2024.json": json.dumps(video_history(tracks)).encode(),
            f"{EXTENDED}/ReadMeFirst_ExtendedStreamingHistory.pdf": b"%PDF-1.4",
        },
    )


def later_export_zip(path: Path, tracks: dict[str, dict[str, Any]]) -> Path:
    """A later export: the same plays again (one file, re-saved as UTF-16) and two new ones."""
    plays = [
        *extended_history(tracks),
        extended(tracks["A"], "2024-06-01T09:00:00Z", 180_000),
        extended(tracks["F"], "2024-06-01T09:03:30Z", 210_000),
    ]
    return write_zip(path, {f"{EXTENDED}/Streaming_History_Audio_2024-2025.json": utf16(plays)})


def cli(database_url: Any, tmp_path: Path, *args: str) -> str:
    """Run `python -m pipelines ARGS` as a user would; it must exit 0 without a traceback. Returns its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=str(database_url),
        DLT_PROJECT_DIR=str(tmp_path),
        # this test's own dbt artefacts, never the project's target/
        DBT_TARGET_PATH=str(tmp_path / "dbt-target"),
        DBT_LOG_PATH=str(tmp_path / "dbt-logs"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"{args[0]} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout + result.stderr


def count(database_url: Any, relation: str, where: str = "true") -> int:
    return query(database_url, f"select count(*) from {relation} where {where}")[0][0]


def counts(database_url: Any) -> dict[str, int]:
    relations = [
        "raw.export_account_plays",
        "raw.export_extended_plays",
        "analytics.plays",
        "analytics.tracks",
        "analytics.artists",
        "analytics.albums",
        "analytics.track_artists",
        "analytics.listening_history",
        "analytics.episode_plays",
        "analytics.audiobook_plays",
        "analytics.listening_plays",
        "analytics.listening_daily",
        "analytics.listening_by_track",
        "analytics.listening_by_artist",
        "analytics.listening_by_hour",
        "analytics.listening_sessions",
    ]
    return {relation.split(".")[1]: count(database_url, relation) for relation in relations}


def coverage(database_url: Any) -> set[tuple]:
    return set(
        query(
            database_url,
            "select content_type, covered_by, covered_from, covered_to from analytics.coverage where not is_gap",
        )
    )


def test_real_export_shapes_build_every_mart_with_every_play_once(database_url, spotify_server, load_plays, tmp_path):
    tracks = catalog()

    # 1. Account data first, before any API load: an export-only listener.
    first = cli(
        database_url, tmp_path, "import-history", str(account_data_zip(tmp_path / "account.zip")), "--user-id", USER
    )
    assert "StreamingHistory_music_2.json" in first  # warned about: it holds no plays
    assert "Userdata.json" in first and "Playlist1.json" in first  # named as other files
    assert query(database_url, "select to_regclass('raw.recently_played')") == [(None,)]
    cli(database_url, tmp_path, "transform")

    assert counts(database_url) == {
        "export_account_plays": 10,  # 5 + 2 music, 1 renamed, 1 podcast, 1 audiobook; the identical skip twice
        "export_extended_plays": 0,
        "plays": 7,  # music with a track name: the "Unknown Track" placeholder play is no track
        "tracks": 5,  # Song A..E
        "artists": 2,  # Artist A, Artist B ("Unknown Artist" is no artist)
        "albums": 3,  # the unnamed album of Artist A, of Artist B, and of Song C's unknown artist
        "track_artists": 4,  # Song C has no known artist
        "listening_history": 7,
        "episode_plays": 1,
        "audiobook_plays": 1,
        "listening_plays": 7,
        "listening_daily": 3,  # May 1, 2, 4
        "listening_by_track": 5,
        "listening_by_artist": 2,
        "listening_by_hour": 7 * 24,
        "listening_sessions": 3,
    }
    assert query(
        database_url, "select audiobook_title, chapter_title, author_name, ms_played from analytics.audiobook_plays"
    ) == [("Book", "Chapter 1", "Author", 900_000)]
    wrapped = cli(database_url, tmp_path, "wrapped", "--year", "2024", "--output-dir", str(tmp_path / "wrapped"))
    assert "7 plays" in wrapped
    assert count(database_url, "analytics.artists", "artist_name in ('Unknown Artist', 'Unknown Track')") == 0
    assert count(database_url, "analytics.tracks", "track_name in ('Unknown Artist', 'Unknown Track')") == 0
    # consecutive account files and a renamed one: one stretch per content type, no thin `none` between
    assert coverage(database_url) == {
        ("track", "export", at("2024-05-01T10:03:00"), at("2024-05-04T12:01:00")),
        ("episode", "export", at("2024-05-01T20:00:00"), at("2024-05-01T20:01:00")),
        ("audiobook", "export", at("2024-05-03T21:00:00"), at("2024-05-03T21:01:00")),
    }

    # 2. The extended history of the same plays arrives: it supersedes account data, leaving no orphans.
    extended_export = extended_zip(tmp_path / "extended.zip", tracks)
    cli(database_url, tmp_path, "import-history", str(extended_export), "--user-id", USER)
    cli(database_url, tmp_path, "transform")

    after_extended = {
        "export_account_plays": 10,
        "export_extended_plays": 11,  # 9 audio (the identical pair twice, the offline batch thrice) + 2 video
        "plays": 10,  # 8 audio tracks (not the metadata-less play) + 2 videos
        "tracks": 7,  # Song A..E, V, W by Spotify id: the name-only tracks are gone
        "artists": 4,  # Artist A, B, C (named by the extended history), V
        "albums": 4,  # Album A, B, C, V
        "track_artists": 7,
        "listening_history": 10,
        "episode_plays": 1,
        "audiobook_plays": 1,
        "listening_plays": 10,
        "listening_daily": 4,  # May 1, 2, 4, 5
        "listening_by_track": 7,
        "listening_by_artist": 4,
        "listening_by_hour": 7 * 24,
        "listening_sessions": 4,
    }
    assert counts(database_url) == after_extended
    assert count(database_url, "analytics.tracks", "track_id like 'name:%'") == 0
    assert count(database_url, "analytics.albums", "album_id not in (select album_id from analytics.plays)") == 0
    assert count(database_url, "analytics.plays", "is_video") == 2
    assert count(database_url, "analytics.plays", "played_at = '2024-05-02T08:00:59Z'") == 3
    assert count(database_url, "analytics.plays", "played_at = '2024-05-01T10:05:10Z'") == 2
    assert ("video", "export", at("2024-05-05T19:00:00"), at("2024-05-05T19:04:00")) in coverage(database_url)
    assert ("track", "export", at("2024-05-01T10:03:00"), at("2024-05-04T12:01:00")) in coverage(database_url)

    # 3. The same zip again changes nothing.
    again = cli(database_url, tmp_path, "import-history", str(extended_export), "--user-id", USER)
    assert re.search(r"duplicates skipped[^\n]*\b11\b", again), again
    cli(database_url, tmp_path, "transform")
    assert counts(database_url) == after_extended

    # 4. A later export that overlaps the first (re-saved as UTF-16) adds only its two new plays.
    later = later_export_zip(tmp_path / "my_spotify_data (1).zip", tracks)
    cli(database_url, tmp_path, "import-history", str(later), "--user-id", USER)
    cli(database_url, tmp_path, "transform")
    after_later = {
        **after_extended,
        "export_extended_plays": 13,
        "plays": 12,
        "tracks": 8,  # Song F
        "track_artists": 8,
        "listening_history": 12,
        "listening_plays": 12,
        "listening_daily": 5,  # June 1
        "listening_by_track": 8,
        "listening_sessions": 5,
    }
    assert counts(database_url) == after_later

    # 5. The API sees the June play the export holds (20 s later, with milliseconds) and one new play.
    spotify_server.add_play(tracks["A"], at("2024-06-01T09:00:20.517"))
    spotify_server.add_play(tracks["C"], at("2024-06-02T18:00:00.250"))
    load_plays()
    cli(database_url, tmp_path, "transform")
    assert counts(database_url) == {
        **after_later,
        "plays": 13,  # the June play once, now from the API
        # the API names artists and albums by Spotify id, the export by name: Artist A and C, Album A and C
        # are known both ways now (the export's name-only ids stay while export plays reference them)
        "artists": 6,
        "albums": 6,
        "listening_by_artist": 6,
        "listening_history": 13,
        "listening_plays": 13,
        "listening_daily": 6,
        "listening_sessions": 6,
    }
    assert query(
        database_url, "select source, ms_played from analytics.plays where played_at::date = '2024-06-01' order by 1"
    ) == [("api", 180_000), ("export", 210_000)]
