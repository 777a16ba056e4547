"""Least privilege in PostgreSQL: a `loader` role that owns the pipeline's schemas and a read-only `analyst`.

- **loader** owns `raw`, `raw_staging` (dlt's merge scratch), `staging`, `analytics` and `accounts` (the
  listeners and their encrypted refresh tokens) and everything in them: it lands plays in `raw`, lets dbt
  build `staging` and `analytics`, and alone reads `accounts`. It may create schemas and
  temporary tables in the pipeline's database and nothing else: no superuser, no CREATEROLE, no CREATEDB,
  and it does not own the database, so it cannot drop it.
- **analyst** can connect, read every table and view in `analytics` (including those dbt creates later,
  through default privileges) and nothing else: no access to `raw` (the API's raw JSON and, after export
  imports, optional IP data), `staging` or `accounts` (refresh tokens), and no write anywhere (no CREATE on
  any schema, no temporary tables; its sessions also default to read-only transactions).

- **listener_<account>** (`grant-roles --listener NAME`): like analyst, but sees only that account's rows in
  `analytics`, through row-level security that dbt re-attaches on every build
  (`dbt_project/macros/listener_row_security.sql`). It is a member of the group `listeners`, which holds the
  privileges, and `listener_access.listener_roles` (owned by the admin, so neither the loader nor a listener
  can change it) maps it to the account's Spotify user id. Members of `listeners` are the only roles the
  policies restrict, so the loader, analyst and the pipeline keep seeing every row.

The role the pipeline already runs as (`DATABASE_URL`'s user) becomes a member of `loader` and switches to
it on connect (`ALTER ROLE ... IN DATABASE ... SET role`), so existing setups keep working and every object
they create is owned by `loader`. Passwords come from `LOADER_PASSWORD` / `ANALYST_PASSWORD` /
`LISTENER_PASSWORD`; when a role is created without one, a random password is generated and written, with
the role's URL, to a file readable by its owner only. Passwords are never printed or logged. Running it again is safe.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor
from rich.console import Console

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError

PIPELINE_SCHEMAS = ("raw", "raw_staging", "staging", "analytics", "accounts")
ANALYST_SCHEMAS = ("analytics",)
PASSWORD_ENV = {"loader": "LOADER_PASSWORD", "analyst": "ANALYST_PASSWORD", "listener": "LISTENER_PASSWORD"}
# Names dbt_project/macros/listener_row_security.sql uses too: the group whose members the policies restrict,
# and the table mapping each listener role to a Spotify user id.
LISTENERS_GROUP = "listeners"
LISTENER_SCHEMA = "listener_access"
LISTENER_TABLE = "listener_roles"
# Relation kinds whose owner moves to the loader: tables, partitioned tables, views, materialized views,
# sequences, foreign tables. Indexes follow their table.
_OWNED_KINDS = ("r", "p", "v", "m", "S", "f")


@dataclass(frozen=True)
class GrantedRole:
    """What `grant_roles` did for one role, safe to print: the URL is redacted, the password never shown."""

    kind: str
    url: DatabaseUrl
    password: str  # "environment", "generated" or "unchanged"
    credentials_file: Path | None = None

    def describe(self) -> str:
        how = {
            "environment": f"password from {PASSWORD_ENV[self.kind]}",
            "generated": f"generated password saved with the URL in {self.credentials_file} (mode 0600)",
            "unchanged": f"password unchanged (set {PASSWORD_ENV[self.kind]} to change it)",
        }[self.password]
        return f"{self.kind}: {self.url.redacted()} ({how})"


def grant_roles(
    admin: DatabaseUrl,
    database: DatabaseUrl,
    *,
    credentials_dir: Path,
    loader_role: str = "loader",
    analyst_role: str = "analyst",
    loader_password: str | None = None,
    analyst_password: str | None = None,
) -> list[GrantedRole]:
    """Create or update the loader and analyst roles on `database` and set their privileges; idempotent.

    Args:
        admin: A superuser URL of the same server (its database name is ignored).
        database: The pipeline's database; its user becomes a member of the loader role.
        credentials_dir: Where generated passwords are written (one `<role>.url` file each, mode 0600).
        loader_role: Name of the loader role.
        analyst_role: Name of the analyst role.
        loader_password: The loader's password; None keeps an existing role's, or generates one.
        analyst_password: The analyst's password, likewise.

    Raises:
        ConfigError: `admin` is not a superuser, a role name is a superuser's, or the database is unreachable.
    """
    if loader_role == analyst_role:
        raise ConfigError("the loader and analyst roles need different names")
    conn = admin.with_dbname(database.dbname).connect()
    try:
        with conn, conn.cursor() as cur:
            _require_superuser(cur)
            granted = [
                _ensure_login_role(cur, "loader", loader_role, loader_password, database, credentials_dir),
                _ensure_login_role(cur, "analyst", analyst_role, analyst_password, database, credentials_dir),
            ]
            _loader_privileges(cur, loader_role, database)
            _analyst_privileges(cur, analyst_role, loader_role, database)
    finally:
        conn.close()
    return granted


def run_grant_roles(
    database: DatabaseUrl, *, admin_url: str | None, loader_role: str, analyst_role: str, console: Console
) -> list[GrantedRole]:
    """`python -m pipelines grant-roles`: roles on the pipeline's database, passwords from the environment.

    The admin connection is `admin_url` (ADMIN_DATABASE_URL), else the embedded server's superuser when
    DATABASE_URL is unset, else DATABASE_URL itself (which then has to be a superuser).
    """
    granted = grant_roles(
        _admin(admin_url, database),
        database,
        credentials_dir=paths.DATA_DIR / "roles",
        loader_role=loader_role,
        analyst_role=analyst_role,
        loader_password=os.environ.get(PASSWORD_ENV["loader"]) or None,
        analyst_password=os.environ.get(PASSWORD_ENV["analyst"]) or None,
    )
    for role in granted:
        console.print(role.describe(), highlight=False, soft_wrap=True)
    console.print(f"The pipeline runs on as before; give BI tools and reports the {analyst_role} role.")
    return granted


def grant_listener(
    admin: DatabaseUrl,
    database: DatabaseUrl,
    *,
    account: str,
    user_id: str,
    credentials_dir: Path,
    role: str | None = None,
    password: str | None = None,
) -> GrantedRole:
    """Create or update the read-only role that sees only `user_id`'s rows in `analytics`; idempotent.

    The role logs in, reads through the group `listeners` (whose grants dbt manages, table by table:
    `protect_listener_rows` in dbt_project/macros/listener_row_security.sql) and nothing else: no `raw`,
    `staging` or `accounts`, no writes, no temporary tables. Run `protect_listener_rows` afterwards for the marts
    built before the first listener existed.

    Args:
        admin: A superuser URL of the same server (its database name is ignored).
        database: The pipeline's database.
        account: The account's name, recorded beside the role.
        user_id: The account's Spotify user id: the rows the role sees.
        credentials_dir: Where a generated password is written (`<role>.url`, mode 0600).
        role: The role's name; default `listener_<account>` (see `listener_role_name`).
        password: Its password; None keeps an existing role's, or generates one.

    Raises:
        ConfigError: `admin` is not a superuser, `analytics` does not exist yet, or the role name belongs to
            another account or to a role that is not a listener's.
    """
    role = role or listener_role_name(account)
    conn = admin.with_dbname(database.dbname).connect()
    try:
        with conn, conn.cursor() as cur:
            _require_superuser(cur)
            if not _schema_exists(cur, "analytics"):
                raise ConfigError(
                    "there is no schema analytics to grant yet: run `python -m pipelines run` (or `transform`) "
                    "once, then grant-roles --listener again"
                )
            _ensure_listener_access(cur)
            _check_listener_role(cur, role, account)
            granted = _ensure_login_role(cur, "listener", role, password, database, credentials_dir)
            _read_only_login(cur, role, database)
            cur.execute(sql.SQL("grant {} to {}").format(sql.Identifier(LISTENERS_GROUP), sql.Identifier(role)))
            cur.execute(
                sql.SQL(
                    """
                    insert into {} as granted (role_name, account, user_id) values (%s, %s, %s)
                    on conflict (role_name) do update
                    set account = excluded.account, user_id = excluded.user_id, granted_at = now()
                    """
                ).format(sql.Identifier(LISTENER_SCHEMA, LISTENER_TABLE)),
                (role, account, user_id),
            )
    finally:
        conn.close()
    return granted


def run_grant_listener(
    database: DatabaseUrl, *, admin_url: str | None, account: str, listener_role: str | None, console: Console
) -> GrantedRole:
    """`python -m pipelines grant-roles --listener NAME`: the listener's role, then the policies on the marts.

    The admin connection is found as for `run_grant_roles`; the password comes from LISTENER_PASSWORD.

    Raises:
        ConfigError: no such account, or its Spotify user id is not known yet (and as `grant_listener`).
    """
    from pipelines import transform
    from pipelines.spotify.token_store import AccountStore

    found = AccountStore(database).get(account)
    if not found.user_id:
        raise ConfigError(
            f"account {found.name} has no Spotify user id yet, so its rows cannot be told from others': run "
            f"`python -m pipelines auth --account {found.name}` (or load it once), then grant-roles --listener again"
        )
    admin = _admin(admin_url, database)
    granted = grant_listener(
        admin,
        database,
        account=found.name,
        user_id=found.user_id,
        credentials_dir=paths.DATA_DIR / "roles",
        role=listener_role,
        password=os.environ.get(PASSWORD_ENV["listener"]) or None,
    )
    # The marts built before this listener existed get their policies now; every later build re-attaches them.
    transform.run_dbt(database, "run-operation", "protect_listener_rows", "--quiet")
    relations = listener_relations(admin, database)
    console.print(granted.describe(), highlight=False, soft_wrap=True)
    console.print(
        f"{granted.url.user} reads only account {found.name}'s rows (Spotify user {found.user_id}) in analytics: "
        f"{', '.join(relations.readable) or 'nothing yet'}. Not readable: {', '.join(relations.closed) or 'none'} "
        "(shared dimensions and views on staging; the views above give the names).",
        highlight=False,
        soft_wrap=True,
    )
    if relations.bypassing_owners:
        console.print(
            f"warning: the marts belong to {', '.join(relations.bypassing_owners)}, which row-level security does "
            "not bind, so listeners may not read the views on them: build them as the loader (`python -m pipelines "
            "grant-roles`, then the loader's URL as DATABASE_URL) and run a transform.",
            highlight=False,
            soft_wrap=True,
        )
    return granted


def listener_role_name(account: str) -> str:
    """`listener_<account>`, with '-' as '_' so that the name needs no quoting (bob-2: listener_bob_2)."""
    return "listener_" + account.replace("-", "_")


@dataclass(frozen=True)
class ListenerRelations:
    """What listeners may read in `analytics`, by name, and who owns the marts while bypassing RLS."""

    readable: list[str]
    closed: list[str]
    bypassing_owners: list[str]


def listener_relations(admin: DatabaseUrl, database: DatabaseUrl) -> ListenerRelations:
    """The relations in `analytics` that listeners may read, those they may not, and the owners of marts that
    row-level security does not bind (a superuser's views would show listeners every row, so they stay closed)."""
    conn = admin.with_dbname(database.dbname).connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                select c.relname, has_table_privilege(%s, c.oid, 'select'), r.rolname, r.rolsuper or r.rolbypassrls
                from pg_class as c
                join pg_namespace as n on n.oid = c.relnamespace
                join pg_roles as r on r.oid = c.relowner
                where n.nspname = 'analytics' and c.relkind = any(%s)
                order by c.relname
                """,
                (LISTENERS_GROUP, list(_OWNED_KINDS)),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    return ListenerRelations(
        readable=[name for name, readable, _, _ in rows if readable],
        closed=[name for name, readable, _, _ in rows if not readable],
        bypassing_owners=sorted({owner for _, _, owner, bypasses in rows if bypasses}),
    )


def _admin(admin_url: str | None, database: DatabaseUrl) -> DatabaseUrl:
    if admin_url:
        return DatabaseUrl.parse(admin_url, "ADMIN_DATABASE_URL")
    if DatabaseUrl.from_env() is None:
        from pipelines.database import embedded as embedded_postgres

        return embedded_postgres.start_server(paths.DATA_DIR / "postgres")
    return database


def _require_superuser(cur: Cursor) -> None:
    cur.execute("select rolsuper from pg_roles where rolname = current_user")
    if not cur.fetchone()[0]:
        raise ConfigError(
            "grant-roles needs a superuser connection to create roles and change owners: set ADMIN_DATABASE_URL "
            "(e.g. postgresql://postgres:password@host:5432/postgres)"
        )


def _ensure_login_role(
    cur: Cursor,
    kind: str,
    role: str,
    password: str | None,
    database: DatabaseUrl,
    credentials_dir: Path,
) -> GrantedRole:
    cur.execute("select rolsuper from pg_roles where rolname = %s", (role,))
    existing = cur.fetchone()
    if existing is not None and existing[0]:
        raise ConfigError(f"role {role!r} is a superuser; choose another --{kind}-role name")
    source = "environment" if password else ("unchanged" if existing else "generated")
    if password is None and existing is None:
        password = secrets.token_urlsafe(24)
    attributes = sql.SQL("login nosuperuser nocreatedb nocreaterole noreplication nobypassrls")
    statement = sql.SQL("{} role {} with {}").format(
        sql.SQL("alter" if existing else "create"), sql.Identifier(role), attributes
    )
    if password is not None:
        statement = sql.SQL("{} password {}").format(statement, sql.Literal(password))
    cur.execute(statement)
    url = DatabaseUrl(role, password or "unchanged", database.host, database.port, database.dbname)
    credentials_file = None
    if source == "generated":
        credentials_file = _write_private(credentials_dir / f"{role}.url", str(url) + "\n")
    return GrantedRole(kind, url, source, credentials_file)


def _loader_privileges(cur: Cursor, loader: str, database: DatabaseUrl) -> None:
    db, role = sql.Identifier(database.dbname), sql.Identifier(loader)
    # CREATE: dlt and dbt create their schemas if missing; TEMPORARY: dbt's incremental models use temp tables.
    cur.execute(sql.SQL("grant connect, create, temporary on database {} to {}").format(db, role))
    for schema in PIPELINE_SCHEMAS:
        name = sql.Identifier(schema)
        cur.execute(sql.SQL("create schema if not exists {} authorization {}").format(name, role))
        cur.execute(sql.SQL("alter schema {} owner to {}").format(name, role))
        for relation, kind in _relations(cur, schema):
            keyword = {"v": "view", "m": "materialized view", "S": "sequence", "f": "foreign table"}.get(kind, "table")
            cur.execute(
                sql.SQL("alter {} {}.{} owner to {}").format(sql.SQL(keyword), name, sql.Identifier(relation), role)
            )
    pipeline_role = database.user
    cur.execute("select rolsuper from pg_roles where rolname = %s", (pipeline_role,))
    row = cur.fetchone()
    if pipeline_role != loader and row is not None and not row[0]:
        # The existing pipeline role keeps working, as the loader: what it creates is the loader's.
        cur.execute(sql.SQL("grant {} to {}").format(role, sql.Identifier(pipeline_role)))
        cur.execute(
            sql.SQL("alter role {} in database {} set role = {}").format(
                sql.Identifier(pipeline_role), db, sql.Literal(loader)
            )
        )


def _read_only_login(cur: Cursor, role_name: str, database: DatabaseUrl) -> None:
    """`role_name` may connect, in read-only transactions, and holds no privilege in the pipeline's schemas."""
    db, role = sql.Identifier(database.dbname), sql.Identifier(role_name)
    # PUBLIC may create temporary tables by default, and before PostgreSQL 15 also tables in `public`.
    cur.execute(sql.SQL("revoke temporary on database {} from public").format(db))
    cur.execute(sql.SQL("revoke create on schema public from public"))
    cur.execute(sql.SQL("revoke all on database {} from {}").format(db, role))
    cur.execute(sql.SQL("grant connect on database {} to {}").format(db, role))
    cur.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
    for schema in PIPELINE_SCHEMAS:
        if _schema_exists(cur, schema):
            # Start from nothing, so a grant made by hand earlier cannot survive.
            _revoke_in_schema(cur, schema, role_name)


def _revoke_in_schema(cur: Cursor, schema: str, role: str) -> None:
    name = sql.Identifier(schema)
    cur.execute(sql.SQL("revoke all on all tables in schema {} from {}").format(name, sql.Identifier(role)))
    cur.execute(sql.SQL("revoke all on schema {} from {}").format(name, sql.Identifier(role)))


def _schema_exists(cur: Cursor, schema: str) -> bool:
    cur.execute("select exists (select from pg_namespace where nspname = %s)", (schema,))
    return cur.fetchone()[0]


def _ensure_listener_access(cur: Cursor) -> None:
    """The group `listeners`, and `listener_access.listener_roles`, which each member reads its own row of."""
    group = sql.Identifier(LISTENERS_GROUP)
    cur.execute("select rolcanlogin or rolsuper or rolbypassrls from pg_roles where rolname = %s", (LISTENERS_GROUP,))
    existing = cur.fetchone()
    if existing is None:
        # Roles are the server's, not the database's: another pipeline database may be creating it too.
        cur.execute(
            sql.SQL(
                "do $$ begin create role {} nologin; "
                "exception when duplicate_object or unique_violation then null; end $$"
            ).format(group)
        )
    elif existing[0]:
        raise ConfigError(
            f"role {LISTENERS_GROUP!r} exists and can log in or bypass row-level security, so it cannot be the "
            "group of listener roles; rename it (ALTER ROLE ... RENAME TO ...) and grant again"
        )
    # Owned by the admin: neither the loader (who owns the marts) nor a listener can change who sees what.
    schema, table = sql.Identifier(LISTENER_SCHEMA), sql.Identifier(LISTENER_SCHEMA, LISTENER_TABLE)
    cur.execute(sql.SQL("create schema if not exists {}").format(schema))
    cur.execute(
        sql.SQL(
            """
            create table if not exists {} (
                role_name name primary key,
                account text not null,
                user_id text not null,
                granted_at timestamptz not null default now()
            )
            """
        ).format(table)
    )
    cur.execute(
        sql.SQL("comment on table {} is %s").format(table),
        ("Listener roles (grant-roles --listener) and the Spotify user whose rows each sees in analytics.",),
    )
    # Every role evaluating the marts' policies reads it (the loader and analyst too), each its own row only.
    cur.execute(sql.SQL("alter table {} enable row level security").format(table))
    cur.execute(
        "select exists (select from pg_policy where polrelid = %s::regclass)", (f"{LISTENER_SCHEMA}.{LISTENER_TABLE}",)
    )
    if not cur.fetchone()[0]:
        cur.execute(sql.SQL("create policy own_row on {} using (role_name = current_user)").format(table))
    cur.execute(sql.SQL("grant usage on schema {} to public").format(schema))
    cur.execute(sql.SQL("revoke all on {} from public").format(table))
    cur.execute(sql.SQL("grant select on {} to public").format(table))
    # The group reads analytics (table by table, as dbt grants) and nothing of the other schemas.
    cur.execute(sql.SQL("grant usage on schema analytics to {}").format(group))
    for other in PIPELINE_SCHEMAS:
        if other != "analytics" and _schema_exists(cur, other):
            _revoke_in_schema(cur, other, LISTENERS_GROUP)


def _check_listener_role(cur: Cursor, role: str, account: str) -> None:
    cur.execute(
        sql.SQL("select account from {} where role_name = %s").format(sql.Identifier(LISTENER_SCHEMA, LISTENER_TABLE)),
        (role,),
    )
    mapped = cur.fetchone()
    if mapped is not None and mapped[0] != account:
        raise ConfigError(
            f"role {role!r} is account {mapped[0]}'s listener role already; name this one with --listener-role"
        )
    cur.execute("select pg_has_role(rolname, %s, 'member') from pg_roles where rolname = %s", (LISTENERS_GROUP, role))
    existing = cur.fetchone()
    if existing is not None and not existing[0]:
        raise ConfigError(
            f"role {role!r} exists and is not a listener role (a member of {LISTENERS_GROUP}); "
            "name the listener's role with --listener-role"
        )


def _analyst_privileges(cur: Cursor, analyst: str, loader: str, database: DatabaseUrl) -> None:
    role = sql.Identifier(analyst)
    _read_only_login(cur, analyst, database)
    for schema in ANALYST_SCHEMAS:
        name = sql.Identifier(schema)
        cur.execute(sql.SQL("grant usage on schema {} to {}").format(name, role))
        cur.execute(sql.SQL("grant select on all tables in schema {} to {}").format(name, role))
        # What dbt creates later is readable too: objects are the loader's (or, if the pipeline runs as a
        # superuser that cannot be switched to the loader, that user's).
        for owner in dict.fromkeys((loader, database.user)):
            cur.execute(
                sql.SQL("alter default privileges for role {} in schema {} grant select on tables to {}").format(
                    sql.Identifier(owner), name, role
                )
            )


def _relations(cur: Cursor, schema: str) -> Iterable[tuple[str, str]]:
    cur.execute(
        """
        select c.relname, c.relkind
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = %s and c.relkind = any(%s)
        order by c.relname
        """,
        (schema, list(_OWNED_KINDS)),
    )
    return cur.fetchall()


def _write_private(path: Path, text: str) -> Path:
    """Write `text` to `path`, readable by its owner only from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path
