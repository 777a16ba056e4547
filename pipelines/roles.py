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

The role the pipeline already runs as (`DATABASE_URL`'s user) becomes a member of `loader` and switches to
it on connect (`ALTER ROLE ... IN DATABASE ... SET role`), so existing setups keep working and every object
they create is owned by `loader`. Passwords come from `LOADER_PASSWORD` / `ANALYST_PASSWORD`; when a role
is created without one, a random password is generated and written, with the role's URL, to a file
readable by its owner only. Passwords are never printed or logged. Running it again is safe.
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
PASSWORD_ENV = {"loader": "LOADER_PASSWORD", "analyst": "ANALYST_PASSWORD"}
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
    if admin_url:
        admin = DatabaseUrl.parse(admin_url, "ADMIN_DATABASE_URL")
    elif DatabaseUrl.from_env() is None:
        from pipelines import embedded_postgres

        admin = embedded_postgres.start_server(paths.DATA_DIR / "postgres")
    else:
        admin = database
    granted = grant_roles(
        admin,
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


def _analyst_privileges(cur: Cursor, analyst: str, loader: str, database: DatabaseUrl) -> None:
    db, role = sql.Identifier(database.dbname), sql.Identifier(analyst)
    # PUBLIC may create temporary tables by default, and before PostgreSQL 15 also tables in `public`.
    cur.execute(sql.SQL("revoke temporary on database {} from public").format(db))
    cur.execute(sql.SQL("revoke create on schema public from public"))
    cur.execute(sql.SQL("revoke all on database {} from {}").format(db, role))
    cur.execute(sql.SQL("grant connect on database {} to {}").format(db, role))
    cur.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(role))
    for schema in PIPELINE_SCHEMAS:
        name = sql.Identifier(schema)
        # Start from nothing, so a grant made by hand earlier cannot survive.
        cur.execute(sql.SQL("revoke all on all tables in schema {} from {}").format(name, role))
        cur.execute(sql.SQL("revoke all on schema {} from {}").format(name, role))
        if schema in ANALYST_SCHEMAS:
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
