"""The imported history in dbt: one history from API and export, episodes and audiobooks apart."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import query
from tests.export.conftest import AWKWARD_TRACK_NAME, T0, USER, export_zip, extended_play, write_json

SECOND = timedelta(seconds=1)


def add_api_plays(server, count: int) -> list[dict]:
    """`count` API plays of distinct tracks, four minutes apart from T0 - 1 day, with odd milliseconds."""
    from pipelines.sample_server.catalog import make_track

    items = []
    for n in range(count):
        track = make_track(name=f"Api Song {n}", artist_names=[f"Api Artist {n}"], album_name=f"Api Album {n}")
        items.append(server.add_play(track, T0 - timedelta(days=1) + timedelta(minutes=4 * n, milliseconds=517)))
    return items


def export_of(items: list[dict], offset: timedelta) -> list[dict]:
    """The export's record of API plays: same track URI and names, end time `offset` later, seconds only."""
    from pipelines.spotify.helpers import parse_played_at

    plays = []
    for item in items:
        track = item["track"]
        ended = parse_played_at(item["played_at"]).replace(microsecond=0) + offset
        plays.append(
            extended_play(
                ended,
                master_metadata_track_name=track["name"],
                master_metadata_album_artist_name=track["artists"][0]["name"],
                master_metadata_album_album_name=track["album"]["name"],
                spotify_track_uri=track["uri"],
                ms_played=track["duration_ms"] - 1000,
                reason_end="endplay",
            )
        )
    return plays


def test_api_and_export_make_one_history(load_plays, spotify_server, import_into, dbt_build, database_url, tmp_path):
    items = add_api_plays(spotify_server, 3)
    load_plays()
    # The export holds the three API plays (ending 2 s later, within the tolerance) and the sample plays.
    write_json(tmp_path / "more" / "Streaming_History_Audio_2023_0.json", export_of(items, 2 * SECOND))
    import_into(export_zip(tmp_path), tmp_path / "more")

    dbt_build()

    plays = query(
        database_url,
        "select source, track_id, ms_played, reason_end, export_play_id is not null from analytics.plays"
        " order by played_at",
    )
    api_ids = [item["track"]["id"] for item in items]
    assert plays[:3] == [("api", track_id, 209_000, "endplay", True) for track_id in api_ids]
    export_rows = plays[3:]
    assert [row[0] for row in export_rows] == ["export"] * 4
    # Song 1, Song 2 (under 30 s, kept), the unicode track, and the account-only play ("Says");
    # the account copy of Song 1 (same minute) is dropped in favour of the extended one.
    assert [row[1] for row in export_rows] == [
        "track000000000000000001",
        "track000000000000000002",
        "unicode00000000000001",
        export_rows[3][1],
    ]
    assert export_rows[3][1].startswith("name:")
    assert query(database_url, "select episode_name, show_name, ms_played from analytics.episode_plays") == [
        ("Épisode 42: naïve café ☕", "Le Podcast", 1_800_000)
    ]
    assert query(database_url, "select chapter_title, audiobook_title from analytics.audiobook_plays") == [
        ("Kapitel 1", "Der Zauberberg")
    ]
    # Export-only tracks, artists and albums are in the marts, and in the analyst-facing history.
    assert query(
        database_url, "select track_name, described_by from analytics.tracks where track_id like 'name:%'"
    ) == [("Says", "export")]
    assert query(
        database_url,
        "select track_name, artist_name, album_name, source, ms_played from analytics.listening_history"
        " where track_name like 'Ünïcødé%'",
    ) == [(AWKWARD_TRACK_NAME, "Björk", "Homogenic", "export", 200_000)]
    assert query(database_url, "select count(*), count(distinct play_id) from analytics.listening_history") == [(7, 7)]

    # Reimporting the same export and building again changes nothing.
    marts = "select * from analytics.plays order by play_id"
    before = query(database_url, marts)
    import_into(export_zip(tmp_path), tmp_path / "more")
    dbt_build()
    assert query(database_url, marts) == before


def test_a_play_outside_the_tolerance_is_two_plays(
    load_plays, spotify_server, import_into, dbt_build, database_url, tmp_path
):
    items = add_api_plays(spotify_server, 1)
    load_plays()
    # the tolerance is 60 s (docs/history-import.md): 90 s apart, the same track is two plays
    write_json(tmp_path / "Streaming_History_Audio_2023_0.json", export_of(items, 90 * SECOND))
    import_into(tmp_path / "Streaming_History_Audio_2023_0.json")

    dbt_build()

    assert query(database_url, "select source from analytics.plays order by played_at") == [("api",), ("export",)]


def test_an_export_imported_before_the_api_saw_the_play_merges_on_the_next_build(
    load_plays, spotify_server, import_into, dbt_build, database_url, tmp_path
):
    from pipelines.sample_server.catalog import make_track

    add_api_plays(spotify_server, 1)
    load_plays()  # an earlier play: the API pipeline runs already
    track = make_track(name="Late", artist_names=["Someone"])
    item = spotify_server.add_play(track, T0 + timedelta(hours=1, milliseconds=250))
    write_json(tmp_path / "Streaming_History_Audio_2024_0.json", export_of([item], SECOND))
    import_into(tmp_path / "Streaming_History_Audio_2024_0.json", user_id=USER)
    dbt_build()
    assert query(database_url, "select source from analytics.plays order by played_at") == [("api",), ("export",)]

    load_plays()  # the API's record of the same play arrives later
    dbt_build()

    assert query(database_url, "select source, ms_played from analytics.plays order by played_at") == [
        ("api", None),
        ("api", track["duration_ms"] - 1000),
    ]
