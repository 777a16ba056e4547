"""The demo's year: Spotify's export shape, reproducible to the byte, and meeting the API's plays without overlap."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pipelines.export.formats import EXTENDED, ExtendedPlay, kind_of
from pipelines.sample_server.demo_year import RECENT_PLAYS, YEAR, demo_year, write_export

FIRST_PLAY = datetime(2025, 3, 4, 18, 30, 12, tzinfo=UTC)
# What the importer reads (`formats.ExtendedPlay`) but only exports before 2024 carried.
LEGACY_FIELDS = {"username", "ip_addr_decrypted", "user_agent_decrypted"}


@pytest.fixture(scope="module")
def year():
    return demo_year(FIRST_PLAY)


def ended(play: dict) -> datetime:
    return datetime.strptime(play["ts"], EXTENDED.time_format).replace(tzinfo=UTC)


def test_the_same_first_play_gives_the_same_year_and_the_same_file(year, tmp_path):
    again = demo_year(FIRST_PLAY + timedelta(microseconds=999))  # the export keeps whole seconds

    assert again == year
    assert demo_year(FIRST_PLAY + timedelta(seconds=1)) != year
    first = write_export(year.export_plays, tmp_path / "a" / "my_spotify_data.zip").read_bytes()
    assert write_export(again.export_plays, tmp_path / "b" / "my_spotify_data.zip").read_bytes() == first


def test_a_year_of_plays_starts_at_the_first_play_and_ends_before_the_recent_ones(year):
    times = [ended(play) for play in year.export_plays]
    recent = [played_at for _, played_at, _ in year.recent_plays]

    assert times[0] == FIRST_PLAY and times == sorted(times)
    assert len(year.recent_plays) == RECENT_PLAYS
    assert FIRST_PLAY + YEAR - timedelta(minutes=15) < recent[-1] < FIRST_PLAY + YEAR
    # an export play and an API play of one track are matched within 60 s: these never are
    assert times[-1] < recent[0] - timedelta(minutes=10)
    assert FIRST_PLAY + YEAR - timedelta(days=30) < times[-1]
    assert 3_000 <= len(year.export_plays) <= 15_000
    days = Counter(moment.date() for moment in times)
    assert len(days) > 300  # listened to on most days of the year, not in one burst


def test_the_plays_look_like_a_listener_s(year):
    plays = year.export_plays
    music = [play for play in plays if play["spotify_track_uri"]]
    episodes = [play for play in plays if play["spotify_episode_uri"]]

    fields = {field.encode_name for field in msgspec.structs.fields(ExtendedPlay)} - LEGACY_FIELDS
    assert all(set(play) == fields and next(iter(play)) == "ts" for play in plays)
    assert len(music) == year.export_music_plays and len(music) + len(episodes) == len(plays)
    assert episodes and all(play["episode_show_name"] and play["ms_played"] >= 600_000 for play in episodes)
    skipped = [play for play in music if play["skipped"]]
    assert 0.05 < len(skipped) / len(music) < 0.3
    assert all(play["reason_end"] == "fwdbtn" for play in skipped)
    assert any(play["ms_played"] < 30_000 for play in music)  # short skips, which the API never shows
    by_artist = Counter(play["master_metadata_album_artist_name"] for play in music)
    assert len(by_artist) >= 12 and by_artist.most_common(1)[0][1] < len(music) / 4
    # artists found during the year: their first play is months after the year's first
    first_heard = {}
    for play in music:
        first_heard.setdefault(play["master_metadata_album_artist_name"], ended(play))
    assert first_heard["Björk"] - FIRST_PLAY > timedelta(days=200)


def test_the_export_is_laid_out_as_spotify_sends_it(year, tmp_path):
    export = write_export(year.export_plays, tmp_path / "my_spotify_data.zip", plays_per_file=4_000)

    with zipfile.ZipFile(export) as archive:
        names = archive.namelist()
        files = [json.loads(archive.read(name)) for name in names]
    assert [name.split("/")[0] for name in names] == ["Spotify Extended Streaming History"] * len(names)
    assert all(kind_of(name.split("/")[1]) == "extended_audio" for name in names)
    assert names[0].endswith(f"Streaming_History_Audio_{FIRST_PLAY.year}_0.json")
    assert names[-1].endswith(f"_{FIRST_PLAY.year}-{FIRST_PLAY.year + 1}_{len(names) - 1}.json")
    assert [play for file in files for play in file] == year.export_plays
    assert all(len(file) <= 4_000 for file in files)


def test_a_year_needs_an_aware_first_play():
    with pytest.raises(ValueError, match="timezone-aware"):
        demo_year(datetime(2025, 3, 4))
