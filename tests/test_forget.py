"""`python -m pipelines forget NAME` as a user runs it: three listeners loaded through their own dlt pipelines from
the loopback Spotify server, exports imported, dbt built on the real database; then one listener is forgotten
and every table and view is searched for them."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from psycopg2 import sql

from pipelines import paths, transform
from pipelines.database import DatabaseUrl
from pipelines.export.importer import import_history
from pipelines.load import default_pipelines_dir, load_plays, pipeline_name
from pipelines.sample_server import make_track
from pipelines.sample_server.catalog import make_local_track
from pipelines.spotify.secrets_file import fingerprint, read_spotify_secrets, write_rotated_token, write_spotify_secrets
from pipelines.spotify.token_store import AccountStore
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query, sample_spotify_server
from tests.export.conftest import EXTENDED_DIR, T0, account_music, endsong_play, export_zip, track_play, write_json
from tests.test_cli import PROJECT_ROOT, cli_env, run_cli

KEY = Fernet.generate_key().decode()
DANA, ALICE, BOB = "listener-1", "alice-5p0t1fy", "bob-9k2x"  # the accounts default, alice and bob
ALICE_TOKEN = "alice-refresh-token-7c1e0b"
BOB_TOKEN = "bob-refresh-token-2d9f44"
TOKENS = {"default": SPOTIFY_REFRESH_TOKEN, "alice": ALICE_TOKEN, "bob": BOB_TOKEN}
SECRETS = (ALICE_TOKEN, BOB_TOKEN, SPOTIFY_REFRESH_TOKEN, SPOTIFY_CLIENT_SECRET, KEY)
SHARED = make_track("Shared Song", "Shared Band")  # alice and bob both play it: it stays in the catalog
# Where the test data puts alice before she is forgotten: each of these must be emptied of her.
WHERE_ALICE_IS = (
    "accounts.spotify_accounts",
    "raw.recently_played",
    "raw.gaps",
    "raw.export_extended_plays",
    "raw.export_account_plays",
    "raw.export_files",
    "raw_staging.recently_played",
    "staging.stg_spotify__plays",
    "analytics.plays",
    "analytics.listening_plays",
    "analytics.listening_sessions",
    "analytics.coverage",
)


@pytest.fixture
def env(database_url: DatabaseUrl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI's environment, and the same settings in this process (state dir, token key, dlt project dir)."""
    settings = {"SPOTIFY_ELT_HOME": str(tmp_path / "state"), "DLT_PROJECT_DIR": str(tmp_path), "SPOTIFY_TOKEN_KEY": KEY}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPOTIFY_REFRESH_TOKEN", raising=False)
    return cli_env(tmp_path, DATABASE_URL=str(database_url), COLUMNS="200", **settings)


@pytest.fixture
def household(database_url: DatabaseUrl, env: dict[str, str]) -> Any:
    """The sample server with three listeners, stored as the accounts default (listener-1), alice and bob."""
    with sample_spotify_server() as server:
        server.add_listener(ALICE, refresh_token=ALICE_TOKEN)
        server.add_listener(BOB, refresh_token=BOB_TOKEN)
        store = AccountStore(database_url)
        for name, user in (("default", DANA), ("alice", ALICE), ("bob", BOB)):
            store.add(name, TOKENS[name], user_id=user, client_id="test-client-id", authorised_at=datetime.now(UTC))
        yield server


def load(server: Any, database: DatabaseUrl, account: str) -> dict:
    """The real loader, with the account's own dlt pipeline, as `load` runs it for each account."""
    args = {
        "client_id": "test-client-id",
        "client_secret": SPOTIFY_CLIENT_SECRET,
        "refresh_token": TOKENS[account],
        "api_url": server.api_url,
        "accounts_url": server.accounts_url,
    }
    return load_plays(database, args, name=pipeline_name(account))


def play(server: Any, user: str, track: dict, at: datetime, context: dict | None = None) -> None:
    server.add_play(track, at, context, user=user)


def alice_export(folder: Path) -> Path:
    """Alice's export: extended history (one older `endsong` file naming her as `username`) and account data."""
    write_json(
        folder / EXTENDED_DIR / "Streaming_History_Audio_2024_0.json",
        [track_play(T0 + timedelta(minutes=4 * n), 100 + n) for n in range(4)],
    )
    write_json(folder / EXTENDED_DIR / "endsong_0.json", [endsong_play(T0 - timedelta(days=30), 7, username=ALICE)])
    write_json(
        folder / "Spotify Account Data" / "StreamingHistory_music_0.json",
        [account_music(T0 + timedelta(days=2), "Nils Frähm", "Says", 248_000)],
    )
    return folder


# -- what the tests look at ---------------------------------------------------------------------------------------


def relations(database: DatabaseUrl) -> dict[tuple[str, str], list[str]]:
    """Every table and view outside the system schemas, with its text, varchar and jsonb columns."""
    rows = query(
        database,
        """
        select table_schema, table_name, array_remove(array_agg(
            case when data_type in ('text', 'character varying', 'jsonb') then column_name::text end
        ), null)
        from information_schema.columns
        where table_schema not in ('pg_catalog', 'information_schema')
        group by 1, 2
        """,
    )
    return {(schema, table): columns for schema, table, columns in rows}


def mentions(database: DatabaseUrl, user_id: str) -> dict[str, int]:
    """Rows of every table and view holding `user_id` anywhere in a text, varchar or jsonb column (as text)."""
    found = {}
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            for (schema, table), columns in relations(database).items():
                if not columns:
                    continue
                where = sql.SQL(" or ").join(
                    sql.SQL("strpos({}::text, %(user)s) > 0").format(sql.Identifier(column)) for column in columns
                )
                cur.execute(
                    sql.SQL("select count(*) from {} where {}").format(sql.Identifier(schema, table), where),
                    {"user": user_id},
                )
                if rows := cur.fetchone()[0]:
                    found[f"{schema}.{table}"] = rows
    finally:
        conn.close()
    return found


def rows_by_user(database: DatabaseUrl) -> dict[tuple[str, str], int]:
    """(relation, user id): rows, for every table and view with a `user_id` column."""
    counts = {}
    for (schema, table), _ in relations(database).items():
        columns = query(
            database,
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
            (schema, table),
        )
        if ("user_id",) not in columns:
            continue
        statement = sql.SQL("select user_id::text, count(*) from {} group by 1").format(sql.Identifier(schema, table))
        conn = database.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                counts |= {(f"{schema}.{table}", user): rows for user, rows in cur.fetchall()}
        finally:
            conn.close()
    return counts


def others(counts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {key: rows for key, rows in counts.items() if key[1] != ALICE}


def all_rows(database: DatabaseUrl, relation: str) -> set[tuple]:
    schema, table = relation.split(".")
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("select * from {}").format(sql.Identifier(schema, table)))
            return {tuple(str(value) for value in row) for row in cur.fetchall()}
    finally:
        conn.close()


def without_user(database: DatabaseUrl) -> dict[str, set[tuple]]:
    """Every row of each table and view that has no `user_id` column (dlt's tables, the catalog marts)."""
    users = {relation for relation, _ in rows_by_user(database)}
    names = [f"{schema}.{table}" for schema, table in relations(database)]
    return {name: all_rows(database, name) for name in names if name not in users}


def files_mentioning(directory: Path, user_id: str) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and user_id.encode() in path.read_bytes()]


def forget_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", "forget", *args],
        env=env,
        cwd=PROJECT_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# -- forgetting a listener ------------------------------------------------------------------------------------------


def test_forget_deletes_every_trace_of_the_listener_and_nothing_of_the_others(
    household, database_url, env, tmp_path, monkeypatch
):
    server, now = household, datetime.now(UTC)
    start = now - timedelta(hours=6)
    for n in range(4):
        play(server, DANA, make_track(f"Dana Song {n}", "Dana Band"), start + timedelta(minutes=5 * n))
    for n in range(5):
        play(server, BOB, make_track(f"Bob Song {n}", "Bob Band"), start + timedelta(minutes=4 * n))
    play(server, BOB, SHARED, start + timedelta(minutes=30))
    # Alice: a local file (only her catalog row knows its name), a playlist of hers, then 55 plays more after
    # the first load, so the second one records a gap.
    play(server, ALICE, SHARED, start + timedelta(minutes=1))
    play(server, ALICE, make_local_track("Alice", "Voice Memos", "Alice Wedding Speech", 95_000), start)
    own_playlist = {
        "type": "playlist",
        "uri": f"spotify:user:{ALICE}:playlist:4lIc3sM1x",
        "href": f"https://api.spotify.com/v1/users/{ALICE}/playlists/4lIc3sM1x",
        "external_urls": {"spotify": f"https://open.spotify.com/user/{ALICE}/playlist/4lIc3sM1x"},
    }
    play(server, ALICE, make_track("Morning Song", "Quiet Band"), start + timedelta(minutes=2), own_playlist)
    load(server, database_url, "default")
    load(server, database_url, "bob")
    load(server, database_url, "alice")
    import_history(database_url, [alice_export(tmp_path / "alice-export")], user_id=ALICE)
    import_history(database_url, [export_zip(tmp_path)], user_id=BOB)
    transform.build(database_url)
    for n in range(55):
        play(server, ALICE, make_track(f"Alice Song {n}", "Quiet Band"), start + timedelta(hours=1, minutes=3 * n))
    assert load(server, database_url, "alice")["gaps"]  # and alice loaded last: dlt's staging copy is hers
    transform.build(database_url)  # incremental: the SQL dbt logs and keeps names the users whose days changed

    held = mentions(database_url, ALICE)
    for where in WHERE_ALICE_IS:
        assert held.get(where), f"the test data should put {ALICE} in {where}"
    assert query(database_url, "select count(*) from analytics.tracks where track_name = 'Alice Wedding Speech'") == [
        (1,)
    ]
    before, catalog_before = rows_by_user(database_url), without_user(database_url)
    alice_plays = before[("raw.recently_played", ALICE)]
    alice_dir = default_pipelines_dir(database_url) / pipeline_name("alice")
    assert alice_dir.is_dir() and files_mentioning(paths.dbt_log_dir(), ALICE)

    result = forget_cli(env, "alice", "--yes")

    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"forgot account alice (Spotify user {ALICE}); deleted:" in output
    assert re.search(rf"raw\.recently_played\s+{alice_plays}\s+plays loaded from Spotify", output)
    state = r"raw\._dlt_pipeline_state\s+\d+\s+dlt state \(cursor\) of pipeline spotify_recently_played__alice"
    assert re.search(state, output)
    assert f"removed dlt's working dir {alice_dir}" in output
    assert "left as they are" not in output
    for secret in SECRETS:
        assert secret not in output

    # Nowhere in the database, nor in the state dir (dlt's working dirs, dbt's logs and target files).
    assert mentions(database_url, ALICE) == {}
    assert files_mentioning(paths.state_dir(), ALICE) == []
    assert not alice_dir.exists() and (default_pipelines_dir(database_url) / pipeline_name("bob")).is_dir()
    # The others keep every row, in every relation.
    assert others(rows_by_user(database_url)) == others(before)
    store = AccountStore(database_url)
    assert [account.name for account in store.list()] == ["bob", "default"]
    assert store.refresh_token("bob") == BOB_TOKEN
    states = query(database_url, "select pipeline_name, count(*) from raw._dlt_pipeline_state group by 1 order by 1")
    assert [name for name, _ in states] == ["spotify_recently_played", "spotify_recently_played__bob"]
    # Without a user: dlt's tables are as they were; the catalog lost only what alice alone played.
    catalog_after = without_user(database_url)
    for relation, rows in catalog_before.items():
        if relation.endswith("._dlt_pipeline_state"):
            assert rows - catalog_after[relation] == {row for row in rows if "spotify_recently_played__alice" in row}
        elif relation in {"analytics.tracks", "analytics.albums", "analytics.artists", "analytics.track_artists"}:
            assert catalog_after[relation] <= rows
        else:
            assert catalog_after[relation] == rows, relation
    tracks = {name for (name,) in query(database_url, "select track_name from analytics.tracks")}
    assert "Shared Song" in tracks and "Bob Song 0" in tracks and "Dana Song 0" in tracks
    assert not tracks & {"Alice Wedding Speech", "Morning Song", "Alice Song 0"}

    # The next (incremental) transform brings nothing of hers back; a new load of bob's goes on as before.
    play(server, BOB, make_track("Bob Song Later", "Bob Band"), now - timedelta(minutes=1))
    play(server, ALICE, make_track("Alice Song Later", "Quiet Band"), now - timedelta(minutes=1))
    assert load(server, database_url, "bob")["plays_loaded"] == 1
    transform.build(database_url)
    assert mentions(database_url, ALICE) == {}
    after = others(rows_by_user(database_url))
    assert after[("analytics.plays", BOB)] == before[("analytics.plays", BOB)] + 1
    assert {key: rows for key, rows in after.items() if key[1] == DANA} == {
        key: rows for key, rows in before.items() if key[1] == DANA
    }


def test_a_mention_in_another_listener_s_play_is_reported_and_left(household, database_url):
    server, start = household, datetime.now(UTC) - timedelta(hours=1)
    alice_s_playlist = {"type": "playlist", "uri": f"spotify:user:{ALICE}:playlist:sh4r3d", "href": None}
    play(server, BOB, make_track("Bob Song", "Bob Band"), start, alice_s_playlist)
    play(server, ALICE, make_track("Alice Song", "Quiet Band"), start)
    load(server, database_url, "bob")
    load(server, database_url, "alice")

    from pipelines.spotify.forget import forget, plan_forget

    report = forget(database_url, plan_forget(database_url, "alice"))

    assert report.deleted["raw.recently_played"] == 1
    assert report.mentions_left == {"raw.recently_played": 1}
    assert any(line.startswith("left as they are: 1 row of raw.recently_played") for line in report.lines())
    assert query(database_url, "select user_id from raw.recently_played") == [(BOB,)]


def test_a_table_the_pipeline_may_not_change_is_named_and_the_rest_is_forgotten(
    household, database_url, env, postgres_admin
):
    # As `grant-roles --listener` leaves it: the listener roles' map, owned by the admin, out of the loader's reach.
    admin = postgres_admin.with_dbname(database_url.dbname)
    query(admin, "create schema listener_access")
    query(admin, "create table listener_access.listener_roles (role_name text primary key, account text, user_id text)")
    query(admin, "insert into listener_access.listener_roles values ('listener_alice', 'alice', %s)", (ALICE,))

    result = forget_cli(env, "alice", "--yes")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "but not in listener_access.listener_roles: the pipeline's role may not delete there" in result.stderr
    assert (
        "warning: the pipeline's role may not delete from listener_access.listener_roles: a superuser has to, with "
        f"`delete from listener_access.listener_roles where user_id = '{ALICE}'`"
    ) in result.stderr
    assert [account.name for account in AccountStore(database_url).list()] == ["bob", "default"]
    assert query(admin, "select user_id from listener_access.listener_roles") == [(ALICE,)]


# -- asking first ---------------------------------------------------------------------------------------------------


def test_without_yes_and_without_a_terminal_nothing_is_deleted(household, database_url, env):
    result = forget_cli(env, "alice")

    assert result.returncode == 1
    assert "error: nothing deleted: forgetting account alice needs a confirmation" in result.stderr
    assert "--yes" in result.stderr
    assert f"forget account alice (Spotify user {ALICE}). This deletes, for good:" in result.stderr
    assert [account.name for account in AccountStore(database_url).list()] == ["alice", "bob", "default"]


def test_answering_no_at_the_terminal_deletes_nothing(household, database_url, env):
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "forget", "alice"],
            env=env,
            cwd=PROJECT_ROOT,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, b"n\n")
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)

    assert process.returncode == 1
    assert "Forget account alice and delete all of this? [y/N]" in stderr
    assert "nothing deleted" in stderr
    assert [account.name for account in AccountStore(database_url).list()] == ["alice", "bob", "default"]


def test_an_unknown_account_is_one_line_naming_the_accounts(household, env):
    result = run_cli(env, "forget", "zoe", "--yes")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no account named 'zoe' (the accounts are alice, bob, default): see `python -m pipelines accounts list`"
    ]


# -- accounts that are the same listener, and the single-listener token ----------------------------------------------


def test_every_account_of_the_same_spotify_user_goes_with_the_one_named(household, database_url, env):
    AccountStore(database_url).add(
        "alice-phone", "alice-phone-token", user_id=ALICE, client_id="test-client-id", authorised_at=None
    )

    result = forget_cli(env, "alice", "--yes")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "also the user's other account alice-phone" in result.stderr
    assert re.search(r"accounts\.spotify_accounts\s+2\s", result.stderr)
    assert [account.name for account in AccountStore(database_url).list()] == ["bob", "default"]


def test_forgetting_default_removes_the_single_listener_token_too(household, database_url, env, tmp_path):
    secrets = tmp_path / ".dlt" / "secrets.toml"
    write_spotify_secrets(
        secrets, client_id="test-client-id", client_secret=SPOTIFY_CLIENT_SECRET, refresh_token=SPOTIFY_REFRESH_TOKEN
    )
    write_rotated_token(paths.rotated_token_file(), "rotated-token-5e6f", replaces=fingerprint(SPOTIFY_REFRESH_TOKEN))

    result = forget_cli({**env, "SPOTIFY_REFRESH_TOKEN": SPOTIFY_REFRESH_TOKEN}, "default", "--yes")

    assert result.returncode == 0, result.stderr[-3000:]
    assert read_spotify_secrets(secrets) == {"client_id": "test-client-id", "client_secret": SPOTIFY_CLIENT_SECRET}
    assert not paths.rotated_token_file().exists()
    assert f"removed the refresh token from {secrets}" in result.stderr
    assert "warning: SPOTIFY_REFRESH_TOKEN still holds this listener's refresh token" in result.stderr
    for secret in (*SECRETS, "rotated-token-5e6f"):
        assert secret not in result.stdout + result.stderr
    assert [account.name for account in AccountStore(database_url).list()] == ["alice", "bob"]
