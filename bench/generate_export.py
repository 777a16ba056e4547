"""Generate a synthetic Spotify data export: `my_spotify_data.zip` with extended streaming history.

Deterministic (seeded), laid out like Spotify's (`Spotify Extended Streaming History/Streaming_History_Audio_*.json`,
about 16k plays per file, pretty-printed), with music (some skips under 30 s), podcast episodes, audiobook
chapters and plays without metadata, unicode names, and IP addresses that the import must not store.

    python bench/generate_export.py --plays 1000000 --out /tmp/bench-export/my_spotify_data.zip
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

PLAYS_PER_FILE = 16_000
FOLDER = "Spotify Extended Streaming History"


def plays(count: int, seed: int = 7, start: datetime = datetime(2014, 1, 1, tzinfo=UTC)):
    """`count` extended-history objects, oldest first, ending at most ten years after `start`."""
    rng = random.Random(seed)
    at = start
    step = max(1, int(10 * 365 * 24 * 3600 / max(count, 1)))
    for n in range(count):
        at += timedelta(seconds=rng.randint(step // 2, step * 3 // 2))
        kind = rng.random()
        play = {
            "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": rng.choice(["android", "ios", "windows", "Android OS 12 API 31 (Google, Pixel 6)"]),
            "ms_played": rng.randint(0, 360_000),
            "conn_country": rng.choice(["DE", "SE", "JP", "US"]),
            "ip_addr": f"192.0.2.{n % 250}",
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
            "reason_start": rng.choice(["trackdone", "clickrow", "fwdbtn"]),
            "reason_end": rng.choice(["trackdone", "endplay", "fwdbtn"]),
            "shuffle": rng.random() < 0.4,
            "skipped": rng.random() < 0.2,
            "offline": rng.random() < 0.05,
            "offline_timestamp": int(at.timestamp() * 1000),
            "incognito_mode": False,
        }
        if kind < 0.95:
            track = rng.randint(0, 40_000)
            play["master_metadata_track_name"] = f"Träck {track} ♪"
            play["master_metadata_album_artist_name"] = f"Artist {track % 4000}"
            play["master_metadata_album_album_name"] = f"Album {track % 9000}"
            play["spotify_track_uri"] = f"spotify:track:{track:022d}"
        elif kind < 0.98:
            episode = rng.randint(0, 3000)
            play["episode_name"] = f"Episode {episode}"
            play["episode_show_name"] = f"Show {episode % 40}"
            play["spotify_episode_uri"] = f"spotify:episode:{episode:022d}"
        elif kind < 0.99:
            chapter = rng.randint(0, 500)
            play["audiobook_title"] = f"Book {chapter % 20}"
            play["audiobook_uri"] = f"spotify:audiobook:{chapter % 20:022d}"
            play["audiobook_chapter_uri"] = f"spotify:chapter:{chapter:022d}"
            play["audiobook_chapter_title"] = f"Chapter {chapter}"
        yield play


def write_export(count: int, out: Path) -> Path:
    """Write the zip; one member is built in memory at a time (about 16k plays)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    batch: list[dict] = []
    number = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for play in plays(count):
            batch.append(play)
            if len(batch) == PLAYS_PER_FILE:
                _write_member(archive, number, batch)
                batch, number = [], number + 1
        if batch:
            _write_member(archive, number, batch)
        archive.writestr("Spotify Account Data/Userdata.json", json.dumps({"username": "bench"}))
    return out


def _write_member(archive: zipfile.ZipFile, number: int, batch: list[dict]) -> None:
    name = f"{FOLDER}/Streaming_History_Audio_{number // 4 + 2014}_{number % 4}.json"
    archive.writestr(name, json.dumps(batch, indent=4, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=1_000_000)
    default_out = Path(tempfile.gettempdir()) / "bench-export" / "my_spotify_data.zip"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    print(write_export(args.plays, args.out))


if __name__ == "__main__":
    main()
