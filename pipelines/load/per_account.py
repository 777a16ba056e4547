"""Load every listener: one dlt pipeline per account, each committed on its own, none blocking the others.

`load_accounts` is what the CLI's `load` and `run` do; the Airflow DAG maps `load_account` over
`accounts_to_load()`, one task instance per account. For each account:

- the refresh token comes from the account store (`pipelines.spotify.token_store`), and a token Spotify rotates
  during the load is stored (encrypted, committed) before the load goes on;
- the dlt pipeline is the account's own (`pipelines.load.pipeline_name`), so each has its own cursor and
  state; their load steps into the shared `raw` tables take turns (`pipelines.database.locking.raw_load_lock`);
- Spotify's `invalid_grant` marks the account `needs_auth`: later runs skip it, without asking Spotify again,
  until `auth --account NAME` authorises it anew;
- any other failure (a 429 that outlasts the retries, an outage) fails that account only.

Every run also warns, one line per account, from 30 days before a token expires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, DatabaseUnavailable, PipelineError, first_line
from pipelines.spotify.token_store import DEFAULT_ACCOUNT, Account, AccountStore, expiry_warning

log = logging.getLogger(__name__)

# Set while the bundled sample server stands in for Spotify (`--demo`, `make run` without credentials): its
# throwaway token is loaded as before, and never stored as an account.
DEMO_ENV = "SPOTIFY_ELT_DEMO"

LOADED, NEEDS_AUTH, FAILED, SKIPPED = "loaded", "needs_auth", "failed", "skipped"


@dataclass(frozen=True)
class AccountOutcome:
    """What loading one account did, safe to print and to return from an Airflow task (JSON-able)."""

    account: str
    status: str  # loaded, needs_auth, failed or skipped
    message: str
    plays_loaded: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in (NEEDS_AUTH, FAILED)

    def line(self) -> str:
        return f"account {self.account}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "status": self.status,
            "message": self.message,
            "plays_loaded": self.plays_loaded,
            **self.summary,
        }


def demo_mode() -> bool:
    return os.environ.get(DEMO_ENV) == "1"


def accounts_to_load(database: DatabaseUrl, *, store: AccountStore | None = None) -> list[str]:
    """The names of the accounts a run loads (status `active`), a single-listener setup's token migrated first.

    Raises:
        ConfigError: no account exists and no token is configured the single-listener way.
    """
    from pipelines.load import check_urls, source_args_from_env
    from pipelines.spotify.accounts import ensure_default_account

    check_urls(source_args_from_env())  # a malformed URL is a setting to fix, whatever else is missing
    if demo_mode():
        return [DEFAULT_ACCOUNT]
    store = store or AccountStore(database)
    ensure_default_account(database, store=store)
    accounts = store.list()
    if not accounts:
        raise ConfigError(
            f"Spotify credentials missing ({', '.join(_missing_credentials())}): set them in the environment or run "
            "`python -m pipelines auth` to write .dlt/secrets.toml; for several listeners, "
            "`python -m pipelines auth --account NAME` each (README, 'Accounts: several listeners')"
        )
    return [account.name for account in accounts if account.status == "active"]


def _missing_credentials() -> list[str]:
    """The settings a first load lacks: the app's id and secret when unset, and a refresh token (no account)."""
    from pipelines.spotify.accounts import app_setting

    missing = []
    for env, key in (("SPOTIFY_CLIENT_ID", "client_id"), ("SPOTIFY_CLIENT_SECRET", "client_secret")):
        try:
            app_setting(env, key)
        except ConfigError:
            missing.append(env)
    return [*missing, "SPOTIFY_REFRESH_TOKEN"]


def skipped_accounts(database: DatabaseUrl, *, store: AccountStore | None = None) -> list[AccountOutcome]:
    """The outcome of each account a run does not load: paused (`skipped`), or `needs_auth`, with the fix."""
    if demo_mode():
        return []
    store = store or AccountStore(database)
    return [_skipped(account) for account in store.list() if account.status != "active"]


def expiry_lines(database: DatabaseUrl, *, store: AccountStore | None = None, now: datetime | None = None) -> list[str]:
    """One warning per account whose token expires within 30 days, naming the command to run."""
    if demo_mode():
        return []
    store = store or AccountStore(database)
    now = now or datetime.now(UTC)
    return [warning for account in store.list() if (warning := expiry_warning(account, now))]


def load_account(
    database: DatabaseUrl,
    name: str,
    *,
    store: AccountStore | None = None,
    pipelines_dir: Path | None = None,
    now: datetime | None = None,
) -> AccountOutcome:
    """Load account `name`'s new plays with its own dlt pipeline; its outcome (never raises for Spotify errors).

    Raises:
        ConfigError: the token key is missing or wrong (every account would fail alike).
    """
    from pipelines.load import load_plays, load_recently_played, pipeline_name
    from pipelines.spotify.helpers import SpotifyTokenRejected

    if demo_mode():
        summary = load_recently_played(database, pipelines_dir=pipelines_dir)
        return _loaded(name, summary)
    from pipelines.spotify.accounts import spotify_app

    store = store or AccountStore(database)
    account = store.get(name)
    if account.status != "active":
        return _skipped(account)
    try:
        app = spotify_app(account.client_id)
    except ConfigError as exc:  # e.g. the second app's secret is missing: only its accounts fail
        return AccountOutcome(name, FAILED, f"failed: {first_line(exc)}")
    args = {
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "refresh_token": store.refresh_token(name),
        "api_url": app.api_url,
        "accounts_url": app.accounts_url,
        # committed before the load goes on: the old token is dead the moment Spotify sends a new one
        "on_refresh_token_rotated": lambda token: store.save_rotated_token(name, token),
    }
    try:
        summary = load_plays(database, args, pipelines_dir=pipelines_dir, name=pipeline_name(name))
    except SpotifyTokenRejected:
        store.set_status(name, "needs_auth", rejected_detail(now))
        return AccountOutcome(
            name,
            NEEDS_AUTH,
            "Spotify rejected the refresh token (invalid_grant: expired or revoked); skipped from now on. "
            f"Fix: {auth_command(name, account.client_id)}",
        )
    except DatabaseUnavailable:
        raise  # not this account's failure: the run stops, and the next one finishes what was pending
    except PipelineError as exc:
        return AccountOutcome(name, FAILED, f"failed: {first_line(exc)}")
    store.record_load(name, now or datetime.now(UTC), user_id=_loaded_user(database, summary))
    return _loaded(name, summary)


def load_accounts(
    database: DatabaseUrl,
    *,
    store: AccountStore | None = None,
    pipelines_dir: Path | None = None,
    now: datetime | None = None,
    on_outcome: Callable[[AccountOutcome], None] | None = None,
) -> list[AccountOutcome]:
    """Load every active account in turn, each committed on its own; one outcome per account, by name.

    A paused account, or one that needs authorising, gets a `skipped` outcome without Spotify being asked.
    `on_outcome` is called with each outcome as soon as it is known (the CLI prints it).
    """
    from pipelines.load import default_pipelines_dir

    # dlt's working dir first: a read-only state dir is one line naming the setting, before anything is asked
    paths.ensure_writable(pipelines_dir or default_pipelines_dir(database))
    store = None if demo_mode() else store or AccountStore(database)
    names = accounts_to_load(database, store=store)
    outcomes = skipped_accounts(database, store=store)
    for outcome in outcomes:
        if on_outcome:
            on_outcome(outcome)
    for name in names:
        outcome = load_account(database, name, store=store, pipelines_dir=pipelines_dir, now=now)
        if on_outcome:
            on_outcome(outcome)
        outcomes.append(outcome)
    return sorted(outcomes, key=lambda outcome: outcome.account)


def _loaded(name: str, summary: dict[str, Any]) -> AccountOutcome:
    plays = int(summary.get("plays_loaded", 0))
    gaps = summary.get("gaps") or []
    extra = f"; {len(gaps)} gap(s) recorded (see `accounts list`)" if gaps else ""
    return AccountOutcome(
        name, LOADED, f"loaded {plays} play{'s' if plays != 1 else ''}{extra}", plays_loaded=plays, summary=summary
    )


def auth_command(name: str, client_id: str | None = None) -> str:
    """The command that authorises account `name` again, with its own app (`default` keeps the plain command)."""
    from pipelines.spotify.accounts import app_setting

    command = "python -m pipelines auth" + ("" if name == DEFAULT_ACCOUNT else f" --account {name}")
    try:
        default_app = app_setting("SPOTIFY_CLIENT_ID", "client_id")
    except ConfigError:
        default_app = None
    if client_id and default_app and client_id != default_app:
        command += f" --client-id {client_id}"
    return command


def rejected_detail(now: datetime | None = None) -> str:
    """The status detail of an account whose token Spotify refused (`accounts list` shows it)."""
    return f"Spotify answered invalid_grant on {now or datetime.now(UTC):%Y-%m-%d}"


def _skipped(account: Account) -> AccountOutcome:
    """A paused account is skipped on purpose; one that needs authorising is not loaded, which is a failure."""
    if account.status == "needs_auth":
        why = f" ({account.status_detail})" if account.status_detail else ""
        message = f"not loaded, it needs a new authorisation{why}. Fix: {auth_command(account.name, account.client_id)}"
        return AccountOutcome(account.name, NEEDS_AUTH, message)
    message = f"skipped, paused (to load it again: python -m pipelines accounts resume {account.name})"
    return AccountOutcome(account.name, SKIPPED, message)


def _loaded_user(database: DatabaseUrl, summary: dict[str, Any]) -> str | None:
    """The Spotify user whose plays this load wrote, for an account whose user id was unknown."""
    load_ids = summary.get("load_ids") or []
    if not load_ids:
        return None
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass('raw.recently_played') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute("select min(user_id) from raw.recently_played where _dlt_load_id = any(%s)", (load_ids,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def _today(now: datetime | None) -> str:
    return f"{now or datetime.now(UTC):%Y-%m-%d}"
