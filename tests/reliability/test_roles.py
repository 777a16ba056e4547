"""Least privilege: `grant-roles` makes a loader that runs the whole pipeline and an analyst that only reads marts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg2
import pytest
from psycopg2 import errors

from pipelines import transform
from pipelines.database import DatabaseUrl, drop_database
from tests.conftest import query
from tests.reliability.report import record
from tests.reliability.test_secrets import drop_roles
from tests.spotify.test_recently_played import START, add_plays
from tests.test_cli import cli_env, run_cli, spotify_env

# What the analyst must not be able to do, each in a fresh transaction that asks to be read-write, so it is
# privileges that refuse, not only the analyst's read-only default.
FORBIDDEN = {
    "read raw plays": "select count(*) from raw.recently_played",
    "read dlt's state": "select count(*) from raw._dlt_pipeline_state",
    "read staging": "select count(*) from staging.stg_spotify__plays",
    "insert into a mart": "insert into analytics.plays (user_id) values ('intruder')",
    "delete from a mart": "delete from analytics.plays",
    "create a table in analytics": "create table analytics.mine (id int)",
    "create a table in public": "create table public.mine (id int)",
    "create a temporary table": "create temporary table mine (id int)",
    "create a schema": "create schema mine",
    "drop a mart": "drop table analytics.plays",
}


@pytest.fixture
def roles(postgres_admin, database_url):
    tag = uuid.uuid4().hex[:8]
    names = {"loader": f"loader_{tag}", "analyst": f"analyst_{tag}"}
    passwords = {"loader": f"loader-pw-{uuid.uuid4().hex}", "analyst": f"analyst-pw-{uuid.uuid4().hex}"}
    urls = {
        kind: DatabaseUrl(names[kind], passwords[kind], database_url.host, database_url.port, database_url.dbname)
        for kind in names
    }
    yield names, passwords, urls
    drop_database(postgres_admin, database_url.dbname)
    drop_roles(postgres_admin, *names.values())


def attempt(url: DatabaseUrl, statement: str) -> Exception | None:
    conn = url.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("set transaction read write")
            cur.execute(statement)
        conn.commit()
        return None
    except psycopg2.Error as exc:
        return exc
    finally:
        conn.close()


def test_analyst_reads_marts_only_and_loader_runs_the_pipeline(
    roles, load_plays, spotify_server, database_url, postgres_admin, tmp_path
):
    names, passwords, urls = roles
    add_plays(spotify_server, 12)
    load_plays()
    transform.build(database_url)  # built by the pipeline's own role, before any role exists
    env = cli_env(
        tmp_path,
        DATABASE_URL=str(database_url),
        ADMIN_DATABASE_URL=str(postgres_admin),
        LOADER_PASSWORD=passwords["loader"],
        ANALYST_PASSWORD=passwords["analyst"],
    )

    granted = run_cli(env, "grant-roles", "--loader-role", names["loader"], "--analyst-role", names["analyst"])

    assert granted.returncode == 0, granted.stderr[-2000:]
    assert f"postgresql://{names['analyst']}:***@" in granted.stderr
    assert "password from ANALYST_PASSWORD" in granted.stderr
    assert passwords["loader"] not in granted.stderr + granted.stdout
    assert passwords["analyst"] not in granted.stderr + granted.stdout

    analyst = urls["analyst"]
    assert query(analyst, "select count(*) from analytics.plays") == [(12,)]
    assert query(analyst, "select count(*) from analytics.listening_history") == [(12,)]
    refused = {what: attempt(analyst, statement) for what, statement in FORBIDDEN.items()}
    assert [what for what, error in refused.items() if not isinstance(error, errors.InsufficientPrivilege)] == []

    # The loader alone runs the pipeline: a load into raw, then a dbt build that replaces every mart...
    add_plays(spotify_server, 5, START + timedelta(days=1))
    loader_env = cli_env(tmp_path, DATABASE_URL=str(urls["loader"]), **spotify_env(spotify_server))
    loader_run = run_cli(loader_env, "run")
    assert loader_run.returncode == 0, loader_run.stderr[-3000:]
    # ...and the pipeline's old role keeps working, as the loader.
    add_plays(spotify_server, 2, START + timedelta(days=2))
    assert run_cli({**loader_env, "DATABASE_URL": str(database_url)}, "load").returncode == 0

    assert query(analyst, "select count(*) from analytics.plays") == [(17,)]  # rebuilt marts stay readable
    owners = query(
        postgres_admin.with_dbname(database_url.dbname),
        """select distinct tableowner from pg_tables where schemaname in ('raw', 'staging', 'analytics')""",
    )
    assert owners == [(names["loader"],)]
    superuser = query(
        postgres_admin,
        "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = %s",
        (names["loader"],),
    )
    assert superuser == [(False, False, False)]
    record(
        "Security",
        "Analyst role: read raw, staging or dlt state; write, create or drop anywhere",
        tried=len(FORBIDDEN),
        lost=None,
        duplicated=None,
        result="all refused; marts readable, also after the loader rebuilt them",
    )


def test_grant_roles_twice_keeps_passwords_and_generates_none_it_was_given(
    roles, postgres_admin, database_url, tmp_path
):
    from pipelines.database.roles import grant_roles

    names, passwords, urls = roles
    first = grant_roles(
        postgres_admin,
        database_url,
        credentials_dir=tmp_path / "credentials",
        loader_role=names["loader"],
        analyst_role=names["analyst"],
        loader_password=passwords["loader"],
        analyst_password=passwords["analyst"],
    )
    again = grant_roles(
        postgres_admin,
        database_url,
        credentials_dir=tmp_path / "credentials",
        loader_role=names["loader"],
        analyst_role=names["analyst"],
    )

    assert [role.password for role in first] == ["environment", "environment"]
    assert [role.password for role in again] == ["unchanged", "unchanged"]
    assert query(urls["analyst"], "select current_user") == [(names["analyst"],)]  # the password still works
    assert not (tmp_path / "credentials").exists()  # nothing generated, nothing written
    assert query(urls["analyst"], "show default_transaction_read_only") == [("on",)]
