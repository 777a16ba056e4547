"""Sample tracks look like the Web API's, and the demo history is plausible and reproducible."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.sample_server import demo_history, edge_case_tracks, make_local_track, make_track

BASE62_ID = re.compile(r"[0-9A-Za-z]{22}")
TRACK_KEYS = {
    "album",
    "artists",
    "available_markets",
    "disc_number",
    "duration_ms",
    "explicit",
    "external_ids",
    "external_urls",
    "href",
    "id",
    "is_local",
    "name",
    "popularity",
    "preview_url",
    "track_number",
    "type",
    "uri",
}
NOW = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


def test_make_track_has_the_web_api_shape_and_stable_ids():
    track = make_track("Song", ["A", "B"], album_name="Record", release_date="2001-05", album_type="compilation")

    assert set(track) == TRACK_KEYS
    assert BASE62_ID.fullmatch(track["id"]) and track["uri"] == f"spotify:track:{track['id']}"
    assert track["href"] == f"https://api.spotify.com/v1/tracks/{track['id']}"
    assert (track["type"], track["is_local"]) == ("track", False)
    assert [artist["name"] for artist in track["artists"]] == ["A", "B"]
    assert all(BASE62_ID.fullmatch(artist["id"]) and artist["type"] == "artist" for artist in track["artists"])
    album = track["album"]
    assert (album["type"], album["album_type"], album["release_date_precision"]) == ("album", "compilation", "month")
    assert [image["width"] for image in album["images"]] == [640, 300, 64]
    assert re.fullmatch(r"[A-Z]{2}[0-9A-Z]{3}\d{7}", track["external_ids"]["isrc"])
    assert make_track("Song", ["A", "B"], album_name="Record", release_date="2001-05")["id"] == track["id"]
    assert make_track("Song", ["A"], album_name="Record")["id"] != track["id"]


@pytest.mark.parametrize(("date", "precision"), [("1997", "year"), ("2001-05", "month"), ("2016-04-08", "day")])
def test_release_date_precision_follows_the_date(date, precision):
    assert make_track("x", release_date=date)["album"]["release_date_precision"] == precision


def test_local_track_is_what_spotify_returns_for_a_local_file():
    track = make_local_track("Sigur Rós", "Takk...", "Hoppípolla: live", 270_999)

    assert track["uri"] == "spotify:local:Sigur+R%C3%B3s:Takk...:Hopp%C3%ADpolla%3A+live:270"
    assert (track["id"], track["is_local"], track["popularity"], track["href"]) == (None, True, 0, None)
    assert "external_ids" not in track
    album = track["album"]
    assert (album["id"], album["uri"], album["album_type"], album["images"]) == (None, None, None, [])
    assert (album["release_date"], album["release_date_precision"]) == (None, None)
    assert [(a["id"], a["uri"], a["name"]) for a in track["artists"]] == [(None, None, "Sigur Rós")]


def test_edge_cases_cover_the_awkward_corners():
    tracks = edge_case_tracks()
    names = [track["name"] for track in tracks]

    assert any(len(track["artists"]) == 3 for track in tracks)
    assert any(track["is_local"] for track in tracks)
    sparse = [track for track in tracks if "popularity" not in track]
    assert sparse and "images" not in sparse[0]["album"] and "release_date_precision" not in sparse[0]["album"]
    artist_names = {artist["name"] for track in tracks for artist in track["artists"]}
    assert {"Sigur Rós", "Björk"} <= artist_names
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", name) for name in names)
    assert any("🔥" in name for name in names)
    assert any('"' in name and "'" in name and "\\" in name for name in names)
    assert any("\n" in name for name in names)
    assert any(len(name) >= 1000 for name in names)
    precisions = {track["album"].get("release_date_precision") for track in tracks}
    assert {"year", "month", "day"} <= precisions
    assert json.loads(json.dumps(tracks, ensure_ascii=False)) == tracks


def test_demo_history_is_plausible_and_deterministic():
    history = demo_history(NOW)

    assert history == demo_history(NOW) and history != demo_history(NOW, seed=8)
    assert len(history) == 120
    moments = [played_at for _, played_at, _ in history]
    assert moments == sorted(moments) and len(set(moments)) == len(moments)
    assert NOW - timedelta(minutes=15) < moments[-1] < NOW
    assert all(moment.microsecond % 1000 == 0 for moment in moments)
    tracks = {track["uri"] for track, _, _ in history}
    artists = {artist["name"] for track, _, _ in history for artist in track["artists"]}
    assert 24 <= len(tracks) < 120 and 12 <= len(artists) <= 25  # a few dozen tracks, so repeats
    contexts = {context["type"] if context else None for _, _, context in history}
    assert contexts == {"playlist", "album", "artist", None}
    recent_names = {track["name"] for track, _, _ in history[-50:]}
    assert {track["name"] for track in edge_case_tracks()} <= recent_names


def test_demo_history_needs_an_aware_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        demo_history(datetime(2026, 1, 1))
