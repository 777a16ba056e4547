"""Privacy between listeners: `grant-roles --listener NAME` makes a role that sees only that account's rows.

Two listeners of the loopback Spotify server are loaded into one database by the real loader and modelled by a
real `dbt build`. Alice's role is then checked against every relation in `analytics`, found in the catalog: as
built, after an incremental build by the loader, and after `dbt build --full-refresh`, which drops and recreates
every table (and so every policy and grant dbt does not put back itself).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
from cryptography.fernet import Fernet
from psycopg2 import errors

from pipelines import transform
from pipelines.database import DatabaseUrl, drop_database
from pipelines.database.roles import listener_role_name
from pipelines.errors import ConfigError
from pipelines.load.per_account import load_account
from pipelines.sample_server.catalog import make_track
from pipelines.spotify.token_store import AccountStore, TokenCipher
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, TEST_ROLE, query
from tests.reliability.test_secrets import drop_roles
from tests.test_cli import cli_env, run_cli

KEY = Fernet.generate_key().decode()
ALICE, BOB = "listener-1", "listener-2"  # Spotify user ids: alice is the sample server's default listener
BOB_TOKEN = "bob-refresh-token-5d1e0c77a2"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Roles:
    loader: str
    analyst: str
    alice: str
    passwords: dict[str, str]

    def url(self, database: DatabaseUrl, kind: str) -> DatabaseUrl:
        role = getattr(self, kind)
        return DatabaseUrl(role, self.passwords[kind], database.host, database.port, database.dbname)


@pytest.fixture
def roles(postgres_admin: DatabaseUrl, database_url: DatabaseUrl) -> Iterator[Roles]:
    tag = uuid.uuid4().hex[:8]
    made = Roles(
        loader=f"loader_{tag}",
        analyst=f"analyst_{tag}",
        alice=f"listener_alice_{tag}",
        passwords={kind: f"{kind}-pw-{uuid.uuid4().hex}" for kind in ("loader", "analyst", "alice")},
    )
    yield made
    drop_database(postgres_admin, database_url.dbname)
    # The group `listeners` stays: roles are the server's, and another test database may be using it.
    drop_roles(postgres_admin, made.alice, made.analyst, made.loader)


@pytest.fixture
def store(database_url: DatabaseUrl) -> AccountStore:
    return AccountStore(database_url, cipher=TokenCipher([KEY], "the test key"))


@pytest.fixture
def env(spotify_server, database_url, postgres_admin, roles, tmp_path, monkeypatch) -> dict[str, str]:
    """The Spotify app for the in-process loads, and the CLI's environment for grant-roles."""
    settings = {
        "SPOTIFY_CLIENT_ID": "test-client-id",
        "SPOTIFY_CLIENT_SECRET": SPOTIFY_CLIENT_SECRET,
        "SPOTIFY_API_URL": spotify_server.api_url,
        "SPOTIFY_ACCOUNTS_URL": spotify_server.accounts_url,
        "SPOTIFY_ELT_HOME": str(tmp_path / "state"),
        "SPOTIFY_TOKEN_KEY": KEY,
    }
    for name, value in {**settings, "DLT_PROJECT_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPOTIFY_REFRESH_TOKEN", raising=False)
    return cli_env(
        tmp_path,
        **settings,
        DATABASE_URL=str(database_url),
        ADMIN_DATABASE_URL=str(postgres_admin),
        LOADER_PASSWORD=roles.passwords["loader"],
        ANALYST_PASSWORD=roles.passwords["analyst"],
        LISTENER_PASSWORD=roles.passwords["alice"],
    )


def play(server, user: str, count: int, start: datetime, *, shared: int = 0) -> None:
    """`count` plays of `user`, four minutes apart; the first `shared` of them are tracks both listeners play."""
    for n in range(count):
        name = f"Shared {n}" if n < shared else f"{user} {start:%j}-{n}"
        server.add_play(
            make_track(name=name, artist_names=[f"Artist of {name}"]), start + timedelta(minutes=4 * n), user=user
        )


def load_both(database: DatabaseUrl, store: AccountStore, workdir: Path) -> None:
    for name in ("alice", "bob"):
        outcome = load_account(database, name, store=store, pipelines_dir=workdir / "dlt")
        assert outcome.status == "loaded", outcome.line()


# -- what alice's role sees ------------------------------------------------------------------------------------


def analytics_relations(admin: DatabaseUrl) -> dict[str, tuple[str, bool]]:
    """Every relation in `analytics`: its kind (r, v, ...) and whether it has a user_id column."""
    rows = query(
        admin,
        """
        select
            c.relname,
            c.relkind::text,
            exists (
                select from pg_attribute as a
                where a.attrelid = c.oid and a.attname = 'user_id' and a.attnum > 0 and not a.attisdropped
            )
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'analytics' and c.relkind in ('r', 'p', 'v', 'm', 'f')
        """,
    )
    return {name: (kind, has_user_id) for name, kind, has_user_id in rows}


def reads_only_analytics(admin: DatabaseUrl, view: str) -> bool:
    """Whether a view reads relations of `analytics` alone, directly or through other views."""
    uses = query(
        admin,
        "select view_name, table_schema, table_name from information_schema.view_table_usage "
        "where view_schema = 'analytics'",
    )
    reads: dict[str, list[tuple[str, str]]] = {}
    for name, schema, table in uses:
        reads.setdefault(name, []).append((schema, table))
    seen, todo = set(), [view]
    while todo:
        current = todo.pop()
        for schema, table in reads.get(current, []):
            if schema != "analytics":
                return False
            if table not in seen:
                seen.add(table)
                todo.append(table)
    return True


def try_read(url: DatabaseUrl, statement: str, params: tuple = ()) -> tuple | None:
    """The one row of `statement`, or None when privileges refuse it."""
    try:
        return query(url, statement, params)[0]
    except errors.InsufficientPrivilege:
        return None


def assert_alice_sees_her_rows_only(database: DatabaseUrl, admin: DatabaseUrl, roles: Roles) -> list[str]:
    """Over every relation in analytics: alice's role reads her rows, all of them, and not one of bob's; the
    analyst reads both listeners'. Returns the relations alice's role reads."""
    alice, analyst = roles.url(database, "alice"), roles.url(database, "analyst")
    relations = analytics_relations(admin)
    readable, problems = [], []
    for name, (kind, has_user_id) in sorted(relations.items()):
        relation = 'analytics."{}"'.format(name.replace('"', '""'))
        # Her rows can only be told from others' by user_id: a relation without it (a shared dimension) must be
        # closed to her; so must a view that reads outside analytics (no policy there to filter its rows).
        expected = has_user_id and (kind != "v" or reads_only_analytics(admin, name))
        if not has_user_id:
            seen = try_read(alice, f"select count(*) from {relation}")  # noqa: S608 - a catalog name
            if seen is not None:
                problems.append(f"{name}: no user_id, yet alice's role reads {seen[0]} rows")
            continue
        seen = try_read(
            alice, f"select count(*), count(*) filter (where user_id is distinct from %s) from {relation}", (ALICE,)
        )
        if seen is None:
            if expected:
                problems.append(f"{name}: alice's role may not read it")
            continue
        readable.append(name)
        if not expected:
            problems.append(f"{name}: alice's role reads it, but it reads outside analytics")
        mine, others = seen
        everyone = query(
            analyst,
            f"select count(*) filter (where user_id = %s), count(*) filter (where user_id = %s) from {relation}",  # noqa: S608
            (ALICE, BOB),
        )[0]
        if others:
            problems.append(f"{name}: alice's role sees {others} rows of other listeners")
        if mine != everyone[0]:
            problems.append(f"{name}: alice's role sees {mine} rows, alice has {everyone[0]}")
        if not (everyone[0] and everyone[1]):
            problems.append(f"{name}: the analyst sees {everyone[0]} rows of alice and {everyone[1]} of bob")
    assert not problems, "\n".join(problems)
    kinds = {relations[name][0] for name in readable}
    assert {"r", "v"} <= kinds, readable  # the check above ran on tables and on views alike
    return readable


def assert_alice_reads_nothing_else(database: DatabaseUrl, roles: Roles) -> None:
    alice = roles.url(database, "alice")
    for statement in (
        "select count(*) from accounts.spotify_accounts",
        "select count(*) from raw.recently_played",
        "select count(*) from staging.stg_spotify__plays",
    ):
        assert try_read(alice, statement) is None, statement
    # the mapping: her own row, none of another listener's
    assert query(alice, "select role_name, account, user_id from listener_access.listener_roles") == [
        (roles.alice, "alice", ALICE)
    ]
    conn = alice.connect()
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.Error):
            cur.execute("set transaction read write")
            cur.execute("delete from analytics.plays")
    finally:
        conn.close()


# -- the tests -------------------------------------------------------------------------------------------------


def test_a_listener_role_sees_only_its_listeners_rows_in_every_mart_also_after_rebuilds(
    spotify_server, database_url, postgres_admin, roles, store, env, tmp_path
):
    admin = postgres_admin.with_dbname(database_url.dbname)
    spotify_server.add_listener(BOB, refresh_token=BOB_TOKEN)
    store.add("alice", SPOTIFY_REFRESH_TOKEN, user_id=ALICE, client_id="test-client-id", authorised_at=None)
    store.add("bob", BOB_TOKEN, user_id=BOB, client_id="test-client-id", authorised_at=None)
    play(spotify_server, ALICE, 6, START, shared=2)
    play(spotify_server, BOB, 5, START + timedelta(hours=2), shared=2)  # bob plays alice's tracks later
    load_both(database_url, store, tmp_path)
    transform.build(database_url)
    # no listener role in this database yet: the marts are built as before, without row-level security
    assert query(admin, "select count(*) from pg_class where relrowsecurity") == [(0,)]
    roles_made = run_cli(env, "grant-roles", "--loader-role", roles.loader, "--analyst-role", roles.analyst)
    assert roles_made.returncode == 0, roles_made.stderr[-2000:]

    granted = run_cli(env, "grant-roles", "--listener", "alice", "--listener-role", roles.alice)

    assert granted.returncode == 0, granted.stderr[-3000:] + granted.stdout[-3000:]
    assert f"postgresql://{roles.alice}:***@" in granted.stderr
    assert "password from LISTENER_PASSWORD" in granted.stderr
    assert f"{roles.alice} reads only account alice's rows (Spotify user {ALICE})" in granted.stderr
    assert roles.passwords["alice"] not in granted.stderr + granted.stdout
    readable = assert_alice_sees_her_rows_only(database_url, admin, roles)
    assert {"plays", "listening_history", "listening_plays", "coverage"} <= set(readable)
    assert_alice_reads_nothing_else(database_url, roles)
    # her plays keep their names: the views join the dimensions she may not read herself
    alice = roles.url(database_url, "alice")
    assert query(alice, "select count(*), count(track_name) from analytics.listening_history") == [(6, 6)]

    # An incremental build by the loader (the pipeline's role now switches to it): views are recreated.
    play(spotify_server, ALICE, 2, START + timedelta(days=1))
    play(spotify_server, BOB, 3, START + timedelta(days=1, hours=1))
    load_both(database_url, store, tmp_path)
    transform.build(database_url)
    assert query(alice, "select count(*) from analytics.plays") == [(8,)]
    assert_alice_sees_her_rows_only(database_url, admin, roles)

    # A full refresh drops and recreates every table.
    transform.run_dbt(database_url, "build", "--full-refresh")
    assert query(alice, "select count(*) from analytics.plays") == [(8,)]
    assert query(roles.url(database_url, "analyst"), "select count(*) from analytics.plays") == [(16,)]
    assert_alice_sees_her_rows_only(database_url, admin, roles)
    assert_alice_reads_nothing_else(database_url, roles)

    # Granting again changes nothing, and keeps the password.
    again = run_cli(
        {**env, "LISTENER_PASSWORD": ""}, "grant-roles", "--listener", "alice", "--listener-role", roles.alice
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "password unchanged" in again.stderr
    assert_alice_sees_her_rows_only(database_url, admin, roles)

    # Without the policy, the check above fails: it would catch a build that lost it.
    query(admin, "alter table analytics.plays disable row level security")
    with pytest.raises(AssertionError, match=r"(?m)^\s*plays: alice's role sees 8 rows of other listeners$"):
        assert_alice_sees_her_rows_only(database_url, admin, roles)


def test_grant_of_an_unknown_account_or_one_without_a_spotify_user_stops_in_one_line(
    database_url, postgres_admin, store, env, roles
):
    store.add("carol", "carol-token", user_id=None, client_id="test-client-id", authorised_at=None)

    unknown = run_cli(env, "grant-roles", "--listener", "dave")
    no_user = run_cli(env, "grant-roles", "--listener", "carol")

    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith("error: no account named 'dave' (the accounts are carol)")
    assert "Traceback" not in unknown.stderr
    assert no_user.returncode == 1
    line = no_user.stderr.strip().splitlines()[-1]
    assert line.startswith("error: account carol has no Spotify user id yet"), line
    assert "python -m pipelines auth --account carol" in line
    assert query(postgres_admin, "select count(*) from pg_roles where rolname = 'listener_carol'") == [(0,)]


def test_a_listener_role_name_that_is_taken_is_refused(database_url, postgres_admin, roles, tmp_path):
    from pipelines.database.roles import grant_listener

    query(postgres_admin.with_dbname(database_url.dbname), "create schema analytics")

    def grant(account: str, role: str) -> None:
        grant_listener(
            postgres_admin,
            database_url,
            account=account,
            user_id=f"{account}-id",
            credentials_dir=tmp_path / "credentials",
            role=role,
            password=roles.passwords["alice"],
        )

    grant("alice", roles.alice)
    with pytest.raises(ConfigError, match="is account alice's listener role already"):
        grant("bob", roles.alice)
    with pytest.raises(ConfigError, match="exists and is not a listener role"):
        grant("bob", TEST_ROLE)  # the pipeline's own role
    assert query(
        postgres_admin.with_dbname(database_url.dbname),
        "select role_name, account, user_id from listener_access.listener_roles",
    ) == [(roles.alice, "alice", "alice-id")]
    assert not (tmp_path / "credentials").exists()


def test_the_default_role_name_needs_no_quoting():
    assert listener_role_name("alice") == "listener_alice"
    assert listener_role_name("bob-2") == "listener_bob_2"
