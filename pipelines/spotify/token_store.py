"""Where the listeners' refresh tokens live: `accounts.spotify_accounts`, encrypted with Fernet.

One row per listener (account), named by the user (`default`, `alice`, ...):

- `user_id` and `account_id`: the Spotify user (`GET /v1/me`'s `id` and `account_id`), null until known;
- `client_id`: the Spotify app the listener authorised (its secret stays in the environment or
  `.dlt/secrets.toml`);
- `refresh_token`: Fernet ciphertext, never the token itself;
- `authorised_at`: when the listener authorised. Spotify's refresh tokens expire 6 months later and refreshing
  does not extend that. Null when unknown (a token migrated from a single-listener setup);
- `status`: `active` (loaded), `needs_auth` (Spotify rejected the token: skipped until authorised again) or
  `paused` (skipped on purpose), with `status_detail` saying why;
- `last_load_at`: the last successful load.

Every worker and the CLI read the same rows, so a token Spotify rotated on one worker is the token the next run
uses anywhere: `AccountStore.save_rotated_token` commits before it returns. PUBLIC has no privilege on the schema:
only the pipeline's role (the `loader` after `grant-roles`) reads it, never `analyst`.

The key comes from `SPOTIFY_TOKEN_KEY`: one Fernet key (32 url-safe base64-encoded bytes), or several separated
by commas to rotate keys (the first encrypts, every one of them decrypts). Every machine that loads plays (each
Airflow worker, the CLI) needs the same key. When the variable is unset, as in the embedded local setup, the key
is read from `spotify-token.key` in the state dir (`pipelines.paths.token_key_file`), generated there with mode
0600 the first time a token is stored.

Neither keys nor tokens ever appear in an error, a `repr` or a log line.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from psycopg2.extensions import cursor as Cursor

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "SPOTIFY_TOKEN_KEY"
PRIVATE_MODE = 0o600
GENERATE_HINT = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
SCHEMA = "accounts"
TABLE = f"{SCHEMA}.spotify_accounts"
DEFAULT_ACCOUNT = "default"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
STATUSES = ("active", "needs_auth", "paused")
# Spotify: a refresh token expires 6 months after the user authorised; refreshing does not extend it.
TOKEN_LIFETIME_MONTHS = 6
EXPIRY_WARNING = timedelta(days=30)
# Serialises creating the schema and migrating a single-listener token between workers that start together
# (the first 8 bytes of sha256("spotify-history accounts"), as a signed 64-bit integer).
SCHEMA_LOCK_KEY = 3_114_955_407_219_870_263

DDL = f"""
create schema if not exists {SCHEMA};
create table if not exists {TABLE} (
    name text primary key check (name ~ '^{NAME_PATTERN.pattern}$'),
    user_id text,
    account_id text,
    client_id text not null,
    refresh_token bytea not null,
    legacy_token_fingerprint text,
    authorised_at timestamptz,
    status text not null default 'active' check (status in ('active', 'needs_auth', 'paused')),
    status_detail text,
    last_load_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
revoke all on schema {SCHEMA} from public;
revoke all on {TABLE} from public;
comment on table {TABLE} is
    'Listeners the pipeline loads. refresh_token is Fernet ciphertext (key: SPOTIFY_TOKEN_KEY); '
    'the token expires 6 months after authorised_at.';
comment on column {TABLE}.legacy_token_fingerprint is
    'sha256 of the SPOTIFY_REFRESH_TOKEN / .dlt/secrets.toml token this account was taken from, if any.';
"""

_COLUMNS = (
    "name, user_id, account_id, client_id, authorised_at, status, status_detail, last_load_at, created_at, updated_at"
)


class UnknownAccountError(ConfigError):
    """No account has that name."""


def validate_name(name: str) -> str:
    """`name` if it is a valid account name, else a ConfigError saying what one looks like."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _invalid_name(name)
    return name


def _invalid_name(name: object) -> ConfigError:
    # A long "name" is most likely a token pasted in the wrong place: it is not repeated back.
    shown = repr(name) if isinstance(name, str) and len(name) <= 40 else "the account name given"
    return ConfigError(
        f"{shown} is not a valid account name: use 1 to 40 lowercase letters, digits, '-' or '_', starting with a "
        "letter or a digit (e.g. alice, bob-2)"
    )


# -- accounts and their expiry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """One listener as stored; it never holds the refresh token (read it with `AccountStore.refresh_token`)."""

    name: str
    user_id: str | None
    account_id: str | None
    client_id: str
    authorised_at: datetime | None
    status: str
    status_detail: str | None
    last_load_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def expires_at(self) -> datetime | None:
        """When Spotify stops accepting the refresh token: 6 months after authorisation; None if unknown."""
        return token_expires_at(self.authorised_at)


def token_expires_at(authorised_at: datetime | None) -> datetime | None:
    """`authorised_at` plus 6 calendar months (the last day of a shorter month when the day does not exist)."""
    if authorised_at is None:
        return None
    moment = authorised_at.astimezone(UTC)
    index = moment.month - 1 + TOKEN_LIFETIME_MONTHS
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def days_until_expiry(account: Account, now: datetime) -> int | None:
    """Whole days until the account's token expires (negative once expired); None when authorised_at is unknown."""
    expires = account.expires_at
    return None if expires is None else (expires - now).days


def expiry_warning(account: Account, now: datetime) -> str | None:
    """One line naming the account and the command to run when its token expires within 30 days, else None."""
    expires = account.expires_at
    if expires is None or expires - now > EXPIRY_WARNING:
        return None
    days = (expires - now).days
    when = f"expired on {expires:%Y-%m-%d}" if expires <= now else f"expires {in_days(days)} ({expires:%Y-%m-%d})"
    return (
        f"the Spotify authorisation of account {account.name} {when}: "
        f"run `python -m pipelines auth --account {account.name}`"
    )


def in_days(days: int) -> str:
    """Whole days ahead in words: "in 12 days", "in 1 day", "within a day"."""
    return "within a day" if days < 1 else ("in 1 day" if days == 1 else f"in {days} days")


# -- storage -----------------------------------------------------------------------------------------------------


def ensure_schema(conn: psycopg2.extensions.connection) -> None:
    """Create schema `accounts` and its table if missing, in `conn`'s transaction (the caller commits).

    Idempotent and safe when several workers start at once (an advisory lock serialises the creation). PUBLIC
    gets no privilege on either: the role that creates them (the pipeline's, or the loader) is the only reader.
    """
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (TABLE,))
        if cur.fetchone()[0] is not None:
            return
        cur.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        cur.execute(DDL)


class AccountStore:
    """The accounts of one pipeline database.

    Args:
        database: The pipeline's database (`DATABASE_URL`); its role owns the table.
        cipher: Encrypts and decrypts refresh tokens; default: `SPOTIFY_TOKEN_KEY`, else the state dir's key file.
    """

    def __init__(self, database: DatabaseUrl, *, cipher: TokenCipher | None = None) -> None:
        self.database = database
        self._cipher = cipher
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"AccountStore({self.database.redacted()})"

    # -- reading ------------------------------------------------------------------------------------------------

    def list(self) -> list[Account]:
        """Every account, by name."""
        with self._cursor() as cur:
            cur.execute(f"select {_COLUMNS} from {TABLE} order by name")  # noqa: S608 (constants only)
            return [Account(*row) for row in cur.fetchall()]

    def active(self) -> list[Account]:
        """The accounts a load should read (status `active`), by name."""
        return [account for account in self.list() if account.status == "active"]

    def find(self, name: str) -> Account | None:
        """The account called `name`, or None."""
        with self._cursor() as cur:
            cur.execute(f"select {_COLUMNS} from {TABLE} where name = %s", (name,))  # noqa: S608
            row = cur.fetchone()
        return Account(*row) if row else None

    def get(self, name: str) -> Account:
        """The account called `name`; UnknownAccountError (naming the accounts there are) when there is none."""
        account = self.find(name)
        if account is None:
            raise self._unknown(name)
        return account

    def refresh_token(self, name: str) -> str:
        """The decrypted refresh token of account `name`. Never log or print it."""
        with self._cursor() as cur:
            cur.execute(f"select refresh_token from {TABLE} where name = %s", (name,))  # noqa: S608
            row = cur.fetchone()
        if row is None:
            raise self._unknown(name)
        cipher = self.cipher_for(name, create=False)
        if cipher is None:
            raise ConfigError(
                f"cannot decrypt the refresh token of account {name!r}: {KEY_ENV} is not set and there is no key "
                f"file at {paths.token_key_file()}. Set {KEY_ENV} to the key the tokens were stored with (every "
                f"Airflow worker and the CLI need the same one), or authorise again: "
                f"python -m pipelines auth --account {name}"
            )
        return cipher.decrypt(row[0], account=name)

    # -- writing ------------------------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        refresh_token: str,
        *,
        user_id: str | None,
        account_id: str | None = None,
        client_id: str,
        authorised_at: datetime | None,
        legacy_token_fingerprint: str | None = None,
        status: str = "active",
        status_detail: str | None = None,
    ) -> Account:
        """Store a listener's refresh token as account `name`, or re-authorise the account if it exists.

        Re-authorising replaces the token, `authorised_at` and the app, and makes the account `active` again; the
        ids are kept when the new ones are unknown. A token of another Spotify user than the account's is refused.

        Args:
            name: The account's name (see `validate_name`).
            refresh_token: The refresh token, stored encrypted.
            user_id: Spotify user id (`GET /v1/me`'s `id`); None when it could not be asked.
            account_id: `GET /v1/me`'s `account_id`, when Spotify sends it.
            client_id: The Spotify app the listener authorised.
            authorised_at: When the listener authorised (None: unknown). The token expires 6 months later.
            legacy_token_fingerprint: Fingerprint of the single-listener token this account was taken from.
            status: `active`, or `needs_auth` for a token Spotify already rejected.
            status_detail: Why the account has that status.
        """
        validate_name(name)
        _check_status(status)
        if not refresh_token or not refresh_token.strip():
            raise ConfigError(f"account {name}: the refresh token is empty")
        ciphertext = self.cipher_for(name, create=True).encrypt(refresh_token.strip())
        with self._cursor() as cur:
            cur.execute(f"select user_id from {TABLE} where name = %s for update", (name,))  # noqa: S608
            row = cur.fetchone()
            if row is not None and row[0] and user_id and row[0] != user_id:
                raise ConfigError(
                    f"account {name} is Spotify user {row[0]}, but this token belongs to {user_id}: store it under "
                    "another name"
                )
            cur.execute(
                f"""
                insert into {TABLE} as stored (
                    name, user_id, account_id, client_id, refresh_token, legacy_token_fingerprint, authorised_at,
                    status, status_detail
                )
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (name) do update set
                    user_id = coalesce(excluded.user_id, stored.user_id),
                    account_id = coalesce(excluded.account_id, stored.account_id),
                    client_id = excluded.client_id,
                    refresh_token = excluded.refresh_token,
                    legacy_token_fingerprint = excluded.legacy_token_fingerprint,
                    authorised_at = excluded.authorised_at,
                    status = excluded.status,
                    status_detail = excluded.status_detail,
                    updated_at = now()
                returning {_COLUMNS}
                """,  # noqa: S608 (constants only; values are parameters)
                (
                    name,
                    user_id,
                    account_id,
                    client_id,
                    psycopg2.Binary(ciphertext),
                    legacy_token_fingerprint,
                    authorised_at,
                    status,
                    status_detail,
                ),
            )
            return Account(*cur.fetchone())

    def save_rotated_token(self, name: str, new_token: str) -> None:
        """Store a refresh token Spotify rotated for `name`, committed before this returns (the old one is dead)."""
        if not new_token or not new_token.strip():
            raise ConfigError(f"account {name}: Spotify's rotated refresh token is empty; not stored")
        ciphertext = self.cipher_for(name, create=True).encrypt(new_token.strip())
        with self._cursor() as cur:
            cur.execute(
                f"update {TABLE} set refresh_token = %s, updated_at = now() where name = %s",  # noqa: S608
                (psycopg2.Binary(ciphertext), name),
            )
            if cur.rowcount == 0:
                raise self._unknown(name)
        log.info("account %s: Spotify rotated the refresh token; the new one is stored", name)

    def set_status(self, name: str, status: str, detail: str | None = None) -> Account:
        """Mark account `name` `active`, `needs_auth` or `paused`, with why (`detail`, shown by `accounts list`)."""
        _check_status(status)
        with self._cursor() as cur:
            cur.execute(
                f"update {TABLE} set status = %s, status_detail = %s, updated_at = now() "  # noqa: S608
                f"where name = %s returning {_COLUMNS}",
                (status, detail, name),
            )
            row = cur.fetchone()
        if row is None:
            raise self._unknown(name)
        return Account(*row)

    def record_load(self, name: str, at: datetime, *, user_id: str | None = None) -> None:
        """Note a successful load of `name` at `at` (never moving back), and its Spotify user id when unknown."""
        with self._cursor() as cur:
            cur.execute(
                f"""
                update {TABLE} set
                    last_load_at = greatest(last_load_at, %s),
                    user_id = coalesce(user_id, %s),
                    updated_at = now()
                where name = %s
                """,  # noqa: S608
                (at, user_id, name),
            )
            if cur.rowcount == 0:
                raise self._unknown(name)

    # -- internals ------------------------------------------------------------------------------------------------

    @contextmanager
    def _cursor(self, *, lock: bool = False) -> Iterator[Cursor]:
        """A cursor in one transaction, committed when the block ends (rolled back on an error)."""
        conn = self.database.connect()
        try:
            if not self._schema_ready:
                with conn:
                    ensure_schema(conn)
                self._schema_ready = True
            with conn, conn.cursor() as cur:
                if lock:
                    cur.execute("select pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                yield cur
        finally:
            conn.close()

    def cipher_for(self, name: str, *, create: bool) -> TokenCipher | None:
        """The key for account `name`'s token, loaded once (`create`: generate the key file if there is none)."""
        if self._cipher is None:
            try:
                self._cipher = load_cipher(create=create)
            except ConfigError as exc:
                raise ConfigError(f"account {name}: {exc}") from None
        return self._cipher

    def _unknown(self, name: str) -> ConfigError:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            return _invalid_name(name)
        with self._cursor() as cur:
            cur.execute(f"select name from {TABLE} order by name")  # noqa: S608
            names = [row[0] for row in cur.fetchall()]
        there = f"the accounts are {', '.join(names)}" if names else "there are no accounts yet"
        return UnknownAccountError(f"no account named {name!r} ({there}): see `python -m pipelines accounts list`")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")


# -- encryption -----------------------------------------------------------------------------------------------------


class TokenCipher:
    """Encrypts and decrypts refresh tokens with one or more Fernet keys; `repr` names only where they came from.

    Args:
        keys: Fernet keys (url-safe base64 text or bytes); the first encrypts, all of them decrypt.
        source: Where the keys came from, in words, for error messages (`SPOTIFY_TOKEN_KEY` or the key file).
        setting: The setting a user fixes when a key is malformed (named in the error).
    """

    def __init__(self, keys: Sequence[str | bytes], source: str, setting: str = KEY_ENV) -> None:
        if not keys:
            raise ConfigError(f"{setting} holds no key. Generate one with: {GENERATE_HINT}")
        try:
            fernets = [Fernet(key) for key in keys]
        except (ValueError, TypeError):
            # Fernet's own message is generic, but never risk quoting the key: say what a key looks like instead.
            raise ConfigError(
                f"{setting} is not a valid Fernet key (32 url-safe base64-encoded bytes, several separated by "
                f"commas). Generate one with: {GENERATE_HINT}"
            ) from None
        self._fernet = MultiFernet(fernets)
        self.source = source

    def __repr__(self) -> str:
        return f"TokenCipher(source={self.source!r})"

    def encrypt(self, token: str) -> bytes:
        """The Fernet ciphertext of `token` (it carries its own timestamp and MAC)."""
        return self._fernet.encrypt(token.encode("utf-8"))

    def decrypt(self, ciphertext: bytes, *, account: str) -> str:
        """The token of `account`, or a one-line ConfigError when these keys did not encrypt it."""
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise ConfigError(undecryptable(account, self.source)) from None


def undecryptable(account: str, source: str) -> str:
    """Why the token of `account` cannot be read, and how to fix it (no key, no token)."""
    return (
        f"cannot decrypt the refresh token of account {account!r} with {source}: it was stored with another key. "
        f"Set {KEY_ENV} to the key it was stored with (every Airflow worker and the CLI need the same one), "
        f"or authorise again: python -m pipelines auth --account {account}"
    )


def load_cipher(*, create: bool) -> TokenCipher | None:
    """The cipher from `SPOTIFY_TOKEN_KEY`, else from the key file; None when neither exists and not `create`.

    Args:
        create: Generate the key file (mode 0600) when `SPOTIFY_TOKEN_KEY` is unset and there is none yet;
            only storing a token needs that, reading one never does.

    Raises:
        ConfigError: The key is malformed, or the key file cannot be read or written.
    """
    configured = os.environ.get(KEY_ENV, "").strip()
    if configured:
        keys = [key.strip() for key in configured.split(",") if key.strip()]
        return TokenCipher(keys, KEY_ENV)
    path = paths.token_key_file()
    source = f"the key file {path} ({KEY_ENV} is not set)"
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"cannot read the token key file {path} ({reason}): fix it, or set {KEY_ENV}") from None
    return TokenCipher([key], source, setting=f"the token key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new key to `path`, readable by its owner only from the moment it exists; a racing writer wins."""
    paths.ensure_writable(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_MODE)  # the umask could only have removed bits; make it exact
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # A hard link appears whole or not at all, and never replaces a key another process wrote meanwhile.
            os.link(temporary, path)
        except FileExistsError:
            return
        except OSError:  # a file system without hard links: replacing is atomic too, only not race-free
            if path.exists():
                return
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    log.warning(
        "generated the key that encrypts stored refresh tokens: %s (mode 0600). Keep it; every machine that loads "
        "plays needs the same key, as the file or as %s",
        path,
        KEY_ENV,
    )
