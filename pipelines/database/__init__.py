"""One database URL, understood the same way by dlt, dbt and Airflow.

`DATABASE_URL` (`postgresql://user:password@host:port/dbname`) is the single source of truth. dlt takes it
as credentials, dbt reads the `DBT_POSTGRES_*` variables that `profiles.yml` expects, and Airflow gets a
connection URI. The password is never part of anything printed: use `DatabaseUrl.redacted()` for messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import psycopg2
from psycopg2 import sql

from pipelines.errors import ConfigError, DatabaseUnavailable

_SCHEMES = {"postgresql", "postgres"}


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed PostgreSQL URL. `repr` hides the password so it cannot leak through logs."""

    user: str
    password: str
    host: str
    port: int
    dbname: str

    @classmethod
    def parse(cls, url: str, setting: str = "DATABASE_URL") -> DatabaseUrl:
        """Parse `postgresql://user:password@host:port/dbname`; raise ConfigError naming `setting` if malformed."""
        hint = f"{setting} must look like postgresql://user:password@host:5432/dbname"
        try:
            parts = urlsplit(url.strip())
            port = parts.port or 5432
        except ValueError:
            raise ConfigError(f"{setting} is not a valid URL (bad port?). {hint}") from None
        if parts.scheme not in _SCHEMES:
            raise ConfigError(f"{setting} has scheme {parts.scheme or '(none)'!r}, expected postgresql. {hint}")
        dbname = unquote(parts.path.lstrip("/"))
        missing = [
            name
            for name, value in (
                ("user", parts.username),
                ("password", parts.password),
                ("host", parts.hostname),
                ("database name", dbname),
            )
            if not value
        ]
        if missing:
            # dlt refuses credentials without a password, even where the server trusts everyone.
            raise ConfigError(f"{setting} is missing the {', '.join(missing)}. {hint}")
        return cls(
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            host=parts.hostname or "",
            port=port,
            dbname=dbname,
        )

    @classmethod
    def from_env(cls) -> DatabaseUrl | None:
        """The database named by `DATABASE_URL`, or None when it is unset."""
        url = os.environ.get("DATABASE_URL", "").strip()
        return cls.parse(url) if url else None

    def __str__(self) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.dbname, safe='')}"
        )

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()})"

    def redacted(self) -> str:
        """The URL with the password masked, for messages and logs."""
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.dbname}"

    def with_dbname(self, dbname: str) -> DatabaseUrl:
        return DatabaseUrl(self.user, self.password, self.host, self.port, dbname)

    def dbt_env(self) -> dict[str, str]:
        """The variables `profiles.yml` reads."""
        return {
            "DBT_POSTGRES_HOST": self.host,
            "DBT_POSTGRES_PORT": str(self.port),
            "DBT_POSTGRES_USER": self.user,
            "DBT_POSTGRES_PASSWORD": self.password,
            "DBT_POSTGRES_DBNAME": self.dbname,
        }

    def connect(self, connect_timeout: int = 10) -> psycopg2.extensions.connection:
        """A psycopg2 connection; connection failures become a ConfigError without the password."""
        try:
            return psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.dbname,
                connect_timeout=connect_timeout,
            )
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection refused"
            raise DatabaseUnavailable(f"cannot connect to {self.redacted()}: {reason}. Check DATABASE_URL.") from None


# Advisory locks are per database; this one is taken in the admin connection's (the first 8 bytes of
# sha256("spotify-history role setup"), as a signed 64-bit integer).
ROLE_SETUP_LOCK_KEY = 2_871_305_530_961_437_729


def ensure_role_and_database(admin: DatabaseUrl, role: str, password: str, dbname: str) -> DatabaseUrl:
    """Create (or update) a login role with a password and a database it owns; return its URL.

    `admin` must be a superuser connection. Idempotent, so every run can call it.
    """
    conn = admin.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            # Two setups at once (workers, test sessions) would fail "tuple concurrently updated": take turns.
            cur.execute("select pg_advisory_lock(%s)", (ROLE_SETUP_LOCK_KEY,))
            cur.execute("select 1 from pg_roles where rolname = %s", (role,))
            verb = "alter" if cur.fetchone() else "create"
            cur.execute(
                sql.SQL(verb + " role {} with login password {}").format(sql.Identifier(role), sql.Literal(password))
            )
            cur.execute("select pg_advisory_unlock(%s)", (ROLE_SETUP_LOCK_KEY,))
            cur.execute("select 1 from pg_database where datname = %s", (dbname,))
            if not cur.fetchone():
                cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(role)))
    finally:
        conn.close()
    return DatabaseUrl(role, password, admin.host, admin.port, dbname)


def drop_database(admin: DatabaseUrl, dbname: str) -> None:
    """Drop a database, disconnecting anyone still attached (tests clean up after themselves)."""
    conn = admin.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
    finally:
        conn.close()
