"""The listening marts built incrementally hold exactly what a `--full-refresh` builds, and their tests are scoped.

Plays arrive as they do in production: hourly API loads through the sample server and the real loader, and
export imports through the real importer (backfills of old days, the export's record of plays the API saw, and
one the API only sees later). After incremental builds, every listening mart (the tables and the views over them)
is copied aside, the whole project is rebuilt with `--full-refresh`, and the two must match row for row
(`except all` both ways), all columns but the `last_load_id` bookkeeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import query
from tests.export.conftest import extended_play, write_json

LISTENING_MARTS = [
    "listening_plays",
    "listening_daily",
    "listening_by_hour",
    "listening_by_artist",
    "listening_by_track",
    "listening_sessions",
]

D1 = datetime(2025, 3, 10, tzinfo=UTC)
D3 = D1 + timedelta(days=2)


def tracks() -> dict[str, dict[str, Any]]:
    from pipelines.sample_server.catalog import make_track

    return {
        "alpha": make_track("Alpha", "Ann", album_name="Letters", duration_ms=180_000),
        "bravo": make_track("Bravo", "Bob", album_name="Bravo", duration_ms=180_000),
        "charlie": make_track("Charlie", "Cee", album_name="Letters", duration_ms=180_000),
        "charlie_two": make_track("Charlie Two", "Cee", duration_ms=170_000),
        "bravo_two": make_track("Bravo Two", "Bob", album_name="Bravo", duration_ms=160_000),
        "delta": make_track("Delta", "Dee", duration_ms=240_000),
        "echo": make_track("Echo", "Late Artist", duration_ms=210_000),
        "foxtrot": make_track("Foxtrot", "New Artist", duration_ms=150_000),
        "golf": make_track("Golf", "Gee", duration_ms=210_000),
        "hotel": make_track("Hotel", "Hal", duration_ms=230_000),
        "duet": make_track("Duet", ["Zed", "Cee"], duration_ms=210_000),
    }


def renamed(track: dict[str, Any], artist_position: int = 1, **changes: Any) -> dict[str, Any]:
    """The same track (same ids) as the API describes it later: new name, length, artist or album name."""
    copy = {**track, "artists": [dict(artist) for artist in track["artists"]], "album": dict(track["album"])}
    if "name" in changes:
        copy["name"] = changes["name"]
    if "duration_ms" in changes:
        copy["duration_ms"] = changes["duration_ms"]
    if "artist_name" in changes:
        copy["artists"][artist_position - 1]["name"] = changes["artist_name"]
    if "album_name" in changes:
        copy["album"]["name"] = changes["album_name"]
    return copy


def export_play(at: datetime, track: dict[str, Any], ms_played: int, **fields: Any) -> dict[str, Any]:
    """The extended export's record of a play of `track` (names and uri as the export writes them)."""
    return extended_play(
        at,
        master_metadata_track_name=track["name"],
        master_metadata_album_artist_name=track["artists"][0]["name"],
        master_metadata_album_album_name=track["album"]["name"],
        spotify_track_uri=track["uri"],
        ms_played=ms_played,
        **fields,
    )


def mart_columns(database: Any, mart: str) -> str:
    rows = query(
        database,
        "select column_name from information_schema.columns"
        " where table_schema = 'analytics' and table_name = %s and column_name <> 'last_load_id'"
        " order by ordinal_position",
        (mart,),
    )
    return ", ".join(name for (name,) in rows)


def set_aside(database: Any, marts: list[str] = LISTENING_MARTS) -> None:
    """Copy the marts, without their bookkeeping column, into the schema `incremental`."""
    query(database, "drop schema if exists incremental cascade; create schema incremental")
    for mart in marts:
        query(
            database,
            f"create table incremental.{mart} as select {mart_columns(database, mart)} from analytics.{mart}",  # noqa: S608
        )


def differences(database: Any, marts: list[str] = LISTENING_MARTS) -> dict[str, int]:
    """Per mart, the rows only the incremental copy has plus the rows only the rebuilt mart has."""
    found = {}
    for mart in marts:
        columns = mart_columns(database, mart)
        [(only_incremental,)] = query(
            database,
            f"select count(*) from (select * from incremental.{mart}"  # noqa: S608
            f" except all select {columns} from analytics.{mart}) as rows",
        )
        [(only_rebuilt,)] = query(
            database,
            f"select count(*) from (select {columns} from analytics.{mart}"  # noqa: S608
            f" except all select * from incremental.{mart}) as rows",
        )
        if only_incremental or only_rebuilt:
            found[mart] = only_incremental + only_rebuilt
    return found


def assert_incremental_equals_full_refresh(database: Any, dbt_build) -> None:
    # Several runs' markers: the marts were really built incrementally, not rebuilt.
    [(markers,)] = query(database, "select count(distinct last_load_id) from analytics.listening_plays")
    assert markers > 1
    set_aside(database)
    [(rows,)] = query(database, "select count(*) from incremental.listening_plays")
    assert rows == query(database, "select count(*) from analytics.plays")[0][0]

    dbt_build("--full-refresh")

    assert differences(database) == {}


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Kathmandu"])
def test_incremental_builds_equal_a_full_refresh(
    timezone, spotify_server, load_plays, import_into, dbt_build, database_url, tmp_path, monkeypatch
):
    # Kathmandu (UTC+05:45): local days and hours straddle the UTC days the marts recompute.
    monkeypatch.setenv("REPORTING_TIMEZONE", timezone)
    t = tracks()

    # 1. Two evening sessions on D1, a morning and a late night on D2, from the API; the first build is a
    #    full one.
    for track, at in [
        (t["alpha"], D1 + timedelta(hours=20)),
        (t["bravo"], D1 + timedelta(hours=20, minutes=4)),
        (t["charlie"], D1 + timedelta(hours=20, minutes=8)),
        (t["alpha"], D1 + timedelta(hours=21, minutes=30)),
        (t["delta"], D1 + timedelta(hours=21, minutes=34)),
        (t["charlie_two"], D1 + timedelta(hours=21, minutes=38)),
        (t["bravo_two"], D1 + timedelta(hours=21, minutes=42)),
        (t["bravo"], D1 + timedelta(days=1, hours=8)),
        (t["delta"], D3 - timedelta(minutes=10)),
        (t["bravo_two"], D3 - timedelta(minutes=5)),
    ]:
        spotify_server.add_play(track, at)
    load_plays()
    dbt_build()

    # 2. An export: a backfilled day (a new artist, one play just before UTC midnight), the export's record
    #    of D1's Bravo (a skip after 60 s: its listened time drops), and two plays on D3 the API has not shown
    #    yet (the second one, two seconds before midnight, the API will see ending on D4).
    old_day = datetime(2025, 1, 5, tzinfo=UTC)
    backfill = renamed(t["golf"], name="Old Song", artist_name="Backfill Artist")
    backfill["uri"] = "spotify:track:backfill000000000000001"
    write_json(
        tmp_path / "export-1" / "Streaming_History_Audio_2025_0.json",
        [
            export_play(old_day + timedelta(hours=10), backfill, 200_000),
            export_play(old_day + timedelta(hours=10, minutes=5), backfill, 200_000),
            export_play(old_day + timedelta(hours=23, minutes=59, seconds=30), backfill, 90_000),
            export_play(D1 + timedelta(hours=20, minutes=4, seconds=2), t["bravo"], 60_000, skipped=True),
            export_play(D3 + timedelta(hours=9, seconds=1), t["echo"], 205_000),
            export_play(D3 + timedelta(hours=23, minutes=59, seconds=58), t["hotel"], 200_000),
        ],
    )
    import_into(tmp_path / "export-1" / "Streaming_History_Audio_2025_0.json")
    # A second listener's first plays, from an export of theirs: a new listener in an incremental run, who
    # also sees Alpha's and Cee's new names in step 3 without a play of theirs.
    write_json(
        tmp_path / "export-3" / "Streaming_History_Audio_2025_0.json",
        [export_play(D1 + timedelta(hours=12), t["alpha"], 100_000), export_play(D3, t["golf"], 210_000)],
    )
    import_into(tmp_path / "export-3" / "Streaming_History_Audio_2025_0.json", user_id="listener-2")
    dbt_build()
    assert query(
        database_url, "select count(*), sum(plays) from analytics.listening_by_hour where user_id = 'listener-2'"
    ) == [(7 * 24, 2)]
    echo_by_name = query(
        database_url, "select artist_id from analytics.listening_plays where track_id = %s", (t["echo"]["id"],)
    )
    assert [artist_id.startswith("name:") for (artist_id,) in echo_by_name] == [True]  # the export's artist

    # 3. An hourly API load on D3: a play continuing D2's late session past midnight, a new artist, Alpha
    #    renamed and 20 s longer (D1's API plays of it keep the length they were played with), Cee renamed by a
    #    duet crediting Cee second (no play of Cee's own tracks), Bravo's album renamed, and Echo, which absorbs
    #    the export's record.
    for track, at in [
        (t["golf"], D3 + timedelta(minutes=2)),
        (t["foxtrot"], D3 + timedelta(hours=8)),
        (renamed(t["alpha"], name="Alpha (Remastered)", duration_ms=200_000), D3 + timedelta(hours=8, minutes=4)),
        (t["golf"], D3 + timedelta(hours=8, minutes=40)),
        (renamed(t["duet"], artist_position=2, artist_name="Cee Sharp"), D3 + timedelta(hours=8, minutes=44)),
        (t["echo"], D3 + timedelta(hours=9, milliseconds=250)),
        (renamed(t["bravo"], album_name="Bravo (Deluxe)"), D3 + timedelta(hours=9, minutes=10)),
    ]:
        spotify_server.add_play(track, at)
    load_plays()
    dbt_build()

    # The export's Echo left listening_plays with its name-only artist; nothing counts that artist any more.
    assert query(
        database_url, "select artist_id from analytics.listening_plays where track_id = %s", (t["echo"]["id"],)
    ) == [(t["echo"]["artists"][0]["id"],)]
    assert query(
        database_url,
        "select count(*) from analytics.listening_by_artist where artist_id = %s",
        echo_by_name[0],
    ) == [(0,)]
    # Names are read from the dimensions: D1's Alpha shows its new name, and still counts the length it had.
    assert query(
        database_url,
        """select tracks.track_name, listening_plays.listened_ms
           from analytics.listening_plays inner join analytics.tracks using (track_id)
           where listening_plays.played_at = %s""",
        (D1 + timedelta(hours=20),),
    ) == [("Alpha (Remastered)", 180_000)]
    assert query(
        database_url,
        """select artist_name, album_name from analytics.listening_by_track
           where user_id = 'listener-1' and track_id = %s""",
        (t["bravo"]["id"],),
    ) == [("Bob", "Bravo (Deluxe)")]
    assert query(
        database_url,
        "select artist_name from analytics.listening_by_artist where user_id = 'listener-1' and artist_id = %s",
        (t["charlie"]["artists"][0]["id"],),
    ) == [("Cee Sharp",)]
    assert query(
        database_url,
        "select track_name from analytics.listening_by_track where user_id = 'listener-2' and track_id = %s",
        (t["alpha"]["id"],),
    ) == [("Alpha (Remastered)",)]
    assert_incremental_equals_full_refresh(database_url, dbt_build)

    # 4. Another export: a play that bridges D3's two morning sessions (they become one: later sessions are
    #    renumbered) and one between D1's two evening sessions (a session of its own: renumbered the other way).
    sessions_before = query(
        database_url, "select count(*) from analytics.listening_sessions where user_id = 'listener-1'"
    )[0][0]
    write_json(
        tmp_path / "export-2" / "Streaming_History_Audio_2025_1.json",
        [
            export_play(D3 + timedelta(hours=8, minutes=22), t["delta"], 200_000),
            export_play(D1 + timedelta(hours=20, minutes=50), t["delta"], 180_000),
        ],
    )
    import_into(tmp_path / "export-2" / "Streaming_History_Audio_2025_1.json")
    dbt_build()
    assert (
        query(database_url, "select count(*) from analytics.listening_sessions where user_id = 'listener-1'")[0][0]
        == sessions_before
    )

    # 5. An hourly load on D4 only: Hotel, 5 s after the export's record of it on D3, absorbs it (D3
    #    changes through a play of D4), and a play half an hour later.
    spotify_server.add_play(t["hotel"], D3 + timedelta(days=1, seconds=3))
    spotify_server.add_play(t["foxtrot"], D3 + timedelta(days=1, minutes=30))
    load_plays()
    dbt_build()
    # The export's Hotel on D3 is gone (D3 changed through a play of D4): one Hotel play, D3's count without it.
    assert query(
        database_url, "select played_at from analytics.listening_plays where track_id = %s", (t["hotel"]["id"],)
    ) == [(D3 + timedelta(days=1, seconds=3),)]

    assert_incremental_equals_full_refresh(database_url, dbt_build)
    # The scenario reached what it meant to: the sessions, the backfilled artist, the merged plays.
    assert query(
        database_url,
        "select count(*), max(session_number) from analytics.listening_sessions where user_id = 'listener-1'",
    ) == [(sessions_before, sessions_before)]
    assert query(
        database_url, "select plays from analytics.listening_by_artist where artist_name = 'Backfill Artist'"
    ) == [(3,)]
    assert query(
        database_url,
        "select listened_ms from analytics.listening_plays where track_id = %s and played_at < %s",
        (t["bravo"]["id"], D1 + timedelta(hours=21)),
    ) == [(60_000,)]


def invoke_dbt(tmp_path, *args: str) -> Any:
    """A dbt command in the environment the fixtures set, whatever its outcome: dbt's result."""
    from dbt.cli.main import dbtRunner

    from pipelines import paths

    result = dbtRunner().invoke(
        [
            *args,
            "--project-dir",
            str(paths.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(paths.DBT_PROFILES_DIR),
            "--target-path",
            str(tmp_path / "dbt-invoke-target"),
            "--log-path",
            str(tmp_path / "dbt-invoke-logs"),
        ]
    )
    if result.exception is not None:
        raise result.exception
    return result


def played_hour_test(tmp_path, *args: str) -> str:
    """Status of listening_plays' accepted_values test on played_hour, by `dbt test`."""
    result = invoke_dbt(tmp_path, "test", "--select", "listening_plays,test_type:data", *args)
    [status] = [
        str(r.status)
        for r in result.result.results
        if r.node.name.startswith("accepted_values_listening_plays_played_hour")
    ]
    return status


def test_data_tests_check_the_latest_run_unless_full_history_is_asked_for(
    spotify_server, load_plays, dbt_build, database_url, tmp_path, monkeypatch
):
    t = tracks()
    spotify_server.add_play(t["alpha"], D1 + timedelta(hours=8))
    load_plays()
    dbt_build()
    spotify_server.add_play(t["bravo"], D3 + timedelta(hours=8))
    load_plays()
    dbt_build()
    corrupt = "update analytics.listening_plays set played_hour = 99 where played_at = %s"

    # A broken row that an earlier run wrote: the hourly tests no longer look at it, a full check does.
    query(database_url, corrupt, (D1 + timedelta(hours=8),))
    assert played_hour_test(tmp_path) == "pass"
    assert played_hour_test(tmp_path, "--vars", "{full_history_tests: true}") == "fail"

    # The same in a row of the latest run fails the hourly tests.
    query(database_url, corrupt, (D3 + timedelta(hours=8),))
    assert played_hour_test(tmp_path) == "fail"


def test_an_export_play_alone_on_its_day_leaves_when_a_play_past_midnight_absorbs_it(
    spotify_server, load_plays, import_into, dbt_build, database_url, tmp_path
):
    # The export holds a play two seconds before UTC midnight, the only play of that day; the API's
    # record of it ends three seconds after midnight and arrives later. The day must lose its play
    # (in `plays` too: the rows of a day no new play falls on are deleted all the same).
    t = tracks()
    spotify_server.add_play(t["alpha"], D1)
    load_plays()
    write_json(
        tmp_path / "export" / "Streaming_History_Audio_2025_0.json",
        [export_play(D3 - timedelta(seconds=2), t["hotel"], 200_000)],
    )
    import_into(tmp_path / "export" / "Streaming_History_Audio_2025_0.json")
    dbt_build()
    spotify_server.add_play(t["hotel"], D3 + timedelta(seconds=3))
    load_plays()
    dbt_build()

    assert query(database_url, "select source, played_at from analytics.plays order by played_at") == [
        ("api", D1),
        ("api", D3 + timedelta(seconds=3)),
    ]
    assert query(database_url, "select played_date::text from analytics.listening_daily order by 1") == [
        ("2025-03-10",),
        ("2025-03-12",),
    ]
    marts = ["plays", *LISTENING_MARTS]
    set_aside(database_url, marts)
    dbt_build("--full-refresh")
    assert differences(database_url, marts) == {}


def test_plays_ending_in_the_same_second_stay_separate_plays(
    spotify_server, load_plays, import_into, dbt_build, database_url, tmp_path
):
    # Real exports hold several plays that end in the same second (skips through a playlist, a track started
    # again), and account data knows only the minute: (user, played_at) is no key of a play, play_id is.
    t = tracks()
    second = D1 + timedelta(hours=20)
    spotify_server.add_play(t["alpha"], second)
    load_plays()
    dbt_build()
    write_json(
        tmp_path / "export" / "Streaming_History_Audio_2025_0.json",
        [
            # two other tracks skipped in the second the API's Alpha ended
            export_play(second, t["bravo"], 1_000, skipped=True),
            export_play(second, t["charlie"], 2_000, skipped=True),
            # the same track twice in one second
            export_play(second + timedelta(hours=1), t["delta"], 30_000),
            export_play(second + timedelta(hours=1), t["delta"], 45_000),
        ],
    )
    account_minute = D3 + timedelta(hours=9)
    write_json(
        tmp_path / "export" / "StreamingHistory_music_0.json",
        [
            {
                "endTime": account_minute.strftime("%Y-%m-%d %H:%M"),
                "artistName": artist,
                "trackName": name,
                "msPlayed": ms,
            }
            for name, artist, ms in [("Golf", "Gee", 100_000), ("Golf", "Gee", 50_000), ("Hotel", "Hal", 20_000)]
        ],
    )
    import_into(
        tmp_path / "export" / "Streaming_History_Audio_2025_0.json",
        tmp_path / "export" / "StreamingHistory_music_0.json",
    )
    dbt_build()  # incremental; the fixture fails on any failing test, the key tests among them
    # an hourly load recomputes D1, with its shared seconds, once more
    spotify_server.add_play(t["echo"], second + timedelta(hours=2))
    load_plays()
    dbt_build()

    shared = "select played_at, count(*) from analytics.{} group by 1 having count(*) > 1 order by 1"
    expected = [(second, 3), (second + timedelta(hours=1), 2), (account_minute, 3)]
    assert query(database_url, shared.format("plays")) == expected
    assert query(database_url, shared.format("listening_plays")) == expected
    assert query(
        database_url, "select plays, listened_ms from analytics.listening_daily where played_date = %s", (D1.date(),)
    ) == [(6, 180_000 + 1_000 + 2_000 + 30_000 + 45_000 + 210_000)]
    # Every row's key holds, not only the latest run's.
    result = invoke_dbt(tmp_path, "test", "--select", "listening_plays+", "--vars", "{full_history_tests: true}")
    statuses = {r.node.name: str(r.status) for r in result.result.results}
    assert {"unique_listening_plays_play_id", "unique_listening_sessions_session_id"} <= set(statuses)
    assert set(statuses.values()) == {"pass"}, statuses

    set_aside(database_url)
    dbt_build("--full-refresh")
    assert differences(database_url) == {}


def test_a_new_time_zone_stops_incremental_builds_until_a_full_refresh(
    spotify_server, load_plays, dbt_build, database_url, tmp_path, monkeypatch
):
    t = tracks()
    spotify_server.add_play(t["alpha"], D1 + timedelta(hours=23, minutes=30))
    load_plays()
    dbt_build()
    spotify_server.add_play(t["bravo"], D3)
    load_plays()
    monkeypatch.setenv("REPORTING_TIMEZONE", "Asia/Tokyo")

    result = invoke_dbt(tmp_path, "run", "--select", "listening_plays")

    [model] = result.result.results
    assert str(model.status) == "error"
    assert "run `dbt build --full-refresh --select listening_plays+`" in model.message
    dbt_build("--full-refresh")
    assert query(database_url, "select played_date::text, played_hour from analytics.listening_plays order by 1") == [
        ("2025-03-11", 8),
        ("2025-03-12", 9),
    ]
