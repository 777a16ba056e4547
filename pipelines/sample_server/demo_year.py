"""A year of listening for the demo, shaped like Spotify's privacy export (extended streaming history).

`demo_year(first_play_at)` lays out a year that begins with a play ending at `first_play_at`: a few listening
sessions most days, at the hours people listen (commute, afternoon, evening), an artist of the month, artists
discovered during the year, skips, a podcast episode on some mornings, a few offline sessions. The year ends
shortly before the plays the sample server shows as recently played (`demo_history`), so the export and the API
meet without overlapping. Same `first_play_at` and seed, same year, byte for byte: importing it again adds nothing.

`write_export` writes the plays as Spotify sends them: `my_spotify_data.zip` holding
`Spotify Extended Streaming History/Streaming_History_Audio_<first year>[-<last year>]_<n>.json`.
"""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.sample_server.catalog import spotify_id
from pipelines.sample_server.demo_data import Play, catalog_tracks, demo_history, edge_case_tracks, listening_session

YEAR = timedelta(days=365)
RECENT_PLAYS = 50  # what the API shows: the 50 most recent plays
EXPORT_FOLDER = "Spotify Extended Streaming History"
PLAYS_PER_FILE = 16_000  # about what Spotify puts in one file

# How likely a listening session starts in each hour of the day (UTC): commute, afternoon, evening.
_HOUR_WEIGHTS = (0, 0, 0, 0, 0, 0, 1, 5, 6, 3, 2, 2, 3, 3, 3, 2, 2, 4, 6, 6, 5, 4, 2, 1)
# Artists the listener only finds during the year (day of the year of their first play).
_DISCOVERIES = {"Sigur Rós": 45, "YOASOBI": 130, "Björk": 220, 'Dana "D" O\'Hara': 300}
_SHOWS = ("Signal & Noise", "The Long Listen")
_TOPICS = ("the loudness war", "why choruses repeat", "vinyl, again", "one-hit wonders", "the B-side", "tape hiss")


@dataclass(frozen=True)
class DemoYear:
    """A generated year: the export's plays (oldest first) and the recent plays the sample server serves."""

    first_play_at: datetime
    export_plays: list[dict[str, Any]]
    recent_plays: list[Play]

    @property
    def export_music_plays(self) -> int:
        """Export plays of a track (the rest are podcast episodes)."""
        return sum(1 for play in self.export_plays if play["spotify_track_uri"])

    @property
    def last_day(self) -> date:
        """The UTC day of the newest recent play."""
        return self.recent_plays[-1][1].date()


def demo_year(first_play_at: datetime, seed: int = 7) -> DemoYear:
    """The demo's year, starting with a play that ends at `first_play_at` (whole seconds, as the export keeps).

    Raises:
        ValueError: `first_play_at` is not timezone-aware.
    """
    if first_play_at.tzinfo is None:
        raise ValueError("first_play_at must be timezone-aware (e.g. datetime.now(UTC))")
    start = first_play_at.astimezone(UTC).replace(microsecond=0)
    recent = demo_history(start + YEAR, count=RECENT_PLAYS, seed=seed)
    # Ten minutes apart: an export play and an API play of the same track are only matched within 60 s.
    export_until = recent[0][1] - timedelta(minutes=10)
    return DemoYear(start, _Listener(random.Random(seed), start).plays_until(export_until), recent)


class _Listener:
    """Builds the export's plays session by session, day by day."""

    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.start = start
        self.tracks = [track for track in catalog_tracks() + edge_case_tracks() if not track["is_local"]]
        self.episodes = dict.fromkeys(_SHOWS, 0)

    def plays_until(self, until: datetime) -> list[dict[str, Any]]:
        plays: list[dict[str, Any]] = []
        free_from = self.start  # a session starts after the previous one ended
        for day in range((until - self.start).days + 1):
            for first_end in self._session_ends(day):
                first_end = max(first_end, free_from)
                for play in self._session(day, first_end):
                    if _ended(play) >= until:
                        return plays
                    plays.append(play)
                free_from = _ended(plays[-1]) + timedelta(minutes=self.rng.randint(15, 90))
        return plays

    def _session_ends(self, day: int) -> list[datetime]:
        """When each session of a day ends its first play; the first session of the year at `start` exactly."""
        midnight = datetime.combine(self.start.date() + timedelta(days=day), datetime.min.time(), UTC)
        weekend = midnight.weekday() >= 5
        count = 0 if self.rng.random() < 0.07 else self.rng.randint(2, 7 if weekend else 5)
        hours = sorted(self.rng.choices(range(24), weights=_HOUR_WEIGHTS, k=count))
        ends = [midnight + timedelta(hours=hour, seconds=self.rng.randrange(3600)) for hour in hours]
        if day == 0:
            return [self.start] + [end for end in ends if end > self.start]
        return ends

    def _session(self, day: int, first_end: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        library = [track for track in self.tracks if _DISCOVERIES.get(track["artists"][0]["name"], 0) <= day]
        hour = first_end.hour
        platform = "android" if hour < 10 or 17 <= hour < 19 else rng.choice(("windows", "osx", "ios"))
        offline = rng.random() < 0.03
        if hour < 10 and rng.random() < 0.2:
            return [self._episode(first_end, platform, offline)]
        if rng.random() < 0.3:
            favourite = self._artist_of_the_month(day, library)
            tracks = rng.choices([track for track in library if track["artists"][0]["name"] == favourite], k=6)
            shuffle = True
        else:
            session = listening_session(rng, library)
            tracks = [track for track, _ in session]
            shuffle = bool(session[0][1]) and session[0][1]["type"] == "playlist" and rng.random() < 0.5
        plays, ended, reason_start = [], first_end, rng.choice(("clickrow", "playbtn", "appload"))
        for index, track in enumerate(tracks):
            skipped = rng.random() < 0.15
            ms_played = rng.randint(3_000, track["duration_ms"] - 1) if skipped else track["duration_ms"]
            if index:
                ended += timedelta(milliseconds=ms_played + rng.randint(0, 3_000))
            plays.append(
                _export_play(
                    ended,
                    ms_played,
                    platform,
                    offline,
                    reason_start=reason_start,
                    reason_end="fwdbtn" if skipped else "trackdone",
                    shuffle=shuffle,
                    skipped=skipped,
                    master_metadata_track_name=track["name"],
                    master_metadata_album_artist_name=track["artists"][0]["name"],
                    master_metadata_album_album_name=track["album"]["name"],
                    spotify_track_uri=track["uri"],
                )
            )
            reason_start = "fwdbtn" if skipped else "trackdone"
        return plays

    def _artist_of_the_month(self, day: int, library: list[dict[str, Any]]) -> str:
        artists = sorted({track["artists"][0]["name"] for track in library})
        return random.Random(f"month {day // 30}").choice(artists)

    def _episode(self, ended: datetime, platform: str, offline: bool) -> dict[str, Any]:
        show = self.rng.choice(_SHOWS)
        self.episodes[show] += 1
        number = self.episodes[show]
        return _export_play(
            ended,
            self.rng.randint(600_000, 2_700_000),
            platform,
            offline,
            reason_start="clickrow",
            reason_end="trackdone",
            shuffle=False,
            skipped=False,
            episode_name=f"#{number}: {_TOPICS[number % len(_TOPICS)]}",
            episode_show_name=show,
            spotify_episode_uri=f"spotify:episode:{spotify_id('episode', show, str(number))}",
        )


def _export_play(ended: datetime, ms_played: int, platform: str, offline: bool, **fields: Any) -> dict[str, Any]:
    """One object of an extended streaming history file, with every field a 2024+ export has."""
    content = {
        name: fields.pop(name, None)
        for name in (
            "master_metadata_track_name",
            "master_metadata_album_artist_name",
            "master_metadata_album_album_name",
            "spotify_track_uri",
            "episode_name",
            "episode_show_name",
            "spotify_episode_uri",
            "audiobook_title",
            "audiobook_uri",
            "audiobook_chapter_uri",
            "audiobook_chapter_title",
        )
    }
    started = ended - timedelta(milliseconds=ms_played)
    return {
        "ts": ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform,
        "ms_played": ms_played,
        "conn_country": "SE",
        "ip_addr": "192.0.2.44",  # a documentation address; the import drops it unless asked not to
        **content,
        **fields,  # reason_start, reason_end, shuffle, skipped
        "offline": offline,
        "offline_timestamp": int(started.timestamp()) if offline else 0,
        "incognito_mode": False,
    }


def _ended(play: dict[str, Any]) -> datetime:
    return datetime.strptime(play["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def write_export(plays: Sequence[dict[str, Any]], out: Path, plays_per_file: int = PLAYS_PER_FILE) -> Path:
    """Write `plays` (oldest first) as Spotify's export zip, one pretty-printed JSON file per `plays_per_file`.

    The zip's bytes depend only on the plays (fixed member times), so the same plays give the same file.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number, first in enumerate(range(0, len(plays), plays_per_file)):
            batch = plays[first : first + plays_per_file]
            years = sorted({batch[0]["ts"][:4], batch[-1]["ts"][:4]})
            member = zipfile.ZipInfo(
                f"{EXPORT_FOLDER}/Streaming_History_Audio_{'-'.join(years)}_{number}.json", (1980, 1, 1, 0, 0, 0)
            )
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, json.dumps(list(batch), indent=4, ensure_ascii=False))
    return out
