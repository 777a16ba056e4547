"""Accounts: the listeners one pipeline loads. What `auth --account` and `accounts ...` do.

The accounts and their encrypted refresh tokens are kept by `pipelines.spotify.token_store` (`AccountStore`); this
module checks a token with Spotify (a refresh, then `GET /v1/me` for the user's ids), adds, pauses and resumes
accounts, reports them, and turns a single-listener setup (`SPOTIFY_REFRESH_TOKEN` or `.dlt/secrets.toml`) into
the account `default` (`ensure_default_account`), so such a setup keeps working without any change.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from psycopg2.extensions import cursor as Cursor
from rich.console import Console
from rich.markup import escape

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError, first_line
from pipelines.spotify import settings
from pipelines.spotify.token_store import (
    DEFAULT_ACCOUNT,
    KEY_ENV,
    TABLE,
    Account,
    AccountStore,
    days_until_expiry,
    expiry_warning,
    in_days,
    validate_name,
)

log = logging.getLogger(__name__)


# -- Spotify: app settings and the token's owner -----------------------------------------------------------------


@dataclass(frozen=True)
class SpotifyApp:
    """The app credentials and endpoints, as the loader reads them (environment, then `.dlt/secrets.toml`)."""

    client_id: str
    client_secret: str = field(repr=False)
    api_url: str
    accounts_url: str


def app_setting(env: str, secret_key: str) -> str:
    """One of the app's credentials: the environment, else `[sources.spotify]` in `.dlt/secrets.toml`."""
    import dlt

    value = os.environ.get(env) or dlt.secrets.get(f"sources.spotify.{secret_key}")
    if not value:
        raise ConfigError(
            f"{env} is not set: create an app at https://developer.spotify.com/dashboard, then export {env} "
            f"(or put {secret_key} under [sources.spotify] in .dlt/secrets.toml)"
        )
    return str(value)


def spotify_app(client_id: str | None = None) -> SpotifyApp:
    """SPOTIFY_CLIENT_ID/SECRET (or `.dlt/secrets.toml`) and SPOTIFY_API_URL/ACCOUNTS_URL (or Spotify's).

    `client_id` names another app (development-mode apps take 5 listeners each): its secret comes from
    `SPOTIFY_CLIENT_SECRET_<client_id>`, else `[sources.spotify.apps.<client_id>]` in `.dlt/secrets.toml`.
    """
    from pipelines.load import check_urls

    urls = {
        "api_url": os.environ.get("SPOTIFY_API_URL") or settings.DEFAULT_API_URL,
        "accounts_url": os.environ.get("SPOTIFY_ACCOUNTS_URL") or settings.DEFAULT_ACCOUNTS_URL,
    }
    check_urls(urls)
    default_id = app_setting("SPOTIFY_CLIENT_ID", "client_id")
    if client_id is None or client_id == default_id:
        return SpotifyApp(default_id, app_setting("SPOTIFY_CLIENT_SECRET", "client_secret"), **urls)
    return SpotifyApp(client_id, _other_app_secret(client_id), **urls)


def _other_app_secret(client_id: str) -> str:
    import dlt

    if not re.fullmatch(r"[A-Za-z0-9]{1,64}", client_id):
        raise ConfigError(f"{client_id[:64]!r} is not a Spotify client id (letters and digits)")
    env = f"SPOTIFY_CLIENT_SECRET_{client_id}"
    secret = os.environ.get(env) or dlt.secrets.get(f"sources.spotify.apps.{client_id}.client_secret")
    if not secret:
        raise ConfigError(
            f"the Spotify app {client_id} has no secret configured: export {env} (or put client_secret under "
            f"[sources.spotify.apps.{client_id}] in .dlt/secrets.toml)"
        )
    return str(secret)


@dataclass(frozen=True)
class SpotifyIdentity:
    """Whose a refresh token is, and the token to keep: the one Spotify rotated it to, if it did."""

    user_id: str
    account_id: str | None
    refresh_token: str = field(repr=False)
    rotated: bool = False


def identify(
    refresh_token: str,
    app: SpotifyApp,
    *,
    on_rotated: Callable[[str], None] | None = None,
    backoff_base_seconds: float | None = None,
) -> SpotifyIdentity:
    """Refresh `refresh_token` at the accounts service and read `GET /v1/me` with the access token.

    Raises:
        SpotifyAuthError: Spotify rejected the token or the app (the listener has to authorise again).
        SpotifyApiError: Spotify could not be reached or answered something unusable.
    """
    from pipelines.spotify.helpers import SpotifyApiError, SpotifyClient

    rotated: list[str] = []

    def keep(token: str) -> None:
        rotated.append(token)
        if on_rotated is not None:
            on_rotated(token)

    client = SpotifyClient(
        client_id=app.client_id,
        client_secret=app.client_secret,
        refresh_token=refresh_token,
        api_url=app.api_url,
        accounts_url=app.accounts_url,
        on_refresh_token_rotated=keep,
        backoff_base_seconds=backoff_base_seconds,
    )
    me = client.get("/me")
    user_id = me.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise SpotifyApiError("GET /me answered without a user id")
    account_id = me.get("account_id")
    return SpotifyIdentity(
        user_id=user_id,
        account_id=str(account_id) if account_id else None,
        refresh_token=rotated[-1] if rotated else refresh_token,
        rotated=bool(rotated),
    )


# -- the single-listener setup becomes the account `default` -------------------------------------------------------


@dataclass(frozen=True)
class ConfiguredToken:
    """The refresh token a single-listener setup configures (`SPOTIFY_REFRESH_TOKEN` or `.dlt/secrets.toml`).

    `token` is the one to use: a token Spotify rotated into the state dir's token file wins over the `configured`
    one it descends from. `fingerprint` is the configured token's: what the user controls and may replace.
    """

    token: str = field(repr=False)
    configured: str = field(repr=False)
    fingerprint: str
    source: str
    authorised_at: datetime | None
    secrets_file: Path
    token_file: Path

    @property
    def from_token_file(self) -> bool:
        return self.token != self.configured


def configured_token(secrets_file: Path | None = None, token_file: Path | None = None) -> ConfiguredToken | None:
    """The single-listener refresh token, found as the loader finds it; None when none is configured."""
    from pipelines.spotify.secrets_file import fingerprint, read_rotated_token, read_spotify_secrets

    secrets_file = secrets_file or paths.secrets_file()
    token_file = token_file or paths.rotated_token_file()
    try:
        stored = read_spotify_secrets(secrets_file)
    except OSError:
        stored = {}
    except ValueError as exc:  # not TOML: say so (the message never quotes the file), rather than "no token"
        raise ConfigError(str(exc)) from None
    from_file = stored.get("refresh_token") if isinstance(stored.get("refresh_token"), str) else None
    from_env = os.environ.get("SPOTIFY_REFRESH_TOKEN", "").strip() or None
    configured = from_env or from_file
    if not configured:
        return None
    # `auth` records when it wrote the token; the date holds only for that very token.
    authorised_at = _timestamp(stored.get("authorised_at")) if configured == from_file else None
    return ConfiguredToken(
        token=read_rotated_token(token_file, configured) or configured,
        configured=configured,
        fingerprint=fingerprint(configured),
        source="SPOTIFY_REFRESH_TOKEN" if from_env else str(secrets_file),
        authorised_at=authorised_at,
        secrets_file=secrets_file,
        token_file=token_file,
    )


def ensure_default_account(
    database: DatabaseUrl,
    *,
    store: AccountStore | None = None,
    secrets_file: Path | None = None,
    token_file: Path | None = None,
) -> Account | None:
    """Store a single-listener setup's refresh token as the account `default`; the account stored, or None.

    It does so when no account is stored yet and a token is configured the old way (`SPOTIFY_REFRESH_TOKEN`, or
    `.dlt/secrets.toml` with the state dir's rotated-token file winning). The Spotify user is asked for
    (`GET /v1/me`) but not required: unreachable, it stays unknown. `authorised_at` is what `auth` recorded in
    `.dlt/secrets.toml` for that token, else unknown.

    Later, `default` follows a new token configured that way when the stored one was rejected (`needs_auth`),
    or when `auth` wrote the new one after the stored one was authorised. A live stored token is never replaced
    by a configuration of unknown age (a machine with a stale secrets file, say), and a configured token is
    tried once: refused, it is remembered by its fingerprint and not sent to Spotify again.

    Safe to call from every run and every worker: only the first caller migrates, under a database lock.
    """
    configured = configured_token(secrets_file, token_file)
    if configured is None:
        return None
    store = store or AccountStore(database)
    with store._cursor(lock=True) as cur:
        cur.execute(
            f"select name, status, authorised_at, legacy_token_fingerprint from {TABLE}"  # noqa: S608
        )
        rows = {name: (status, authorised_at, legacy) for name, status, authorised_at, legacy in cur.fetchall()}
        stored = rows.get(DEFAULT_ACCOUNT)
        if rows and not _replaces(stored, configured):
            return None
        # Held while Spotify is asked, so a second worker cannot migrate (and refresh) the same token at once.
        return _store_configured(store, configured, replacing=bool(rows))


def _replaces(stored: tuple[str, datetime | None, str | None] | None, configured: ConfiguredToken) -> bool:
    """Whether the configured token should replace the stored `default`: the newest authorisation wins."""
    if stored is None:
        return False
    status, authorised_at, legacy = stored
    if legacy == configured.fingerprint:
        return False  # the configuration did not change since it was stored (or last tried)
    # Only `auth` records an authorisation date with the token it writes: a live stored token is never replaced by
    # a configuration of unknown age (a machine with a stale secrets file, say), only a rejected one is.
    newer = configured.authorised_at is not None and (authorised_at is None or configured.authorised_at > authorised_at)
    return status == "needs_auth" or newer


def _store_configured(store: AccountStore, configured: ConfiguredToken, *, replacing: bool) -> Account | None:
    from pipelines.load import persist_rotated_token
    from pipelines.load.per_account import rejected_detail
    from pipelines.spotify.helpers import SpotifyApiError, SpotifyAuthError, SpotifyTokenRejected

    try:
        app = spotify_app()
    except ConfigError as exc:
        log.warning("not storing the refresh token of %s as account `default`: %s", configured.source, exc)
        return None
    # A token Spotify rotates while it is checked also goes where the single-listener loader reads it.
    legacy_persist = persist_rotated_token(
        configured.secrets_file,
        configured.token_file,
        configured.configured,
        in_use_from_token_file=configured.from_token_file,
    )
    user_id = account_id = detail = None
    status, token = "active", configured.token
    try:
        identity = identify(configured.token, app, on_rotated=legacy_persist, backoff_base_seconds=0.2)
    except SpotifyAuthError as exc:
        if replacing:
            _tried(store, configured, "Spotify refused it too")
            return None
        status, detail = "needs_auth", rejected_detail() if isinstance(exc, SpotifyTokenRejected) else first_line(exc)
    except SpotifyApiError as exc:
        log.warning("could not ask Spotify whose token %s holds (%s); storing it all the same", configured.source, exc)
    else:
        user_id, account_id, token = identity.user_id, identity.account_id, identity.refresh_token
    try:
        account = store.add(
            DEFAULT_ACCOUNT,
            token,
            user_id=user_id,
            account_id=account_id,
            client_id=app.client_id,
            authorised_at=configured.authorised_at,
            legacy_token_fingerprint=configured.fingerprint,
            status=status,
            status_detail=detail,
        )
    except ConfigError as exc:  # the configured token is another listener's
        _tried(store, configured, first_line(exc))
        return None
    if replacing:
        log.info("account default now uses the refresh token configured in %s", configured.source)
    else:
        log.info("stored the refresh token configured in %s as the account `default`", configured.source)
    return account


def _tried(store: AccountStore, configured: ConfiguredToken, why: str) -> None:
    """Remember a configured token that could not replace `default`'s, so later runs do not ask Spotify again."""
    log.warning("account default keeps its stored token, not the one in %s: %s", configured.source, why)
    with store._cursor() as cur:
        cur.execute(
            f"update {TABLE} set legacy_token_fingerprint = %s where name = %s",  # noqa: S608
            (configured.fingerprint, DEFAULT_ACCOUNT),
        )


# -- what the commands do ----------------------------------------------------------------------------------------


def read_refresh_token(stream: TextIO) -> str:
    """One refresh token from standard input (its first line, stripped); asked without echo on a terminal."""
    line = getpass.getpass("Spotify refresh token (not shown): ") if stream.isatty() else stream.readline()
    token = line.strip()
    if not token:
        raise ConfigError(
            "no refresh token on standard input: pipe it in, e.g. "
            "`python -m pipelines accounts add NAME --refresh-token-stdin < token.txt`"
        )
    return token


def parse_authorised_at(text: str | None, now: datetime) -> datetime | None:
    """`--authorised-at YYYY-MM-DD` as midnight UTC of that day; None when not given."""
    if text is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError("--authorised-at must be a date, YYYY-MM-DD") from None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if moment > now:
        raise ConfigError(f"--authorised-at {day} is in the future")
    return moment


def add_account(
    database: DatabaseUrl,
    name: str,
    refresh_token: str,
    *,
    authorised_at: datetime | None = None,
    now: datetime | None = None,
    store: AccountStore | None = None,
    client_id: str | None = None,
) -> Account:
    """`accounts add`: check `refresh_token` with Spotify (refresh, then `GET /v1/me`) and store it as `name`.

    The token stored is the one Spotify rotated it to, if it did (the old one then no longer works), else the
    one given. `authorised_at` defaults to now: a token authorised earlier expires earlier than shown.
    `client_id` names the app the listener authorised, when not the default one (`spotify_app`).
    """
    from pipelines.spotify.helpers import SpotifyApiError, SpotifyAuthError

    validate_name(name)
    app = _account_app(name, client_id)  # before anything is stored: a missing secret is the first thing said
    store = store or AccountStore(database)
    store.list()  # the database and its schema first: a token Spotify rotates must have somewhere to go
    store.cipher_for(name, create=True)
    if name != DEFAULT_ACCOUNT:
        ensure_default_account(database, store=store)  # a single listener's token stays theirs, as `default`
    try:
        identity = identify(refresh_token, app)
    except (SpotifyAuthError, SpotifyApiError) as exc:
        raise PipelineError(f"account {name} not added: {first_line(exc)}") from None
    return store.add(
        name,
        identity.refresh_token,
        user_id=identity.user_id,
        account_id=identity.account_id,
        client_id=app.client_id,
        authorised_at=authorised_at or now or datetime.now(UTC),
    )


def run_account_auth(
    name: str,
    *,
    database: DatabaseUrl | None,
    redirect_uri: str | None,
    open_browser: bool,
    timeout_seconds: float,
    console: Console,
    client_id: str | None = None,
) -> Account | None:
    """`auth --account NAME`: authorise in the browser (PKCE), then store the listener as account `name`.

    For `default`, the token also goes to `.dlt/secrets.toml` with the date it was authorised, as before, so a
    single-listener setup reads it there. `database` None (no DATABASE_URL, `default` only): the account is
    stored from that file on the first run (`ensure_default_account`). `client_id` names the app to authorise,
    when not the default one (`spotify_app`).
    """
    from pipelines.spotify.auth import authorize
    from pipelines.spotify.helpers import SpotifyApiError, SpotifyAuthError
    from pipelines.spotify.secrets_file import fingerprint, update_refresh_token, write_spotify_secrets

    validate_name(name)
    app = _account_app(name, client_id)
    store = AccountStore(database) if database is not None else None
    if store is not None:
        store.list()  # the database first: fail before the user goes through the browser
        store.cipher_for(name, create=True)
        if name != DEFAULT_ACCOUNT:
            ensure_default_account(database, store=store)
    redirect_uri = redirect_uri or settings.DEFAULT_REDIRECT_URI
    console.print(f"Waiting for Spotify to redirect to {redirect_uri} (register it in your app's settings).")
    refresh_token = authorize(
        client_id=app.client_id,
        client_secret=app.client_secret,
        accounts_url=app.accounts_url,
        redirect_uri=redirect_uri,
        open_browser=open_browser,
        timeout_seconds=timeout_seconds,
        on_url=lambda url: console.print(f"Open this URL to authorise:\n{url}", soft_wrap=True),
    )
    authorised_at = datetime.now(UTC)
    secrets_file = paths.secrets_file()
    if name == DEFAULT_ACCOUNT:
        write_spotify_secrets(
            secrets_file,
            client_id=app.client_id,
            client_secret=app.client_secret,
            refresh_token=refresh_token,
            authorised_at=authorised_at.isoformat(timespec="seconds"),
        )
        console.print(f"[bold green]authorised:[/] refresh token saved to {secrets_file} (mode 0600, git-ignored).")
    if store is None:
        console.print(
            "The CLI and `make run` read it from there, and keep it as the account `default` in the pipeline's "
            "database from the first run on; see README, 'Accounts: several listeners'."
        )
        return None
    try:
        identity = identify(refresh_token, app)
    except SpotifyAuthError as exc:
        raise PipelineError(f"account {name} not stored: {first_line(exc)}") from None
    except SpotifyApiError as exc:
        console.print(f"[bold yellow]warning:[/] could not read GET /v1/me ({escape(first_line(exc))})", soft_wrap=True)
        user_id = account_id = None
        token = refresh_token
    else:
        user_id, account_id, token = identity.user_id, identity.account_id, identity.refresh_token
        if identity.rotated and name == DEFAULT_ACCOUNT:
            update_refresh_token(secrets_file, token)  # the one just written no longer works
    account = store.add(
        name,
        token,
        user_id=user_id,
        account_id=account_id,
        client_id=app.client_id,
        authorised_at=authorised_at,
        # What .dlt/secrets.toml holds now: `ensure_default_account` sees nothing new to take from it.
        legacy_token_fingerprint=fingerprint(token) if name == DEFAULT_ACCOUNT else None,
    )
    console.print(
        f"[bold green]authorised:[/] account {name} (Spotify user {escape(user_id or 'unknown')}) stored in "
        f"{database.redacted()}, token encrypted; it expires on {account.expires_at:%Y-%m-%d}. Every machine that "
        f"loads needs the same {KEY_ENV}; see README, 'Accounts: several listeners'.",
        soft_wrap=True,
    )
    return account


def _account_app(name: str, client_id: str | None) -> SpotifyApp:
    """The app account `name` authorises: `client_id`'s, else the default one.

    `default` stays with the default app: its token is also the single-listener setup's, which
    `.dlt/secrets.toml` keeps with that app's credentials.
    """
    app = spotify_app(client_id)
    if name == DEFAULT_ACCOUNT and client_id is not None and app.client_id != spotify_app().client_id:
        raise ConfigError(
            f"the account {DEFAULT_ACCOUNT} uses the default app (SPOTIFY_CLIENT_ID): store a listener of the app "
            f"{client_id} under another account name"
        )
    return app


def pause_account(store: AccountStore, name: str, now: datetime | None = None) -> Account:
    """`accounts pause`: loads skip the account until it is resumed (its plays and token stay)."""
    store.get(name)
    return store.set_status(name, "paused", f"since {now or datetime.now(UTC):%Y-%m-%d}")


def resume_account(store: AccountStore, name: str) -> Account:
    """`accounts resume`: load a paused account again; one that needs authorising has to go through `auth`."""
    account = store.get(name)
    if account.status == "needs_auth":
        why = f" ({account.status_detail})" if account.status_detail else ""
        raise ConfigError(
            f"account {name} needs a new authorisation{why}: run `python -m pipelines auth --account {name}`, "
            "which makes it active again"
        )
    if account.status == "active":
        return account
    return store.set_status(name, "active", None)


# -- `accounts list` ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountReport:
    """One account with what the pipeline holds of it: plays in raw, open gaps (None: user unknown)."""

    account: Account
    plays: int | None
    open_gaps: int | None


def account_reports(database: DatabaseUrl, *, store: AccountStore | None = None) -> list[AccountReport]:
    """Every account (a single-listener setup's token migrated first) with its stored plays and open gaps.

    Open gaps are the gaps recorded in `raw.gaps` that `analytics.coverage` (as of the last transform) does not
    show as filled by an imported export.
    """
    store = store or AccountStore(database)
    ensure_default_account(database, store=store)
    accounts = store.list()
    users = [account.user_id for account in accounts if account.user_id]
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            plays = _counts_by_user(cur, "raw.recently_played", _PLAYS_SQL, users)
            gaps = _counts_by_user(cur, "raw.gaps", _open_gaps_sql(cur), users)
    finally:
        conn.close()
    return [
        AccountReport(
            account,
            plays.get(account.user_id, 0) if account.user_id else None,
            gaps.get(account.user_id, 0) if account.user_id else None,
        )
        for account in accounts
    ]


_PLAYS_SQL = "select user_id, count(*) from raw.recently_played where user_id = any(%s) group by 1"


def _counts_by_user(cur: Cursor, table: str, statement: str, users: Sequence[str]) -> dict[str, int]:
    cur.execute("select to_regclass(%s)", (table,))
    if not users or cur.fetchone()[0] is None:
        return {}
    cur.execute(statement, (list(users),))
    return {user: int(count) for user, count in cur.fetchall()}


def _open_gaps_sql(cur: Cursor) -> str:
    cur.execute("select to_regclass('analytics.coverage')")
    if cur.fetchone()[0] is None:
        return "select user_id, count(*) from raw.gaps where user_id = any(%s) group by 1"
    return """
        select gaps.user_id, count(*)
        from raw.gaps as gaps
        where
            gaps.user_id = any(%s)
            and not exists (
                select from analytics.coverage as coverage
                where
                    coverage.user_id = gaps.user_id
                    and coverage.content_type = 'track'
                    and coverage.gap_status = 'filled'
                    and coverage.covered_from <= gaps.gap_from
                    and coverage.covered_to >= gaps.gap_to
            )
        group by 1
    """


HEADER = ("account", "user id", "authorised", "expires", "last load", "plays", "open gaps", "status")
_RIGHT_ALIGNED = {"plays", "open gaps"}


APP_COLUMN = "app"  # after "user id", only when the accounts use more than one Spotify app


def render_reports(reports: Sequence[AccountReport], now: datetime) -> list[str]:
    """`accounts list`'s lines: a header, then one aligned line per account.

    The column `app` (each account's client id) is there only when the accounts use more than one app.
    """
    if not reports:
        return [
            "no accounts yet: add one with `python -m pipelines auth --account NAME` "
            "or `python -m pipelines accounts add NAME --refresh-token-stdin`"
        ]
    header, rows = HEADER, [_cells(report, now) for report in reports]
    if len({report.account.client_id for report in reports}) > 1:
        at = HEADER.index("user id") + 1
        header = (*HEADER[:at], APP_COLUMN, *HEADER[at:])
        rows = [(*row[:at], report.account.client_id, *row[at:]) for row, report in zip(rows, reports, strict=True)]
    rows = [header, *rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if header[column] in _RIGHT_ALIGNED else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def expiry_warnings(accounts: Sequence[Account], now: datetime) -> list[str]:
    """One line per account whose token expires within 30 days (or has expired), naming the command to run."""
    return [warning for account in accounts if (warning := expiry_warning(account, now))]


def _cells(report: AccountReport, now: datetime) -> tuple[str, ...]:
    account = report.account
    days = days_until_expiry(account, now)
    if days is None:
        expires = "unknown"
    elif account.expires_at is not None and account.expires_at <= now:
        expires = "expired"
    else:
        expires = in_days(days)
    status = account.status + (f" ({account.status_detail})" if account.status_detail else "")
    return (
        account.name,
        account.user_id or "unknown",
        f"{account.authorised_at.astimezone(UTC):%Y-%m-%d}" if account.authorised_at else "unknown",
        expires,
        f"{account.last_load_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if account.last_load_at else "never",
        f"{report.plays:,}" if report.plays is not None else "-",
        f"{report.open_gaps:,}" if report.open_gaps is not None else "-",
        status,
    )


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- which listener a per-listener command is about --------------------------------------------------------------


def readable_accounts(database: DatabaseUrl) -> list[Account] | None:
    """Every stored account, by name; [] when none is stored, None when this role may not read them (`analyst`).

    Reads only: unlike `AccountStore`, it never creates the schema, so read-only roles can call it.
    """
    from pipelines.spotify.token_store import SCHEMA

    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            # to_regclass itself fails without USAGE on the schema: ask about the privilege first.
            cur.execute("select has_schema_privilege(oid, 'usage') from pg_namespace where nspname = %s", (SCHEMA,))
            schema = cur.fetchone()
            if schema is None:
                return []
            if not schema[0]:
                return None
            cur.execute("select to_regclass(%s)", (TABLE,))
            if cur.fetchone()[0] is None:
                return []
            cur.execute("select has_table_privilege(%s, 'select')", (TABLE,))
            if not cur.fetchone()[0]:
                return None
    finally:
        conn.close()
    return AccountStore(database).list()


def resolve_account(database: DatabaseUrl, name: str | None, *, user_id: str | None = None) -> Account | None:
    """The account `import-history`, `wrapped` and `coverage` work on, from their `--account` (`name`).

    - `name` given: that account; its Spotify user must be known and match `user_id` (`--user-id`, `--user`) if given.
    - no name, a `user_id` given: the account of that Spotify user, or None (the single-listener way).
    - neither: the only account; None when there is none (a single-listener setup, or a role that may not read
      the accounts): the command then finds its listener as it did before accounts.

    Raises:
        ConfigError: several accounts and no name (the message lists them), no account called `name`, its Spotify
            user unknown or not `user_id`, or the accounts unreadable by this role.
    """
    from pipelines.spotify.token_store import UnknownAccountError

    if name is not None:
        validate_name(name)
    accounts = readable_accounts(database)
    if name is None:
        if user_id is not None:
            return next((account for account in accounts or [] if account.user_id == user_id), None)
        if accounts and len(accounts) > 1:
            names = ", ".join(account.name for account in accounts)
            raise ConfigError(f"there are several accounts ({names}): choose one with --account NAME")
        return accounts[0] if accounts else None
    if accounts is None:
        raise ConfigError(
            f"{database.user} may not read the accounts (schema accounts), so cannot find account {name}: "
            "run as the pipeline's role, or name the listener's Spotify user id instead"
        )
    account = next((account for account in accounts if account.name == name), None)
    if account is None:
        there = f"the accounts are {', '.join(a.name for a in accounts)}" if accounts else "there are no accounts yet"
        raise UnknownAccountError(f"no account named {name!r} ({there}): see `python -m pipelines accounts list`")
    if account.user_id is None:
        raise ConfigError(
            f"the Spotify user of account {name} is not known yet: run `python -m pipelines load` "
            f"(or `python -m pipelines auth --account {name}`) first"
        )
    if user_id is not None and user_id != account.user_id:
        raise ConfigError(f"account {name} is Spotify user {account.user_id}, not {user_id}: leave out the user id")
    return account
