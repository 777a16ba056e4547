"""The dbt project end to end: raw plays in, a real `dbt build`, exact mart rows out.

Each test gets a fresh, empty database (`database_url` from tests/conftest.py), creates
`raw.recently_played` the way dlt shapes it, inserts hand-written plays and runs dbt in-process
against the committed `profiles.yml`, configured only through `DBT_POSTGRES_*` variables.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from dbt.cli.main import dbtRunner
from psycopg2.extras import Json

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

# Load ids as dlt writes them (unix seconds with a fraction, as text), recent so the source is fresh.
NOW = time.time()
LOAD_1 = f"{NOW - 120:.6f}"
LOAD_2 = f"{NOW - 60:.6f}"
STALE_LOAD = f"{NOW - 72 * 3600:.6f}"

T0 = datetime(2025, 11, 20, 8, 0, tzinfo=UTC)

# Text that breaks naive re-encoding: quotes, backslashes (also a literal "\n"), control characters,
# astral-plane emoji, combining marks and a name far longer than any column width guess.
AWKWARD_TRACK_NAME = "Emoji 🎧🏳️‍🌈 \"double\" 'single' back\\slash \\n literal\nreal newline\ttab " + "é" * 1200
AWKWARD_ARTIST_NAME = 'O\'Brien & "MC" Ünïcødé ☃ e\u0301 \\u00e9'
AWKWARD_ALBUM_NAME = 'C:\\Music\\\\Albums\r\nCRLF 𝄞 {"json": [1, 2]}'

LOCAL_URI = "spotify:local:Nils+Fr%C3%A4hm:Home+Tapes:Says:248"


def local_id(natural_key: str) -> str:
    """The surrogate id the `spotify_id` macro gives a local object: `local:` + md5 of its key."""
    return "local:" + hashlib.md5(natural_key.encode()).hexdigest()  # noqa: S324 - an id, not security


LOCAL_TRACK_ID = local_id(LOCAL_URI)
LOCAL_ALBUM_ID = local_id("spotify:local:Nils+Fr%C3%A4hm:Home+Tapes")
LOCAL_ARTIST_ID = local_id("Nils Frähm")


# ---------- Spotify-shaped objects -------------------------------------------------------------


def artist(artist_id: str, name: str) -> dict[str, Any]:
    return {
        "id": artist_id,
        "name": name,
        "uri": f"spotify:artist:{artist_id}",
        "href": f"https://api.spotify.com/v1/artists/{artist_id}",
        "type": "artist",
        "external_urls": {"spotify": f"https://open.spotify.com/artist/{artist_id}"},
    }


def album(album_id: str, name: str, album_type: str, release_date: str, precision: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": album_id,
        "name": name,
        "uri": f"spotify:album:{album_id}",
        "href": f"https://api.spotify.com/v1/albums/{album_id}",
        "type": "album",
        "album_type": album_type,
        "release_date": release_date,
        "release_date_precision": precision,
        "total_tracks": 10,
        "images": [{"url": f"https://i.scdn.co/image/{album_id}", "height": 640, "width": 640}],
        "artists": [],
        "external_urls": {},
    }
    if precision is None:
        # Missing keys, not nulls: what the API does for some older catalogue entries.
        del obj["release_date_precision"], obj["images"]
    return obj


def track(
    track_id: str,
    name: str,
    artists: list[dict[str, Any]],
    album_obj: dict[str, Any],
    duration_ms: int,
    explicit: bool,
    popularity: int | None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": track_id,
        "name": name,
        "uri": f"spotify:track:{track_id}",
        "href": f"https://api.spotify.com/v1/tracks/{track_id}",
        "type": "track",
        "duration_ms": duration_ms,
        "explicit": explicit,
        "popularity": popularity,
        "is_local": False,
        "track_number": 1,
        "disc_number": 1,
        "preview_url": None,
        "external_ids": {"isrc": "XX0000000000"},
        "external_urls": {},
        "artists": artists,
        "album": {**album_obj, "artists": artists[:1]},
    }
    if popularity is None:
        del obj["popularity"]
    return obj


def local_track() -> dict[str, Any]:
    """A local file exactly as the API returns one: no ids, a `spotify:local:` uri."""
    local_artist = {"id": None, "name": "Nils Frähm", "uri": None, "href": None, "type": "artist", "external_urls": {}}
    return {
        "id": None,
        "name": "Says",
        "uri": LOCAL_URI,
        "href": None,
        "type": "track",
        "duration_ms": 248000,
        "explicit": False,
        "popularity": 0,
        "is_local": True,
        "track_number": 0,
        "disc_number": 0,
        "preview_url": None,
        "external_ids": {},
        "external_urls": {},
        "artists": [local_artist],
        "album": {
            "id": None,
            "name": "Home Tapes",
            "uri": None,
            "href": None,
            "type": "album",
            "album_type": None,
            "release_date": None,
            "release_date_precision": None,
            "images": [],
            "artists": [],
            "external_urls": {},
        },
    }


def context(kind: str, uri: str) -> dict[str, Any]:
    return {"type": kind, "uri": uri, "href": None, "external_urls": {}}


ANN, BOB, CE = artist("a1", "Ann"), artist("a2", "Bob"), artist("a3", "Cé")
FIRST = album("al1", "First", "album", "2016-04-08", "day")
TRIO = album("al3", "Trio", "single", "2001-05", "month")
FIRST_DELUXE = album("al1", "First (Deluxe)", "album", "2016-04-08", "day")  # renamed since the first load

# (user_id, played_at, track, context, load id)
FIRST_LOAD = [
    ("u1", T0, track("t1", "Plain", [ANN], FIRST, 180000, False, 40), context("album", "spotify:album:al1"), LOAD_1),
    (
        "u1",
        T0 + timedelta(minutes=5),
        track("t3", "Trio Song", [ANN, BOB, CE], TRIO, 201000, True, 55),
        context("playlist", "spotify:playlist:pl1"),
        LOAD_1,
    ),
    ("u1", T0 + timedelta(minutes=10), local_track(), None, LOAD_1),
    (
        "u1",
        T0 + timedelta(minutes=15),
        track("t4", "Sparse", [artist("a4", "Dee")], album("al4", "Old", "album", "1997", None), 1000, False, None),
        context("collection", "spotify:user:u1:collection"),
        LOAD_1,
    ),
    (
        "u1",
        T0 + timedelta(minutes=20),
        track(
            "t5",
            AWKWARD_TRACK_NAME,
            [artist("a5", AWKWARD_ARTIST_NAME)],
            album("al5", AWKWARD_ALBUM_NAME, "compilation", "2010", "year"),
            1234567,
            True,
            99,
        ),
        context("artist", "spotify:artist:a5"),
        LOAD_1,
    ),
    # Another listener, later: the track and its artist were renamed since.
    (
        "u2",
        T0 + timedelta(minutes=25),
        track("t1", "Plain (Remastered)", [artist("a1", "Ann B.")], FIRST, 180000, False, 41),
        None,
        LOAD_1,
    ),
]

SECOND_LOAD = [
    # dlt merges on (user_id, played_at): the first play comes back with a corrected context.
    (
        "u1",
        T0,
        track("t1", "Plain", [ANN], FIRST, 180000, False, 40),
        context("playlist", "spotify:playlist:pl2"),
        LOAD_2,
    ),
    (
        "u1",
        T0 + timedelta(days=1),
        track("t6", "New", [artist("a6", "Zed")], FIRST_DELUXE, 5000, False, 7),
        context("playlist", "spotify:playlist:pl1"),
        LOAD_2,
    ),
    # A backfill: older than every play already modelled, so only a load-id cursor picks it up.
    ("u1", T0 - timedelta(days=1), local_track(), None, LOAD_2),
]


# ---------- database and dbt helpers -----------------------------------------------------------


def execute(url: str, statement: str, params: Any = None) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def create_raw_table(url: str) -> None:
    """`raw.recently_played` as the dlt pipeline creates it (dlt, not dbt, owns this table)."""
    execute(
        url,
        """
        create schema if not exists raw;
        create table raw.recently_played (
            user_id text not null,
            played_at timestamptz not null,
            track jsonb not null,
            context jsonb,
            _dlt_load_id text not null,
            _dlt_id text not null,
            primary key (user_id, played_at)
        );
        """,
    )


def load(url: str, plays: list[tuple]) -> None:
    """Insert plays like dlt's merge does: a known (user_id, played_at) is replaced."""
    for user_id, played_at, track_obj, context_obj, load_id in plays:
        execute(
            url,
            """
            insert into raw.recently_played (user_id, played_at, track, context, _dlt_load_id, _dlt_id)
            values (%s, %s, %s, %s, %s, md5(random()::text))
            on conflict (user_id, played_at) do update set
                track = excluded.track,
                context = excluded.context,
                _dlt_load_id = excluded._dlt_load_id,
                _dlt_id = excluded._dlt_id
            """,
            (user_id, played_at, Json(track_obj), Json(context_obj) if context_obj is not None else None, load_id),
        )


@pytest.fixture
def run_dbt(database_url: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run a dbt command on the project against the test database; return dbt's result."""
    for name, value in database_url.dbt_env().items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> Any:
        result = dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(REPO_ROOT),
                # Per-test artefacts: never write into the project's target/ or race another test.
                "--target-path",
                str(tmp_path / "target"),
                "--log-path",
                str(tmp_path / "logs"),
            ]
        )
        if result.exception is not None:
            raise result.exception
        return result

    return run


def assert_succeeded(result: Any) -> None:
    problems = [
        f"{r.node.unique_id}: {r.status} {r.message or ''}"
        for r in result.result.results
        if str(r.status) not in {"success", "pass"}
    ]
    assert result.success and not problems, "\n".join(problems)


def table(url: str, relation: str, columns: str) -> Counter:
    """The relation's rows as a multiset, so a duplicate row shows up as a count of 2."""
    return Counter(execute(url, f"select {columns} from {relation}"))  # noqa: S608 - fixed test names


PLAYS_COLUMNS = "user_id, played_at, track_id, album_id, primary_artist_id, context_type, context_uri, load_id"
TRACKS_COLUMNS = (
    "track_id, track_name, duration_ms, explicit, popularity, is_local, track_uri, album_id, primary_artist_id"
)
HISTORY_COLUMNS = (
    "played_at, user_id, track_id, track_name, duration_ms, artist_name, album_id, album_name, context_type"
)
MARTS = {
    "analytics.plays": PLAYS_COLUMNS,
    "analytics.tracks": TRACKS_COLUMNS,
    "analytics.artists": "artist_id, artist_name",
    "analytics.albums": "album_id, album_name, album_type, release_date, release_date_precision",
    "analytics.track_artists": "track_id, artist_id, artist_position",
    "analytics.listening_history": HISTORY_COLUMNS,
}


# ---------- tests ------------------------------------------------------------------------------


def test_build_models_plays_exactly(database_url: Any, run_dbt) -> None:
    url = str(database_url)
    create_raw_table(url)
    load(url, FIRST_LOAD)

    assert_succeeded(run_dbt("build"))
    assert_succeeded(run_dbt("source", "freshness"))

    t = T0
    m = timedelta(minutes=1)
    assert table(url, "analytics.plays", PLAYS_COLUMNS) == Counter(
        [
            ("u1", t, "t1", "al1", "a1", "album", "spotify:album:al1", LOAD_1),
            ("u1", t + 5 * m, "t3", "al3", "a1", "playlist", "spotify:playlist:pl1", LOAD_1),
            ("u1", t + 10 * m, LOCAL_TRACK_ID, LOCAL_ALBUM_ID, LOCAL_ARTIST_ID, None, None, LOAD_1),
            ("u1", t + 15 * m, "t4", "al4", "a4", "collection", "spotify:user:u1:collection", LOAD_1),
            ("u1", t + 20 * m, "t5", "al5", "a5", "artist", "spotify:artist:a5", LOAD_1),
            ("u2", t + 25 * m, "t1", "al1", "a1", None, None, LOAD_1),
        ]
    )
    assert table(url, "analytics.tracks", TRACKS_COLUMNS) == Counter(
        [
            # attributes of the most recent play (u2's), not the first one
            ("t1", "Plain (Remastered)", 180000, False, 41, False, "spotify:track:t1", "al1", "a1"),
            ("t3", "Trio Song", 201000, True, 55, False, "spotify:track:t3", "al3", "a1"),
            (LOCAL_TRACK_ID, "Says", 248000, False, 0, True, LOCAL_URI, LOCAL_ALBUM_ID, LOCAL_ARTIST_ID),
            ("t4", "Sparse", 1000, False, None, False, "spotify:track:t4", "al4", "a4"),
            ("t5", AWKWARD_TRACK_NAME, 1234567, True, 99, False, "spotify:track:t5", "al5", "a5"),
        ]
    )
    assert table(url, "analytics.artists", MARTS["analytics.artists"]) == Counter(
        [
            ("a1", "Ann B."),
            ("a2", "Bob"),
            ("a3", "Cé"),
            ("a4", "Dee"),
            ("a5", AWKWARD_ARTIST_NAME),
            (LOCAL_ARTIST_ID, "Nils Frähm"),
        ]
    )
    assert table(url, "analytics.albums", MARTS["analytics.albums"]) == Counter(
        [
            ("al1", "First", "album", "2016-04-08", "day"),
            ("al3", "Trio", "single", "2001-05", "month"),
            ("al4", "Old", "album", "1997", None),
            ("al5", AWKWARD_ALBUM_NAME, "compilation", "2010", "year"),
            (LOCAL_ALBUM_ID, "Home Tapes", None, None, None),
        ]
    )
    assert table(url, "analytics.track_artists", MARTS["analytics.track_artists"]) == Counter(
        [
            ("t1", "a1", 1),
            ("t3", "a1", 1),
            ("t3", "a2", 2),
            ("t3", "a3", 3),
            (LOCAL_TRACK_ID, LOCAL_ARTIST_ID, 1),
            ("t4", "a4", 1),
            ("t5", "a5", 1),
        ]
    )
    assert table(url, "analytics.listening_history", HISTORY_COLUMNS) == Counter(
        [
            (t, "u1", "t1", "Plain (Remastered)", 180000, "Ann B.", "al1", "First", "album"),
            (t + 5 * m, "u1", "t3", "Trio Song", 201000, "Ann B.", "al3", "Trio", "playlist"),
            (t + 10 * m, "u1", LOCAL_TRACK_ID, "Says", 248000, "Nils Frähm", LOCAL_ALBUM_ID, "Home Tapes", None),
            (t + 15 * m, "u1", "t4", "Sparse", 1000, "Dee", "al4", "Old", "collection"),
            (
                t + 20 * m,
                "u1",
                "t5",
                AWKWARD_TRACK_NAME,
                1234567,
                AWKWARD_ARTIST_NAME,
                "al5",
                AWKWARD_ALBUM_NAME,
                "artist",
            ),
            (t + 25 * m, "u2", "t1", "Plain (Remastered)", 180000, "Ann B.", "al1", "First", None),
        ]
    )
    # Byte-for-byte, independent of the client's decoding: the bytes Postgres stores are Python's UTF-8.
    [(stored,)] = execute(url, "select convert_to(track_name, 'UTF8') from analytics.tracks where track_id = 't5'")
    assert bytes(stored) == AWKWARD_TRACK_NAME.encode()
    # Exactly `staging` and `analytics` (generate_schema_name), staging as views, the intermediate inlined.
    relations = execute(
        url,
        "select table_schema, table_name, table_type from information_schema.tables"
        " where table_schema not in ('raw', 'pg_catalog', 'information_schema')",
    )
    # (Other marts, e.g. under marts/listening, may exist beside these.)
    assert set(relations) >= {
        ("analytics", "albums", "BASE TABLE"),
        ("analytics", "artists", "BASE TABLE"),
        ("analytics", "audiobook_plays", "VIEW"),
        ("analytics", "coverage", "BASE TABLE"),
        ("analytics", "episode_plays", "VIEW"),
        ("analytics", "listening_history", "VIEW"),
        ("analytics", "plays", "BASE TABLE"),
        ("analytics", "track_artists", "BASE TABLE"),
        ("analytics", "tracks", "BASE TABLE"),
        ("staging", "stg_spotify__gaps", "VIEW"),
        ("staging", "stg_spotify__play_artists", "VIEW"),
        ("staging", "stg_spotify__plays", "VIEW"),
        ("staging", "stg_spotify_export__account_plays", "VIEW"),
        ("staging", "stg_spotify_export__extended_plays", "VIEW"),
        ("staging", "stg_spotify_export__files", "VIEW"),
    }
    # Without any import, every play is the API's and the export's playback fields are unknown.
    assert execute(url, "select distinct source, ms_played from analytics.plays") == [("api", None)]
    # Coverage: from each listener's oldest play to the latest load, by the API alone.
    assert execute(url, "select user_id, covered_by, is_gap from analytics.coverage order by 1") == [
        ("u1", "api", False),
        ("u2", "api", False),
    ]


def test_second_load_is_appended_incrementally_and_rebuild_changes_nothing(database_url: Any, run_dbt) -> None:
    url = str(database_url)
    create_raw_table(url)
    load(url, FIRST_LOAD)
    assert_succeeded(run_dbt("build"))

    # Mark a first-load play on a (user, UTC day) that the second load does not touch (u2 on
    # 2025-11-20): an incremental run leaves it as it is, a full rebuild would restore it.
    # (Nothing but this test ever edits a mart.)
    execute(
        url,
        "update analytics.plays set context_uri = 'kept-by-incremental' where user_id = 'u2' and played_at = %s",
        (T0 + timedelta(minutes=25),),
    )
    load(url, SECOND_LOAD)
    assert_succeeded(run_dbt("build"))

    t = T0
    m = timedelta(minutes=1)
    after_second_load = table(url, "analytics.plays", PLAYS_COLUMNS)
    assert after_second_load == Counter(
        [
            # replaced through unique_key (user_id, played_at), not duplicated
            ("u1", t, "t1", "al1", "a1", "playlist", "spotify:playlist:pl2", LOAD_2),
            ("u1", t + 5 * m, "t3", "al3", "a1", "playlist", "spotify:playlist:pl1", LOAD_1),
            ("u1", t + 10 * m, LOCAL_TRACK_ID, LOCAL_ALBUM_ID, LOCAL_ARTIST_ID, None, None, LOAD_1),
            ("u1", t + 15 * m, "t4", "al4", "a4", "collection", "spotify:user:u1:collection", LOAD_1),
            ("u1", t + 20 * m, "t5", "al5", "a5", "artist", "spotify:artist:a5", LOAD_1),
            ("u2", t + 25 * m, "t1", "al1", "a1", None, "kept-by-incremental", LOAD_1),
            ("u1", t + timedelta(days=1), "t6", "al1", "a6", "playlist", "spotify:playlist:pl1", LOAD_2),
            # the backfilled older play of the local file, with the same surrogate ids as before
            ("u1", t - timedelta(days=1), LOCAL_TRACK_ID, LOCAL_ALBUM_ID, LOCAL_ARTIST_ID, None, None, LOAD_2),
        ]
    )
    albums = table(url, "analytics.albums", MARTS["analytics.albums"])
    assert albums[("al1", "First (Deluxe)", "album", "2016-04-08", "day")] == 1
    assert table(url, "analytics.track_artists", MARTS["analytics.track_artists"])[("t6", "a6", 1)] == 1
    snapshot = {relation: table(url, relation, columns) for relation, columns in MARTS.items()}
    for relation, rows in snapshot.items():
        assert all(count == 1 for count in rows.values()), f"duplicate rows in {relation}"
    assert sum(snapshot["analytics.listening_history"].values()) == 8
    assert len(snapshot["analytics.tracks"]) == 6

    assert_succeeded(run_dbt("build"))
    assert {relation: table(url, relation, columns) for relation, columns in MARTS.items()} == snapshot


def test_source_freshness_warns_but_does_not_fail_when_the_last_load_is_three_days_old(
    database_url: Any, run_dbt
) -> None:
    url = str(database_url)
    create_raw_table(url)
    load(url, [(user, played_at, obj, ctx, STALE_LOAD) for user, played_at, obj, ctx, _ in FIRST_LOAD])

    result = run_dbt("source", "freshness")

    # A listener who pauses for days runs a healthy pipeline: stale data warns, and a build goes on.
    assert result.success
    [freshness] = result.result.results
    assert str(freshness.status) == "warn"
    # the age is measured from the load's own stamp (not from when this module was imported)
    snapshotted = freshness.snapshotted_at.timestamp()
    assert abs(freshness.age - (snapshotted - float(STALE_LOAD))) < 5


def test_source_freshness_warns_for_an_export_only_listener_without_an_api_table(database_url: Any, run_dbt) -> None:
    result = run_dbt("source", "freshness")

    assert result.success
    [freshness] = result.result.results
    assert str(freshness.status) == "warn"
    assert execute(str(database_url), "select to_regclass('raw.recently_played')") == [(None,)]
