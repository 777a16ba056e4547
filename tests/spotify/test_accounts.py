"""The account store on a real PostgreSQL: encryption at rest, privileges, bookkeeping, and the `default` migration.

Spotify is the loopback sample server; nothing is mocked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.fernet import Fernet
from psycopg2 import errors

from pipelines.database import DatabaseUrl, drop_database
from pipelines.database.roles import grant_roles
from pipelines.errors import ConfigError, PipelineError
from pipelines.spotify import accounts, settings
from pipelines.spotify.secrets_file import fingerprint, write_rotated_token, write_spotify_secrets
from pipelines.spotify.token_store import (
    Account,
    AccountStore,
    TokenCipher,
    UnknownAccountError,
    days_until_expiry,
    ensure_schema,
    expiry_warning,
    token_expires_at,
)
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query
from tests.reliability.test_secrets import drop_roles

KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()
TOKEN = "alice-refresh-token-0f3c9a7e51"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: DatabaseUrl) -> AccountStore:
    return AccountStore(database_url, cipher=TokenCipher([KEY], "the test key"))


@pytest.fixture
def spotify_app(spotify_server, monkeypatch, tmp_path) -> accounts.SpotifyApp:
    """The sample server's app in the environment, as the CLI would read it; no single-listener token anywhere."""
    settings_env = {
        "SPOTIFY_CLIENT_ID": "test-client-id",
        "SPOTIFY_CLIENT_SECRET": SPOTIFY_CLIENT_SECRET,
        "SPOTIFY_API_URL": spotify_server.api_url,
        "SPOTIFY_ACCOUNTS_URL": spotify_server.accounts_url,
        "SPOTIFY_ELT_HOME": str(tmp_path / "state"),
        "DLT_PROJECT_DIR": str(tmp_path),
    }
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPOTIFY_REFRESH_TOKEN", raising=False)
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", KEY)
    return accounts.spotify_app()


def add(store: AccountStore, name: str = "alice", token: str = TOKEN, **overrides) -> Account:
    values = {"user_id": f"{name}-id", "client_id": "test-client-id", "authorised_at": NOW} | overrides
    return store.add(name, token, **values)


def stored_ciphertext(database: DatabaseUrl, name: str) -> bytes:
    return bytes(query(database, "select refresh_token from accounts.spotify_accounts where name = %s", (name,))[0][0])


def me(server) -> dict:
    """What GET /v1/me answers for the default listener, asked with a token the server issues directly."""
    headers = {"Authorization": f"Bearer {server.issue_access_token()}"}
    return requests.get(server.api_url + "/me", headers=headers, timeout=10).json()


# -- encryption at rest ----------------------------------------------------------------------------------------------


def test_the_token_is_stored_as_fernet_ciphertext_and_decrypts_back(store, database_url):
    account = add(store)

    ciphertext = stored_ciphertext(database_url, "alice")
    assert TOKEN.encode() not in ciphertext
    assert Fernet(KEY).decrypt(ciphertext) == TOKEN.encode()
    assert store.refresh_token("alice") == TOKEN
    # Neither the account nor the store carries the token in what a log line would show.
    assert TOKEN not in repr(account) + repr(store) + repr(store.list())
    assert KEY not in repr(store._cipher)


def test_a_token_stored_with_another_key_is_one_line_naming_the_setting_and_the_account(
    store, database_url, monkeypatch
):
    add(store)
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", OTHER_KEY)

    with pytest.raises(ConfigError) as refused:
        AccountStore(database_url).refresh_token("alice")

    message = str(refused.value)
    assert "\n" not in message
    assert "SPOTIFY_TOKEN_KEY" in message and "'alice'" in message
    for secret in (KEY, OTHER_KEY, TOKEN):
        assert secret not in message


def test_a_malformed_key_is_a_config_error_that_does_not_quote_it(database_url, monkeypatch):
    malformed = "not-a-fernet-key-" + uuid.uuid4().hex
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", malformed)

    with pytest.raises(ConfigError) as refused:
        add(AccountStore(database_url))

    message = str(refused.value)
    assert "\n" not in message
    assert "SPOTIFY_TOKEN_KEY is not a valid Fernet key" in message and "alice" in message
    assert malformed not in message and TOKEN not in message


def test_old_keys_still_decrypt_after_the_key_is_rotated(database_url, monkeypatch):
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", OTHER_KEY)
    add(AccountStore(database_url))
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", f"{KEY}, {OTHER_KEY}")  # new key first, the old one still reads

    store = AccountStore(database_url)
    assert store.refresh_token("alice") == TOKEN
    store.save_rotated_token("alice", "rotated-under-the-new-key")
    assert Fernet(KEY).decrypt(stored_ciphertext(database_url, "alice")) == b"rotated-under-the-new-key"


def test_without_the_setting_a_private_key_file_is_generated_once_in_the_state_dir(database_url, monkeypatch, tmp_path):
    monkeypatch.delenv("SPOTIFY_TOKEN_KEY", raising=False)
    monkeypatch.setenv("SPOTIFY_ELT_HOME", str(tmp_path / "state"))
    key_file = tmp_path / "state" / "spotify-token.key"
    # Reading needs no key yet, and makes none.
    assert AccountStore(database_url).list() == []
    assert not key_file.exists()

    add(AccountStore(database_url))

    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert Fernet(key).decrypt(stored_ciphertext(database_url, "alice")) == TOKEN.encode()
    add(AccountStore(database_url), "bob", "bob-token")  # a later process reuses the file
    assert key_file.read_text().strip() == key
    assert AccountStore(database_url).refresh_token("bob") == "bob-token"


def test_without_any_key_a_stored_token_cannot_be_read_and_the_error_says_what_to_set(
    store, database_url, monkeypatch, tmp_path
):
    add(store)
    monkeypatch.delenv("SPOTIFY_TOKEN_KEY", raising=False)
    monkeypatch.setenv("SPOTIFY_ELT_HOME", str(tmp_path / "empty-state"))

    with pytest.raises(ConfigError, match="SPOTIFY_TOKEN_KEY is not set and there is no key file"):
        AccountStore(database_url).refresh_token("alice")
    assert not (tmp_path / "empty-state" / "spotify-token.key").exists()


# -- privileges ------------------------------------------------------------------------------------------------------


@pytest.fixture
def roles(postgres_admin, database_url) -> Iterator[dict[str, DatabaseUrl]]:
    tag = uuid.uuid4().hex[:8]
    urls = {
        kind: DatabaseUrl(f"{kind}_{tag}", f"{kind}-pw-{uuid.uuid4().hex}", *_address(database_url))
        for kind in ("loader", "analyst")
    }
    yield urls
    drop_database(postgres_admin, database_url.dbname)
    drop_roles(postgres_admin, *(url.user for url in urls.values()))


def _address(database: DatabaseUrl) -> tuple[str, int, str]:
    return database.host, database.port, database.dbname


def test_the_loader_reads_the_accounts_and_the_analyst_cannot(store, database_url, postgres_admin, roles, tmp_path):
    add(store)  # stored by the pipeline's role before any role exists, as on an existing setup

    def run_grant_roles() -> None:
        grant_roles(
            postgres_admin,
            database_url,
            credentials_dir=tmp_path,
            loader_role=roles["loader"].user,
            analyst_role=roles["analyst"].user,
            loader_password=roles["loader"].password,
            analyst_password=roles["analyst"].password,
        )

    run_grant_roles()
    # A grant made by hand in between does not survive the next grant-roles.
    query(
        postgres_admin.with_dbname(database_url.dbname),
        f'grant usage on schema accounts to "{roles["analyst"].user}"; '
        f'grant select on accounts.spotify_accounts to "{roles["analyst"].user}"',
    )
    run_grant_roles()

    conn = roles["analyst"].connect()
    try:
        with pytest.raises(errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute("select count(*) from accounts.spotify_accounts")
    finally:
        conn.close()
    owner = query(
        postgres_admin.with_dbname(database_url.dbname),
        "select tableowner from pg_tables where schemaname = 'accounts'",
    )
    assert owner == [(roles["loader"].user,)]
    # The loader and the pipeline's own role (now acting as the loader) still read and write it.
    loader_store = AccountStore(roles["loader"], cipher=TokenCipher([KEY], "the test key"))
    assert loader_store.refresh_token("alice") == TOKEN
    AccountStore(database_url, cipher=TokenCipher([KEY], "the test key")).save_rotated_token("alice", "next-token")
    assert loader_store.refresh_token("alice") == "next-token"


def test_the_schema_is_created_once_and_public_gets_nothing(database_url):
    conn = database_url.connect()
    try:
        with conn:
            ensure_schema(conn)
        with conn:
            ensure_schema(conn)  # idempotent
        with conn, conn.cursor() as cur:
            cur.execute(
                "select has_schema_privilege('public', 'accounts', 'usage'), "
                "has_table_privilege('public', 'accounts.spotify_accounts', 'select')"
            )
            assert cur.fetchone() == (False, False)
    finally:
        conn.close()


# -- bookkeeping -----------------------------------------------------------------------------------------------------


def test_a_rotated_token_is_committed_before_save_returns(store, database_url):
    add(store)

    store.save_rotated_token("alice", "rotated-token-1")

    # Another connection, as another worker would have, sees it at once.
    assert Fernet(KEY).decrypt(stored_ciphertext(database_url, "alice")) == b"rotated-token-1"
    assert AccountStore(database_url, cipher=TokenCipher([KEY], "k")).refresh_token("alice") == "rotated-token-1"


def test_status_loads_and_listing(store):
    add(store, "bob")
    add(store, "alice")
    add(store, "carol")

    store.set_status("bob", "needs_auth", "Spotify rejected the refresh token (invalid_grant)")
    store.set_status("carol", "paused")
    store.record_load("alice", NOW)
    store.record_load("alice", NOW - timedelta(hours=1))  # a late, older load never moves it back

    assert [account.name for account in store.list()] == ["alice", "bob", "carol"]
    assert [account.name for account in store.active()] == ["alice"]
    assert store.get("alice").last_load_at == NOW
    assert store.get("bob").status_detail == "Spotify rejected the refresh token (invalid_grant)"
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status("alice", "gone")


def test_unknown_accounts_are_a_clear_error_naming_those_there_are(store):
    add(store)

    for call in (store.get, store.refresh_token, lambda name: store.set_status(name, "paused")):
        with pytest.raises(UnknownAccountError, match=r"no account named 'zoe' \(the accounts are alice\)"):
            call("zoe")
    with pytest.raises(UnknownAccountError):
        store.save_rotated_token("zoe", "token")


@pytest.mark.parametrize("name", ["", "Alice", "-alice", "al ice", "a" * 41, "alice;drop", "élise"])
def test_account_names_are_validated(store, name):
    with pytest.raises(ConfigError, match="is not a valid account name"):
        add(store, name)


def test_a_valid_name_of_forty_characters_is_accepted(store):
    assert add(store, "a" * 39 + "9").name == "a" * 39 + "9"


def test_re_adding_an_account_reauthorises_it_but_never_for_another_user(store):
    add(store, authorised_at=NOW - timedelta(days=170))
    store.set_status("alice", "needs_auth", "expired")

    again = add(store, token="alice-new-token", authorised_at=NOW)

    assert (again.status, again.status_detail, again.authorised_at) == ("active", None, NOW)
    assert store.refresh_token("alice") == "alice-new-token"
    with pytest.raises(ConfigError, match="belongs to mallory-id"):
        add(store, token="mallory-token", user_id="mallory-id")
    assert store.refresh_token("alice") == "alice-new-token"


# -- expiry ----------------------------------------------------------------------------------------------------------


def test_expiry_is_six_calendar_months_after_authorisation():
    assert token_expires_at(datetime(2026, 7, 20, 9, 30, tzinfo=UTC)) == datetime(2027, 1, 20, 9, 30, tzinfo=UTC)
    assert token_expires_at(datetime(2026, 8, 31, tzinfo=UTC)) == datetime(2027, 2, 28, tzinfo=UTC)
    assert token_expires_at(None) is None


def test_expiry_warns_within_thirty_days_naming_the_command(store):
    soon = add(store, "soon", authorised_at=NOW - timedelta(days=160))  # expires in about 22 days
    later = add(store, "later", authorised_at=NOW - timedelta(days=120))
    gone = add(store, "gone", authorised_at=NOW - timedelta(days=200))
    unknown = add(store, "unknown", authorised_at=None)

    assert 20 <= days_until_expiry(soon, NOW) <= 23
    assert days_until_expiry(unknown, NOW) is None
    warning = expiry_warning(soon, NOW)
    assert warning is not None and "account soon expires in" in warning
    assert "`python -m pipelines auth --account soon`" in warning
    assert expiry_warning(later, NOW) is None
    assert expiry_warning(unknown, NOW) is None
    assert "expired on" in expiry_warning(gone, NOW)


# -- Spotify: checking a token, and the single-listener migration --------------------------------------------------


def test_adding_checks_the_token_with_spotify_and_keeps_it_when_no_new_one_comes(
    spotify_app, spotify_server, database_url
):
    token = spotify_server.current_refresh_token

    account = accounts.add_account(database_url, "alice", token, now=NOW)

    received = spotify_server.requests
    assert [r.form.get("refresh_token") for r in received if r.path == settings.TOKEN_PATH] == [token]
    assert [r.path for r in received if r.path.startswith("/v1")] == ["/v1/me"]
    assert (account.user_id, account.account_id) == ("listener-1", me(spotify_server).get("account_id"))
    assert (account.client_id, account.authorised_at, account.status) == ("test-client-id", NOW, "active")
    # The refresh answered without a refresh_token: the one given is the one kept.
    assert AccountStore(database_url).refresh_token("alice") == token


def test_a_token_spotify_rotates_while_it_is_checked_is_the_one_stored(spotify_app, spotify_server, database_url):
    old = spotify_server.current_refresh_token
    new = spotify_server.rotate_refresh_token("rotated-" + uuid.uuid4().hex)

    accounts.add_account(database_url, "alice", old, now=NOW)

    assert AccountStore(database_url).refresh_token("alice") == new


def test_a_refused_token_is_not_stored(spotify_app, spotify_server, database_url):
    spotify_server.revoke_refresh_token()

    with pytest.raises(PipelineError, match="account alice not added: Spotify rejected the refresh token") as refused:
        accounts.add_account(database_url, "alice", spotify_server.current_refresh_token, now=NOW)

    assert SPOTIFY_REFRESH_TOKEN not in str(refused.value)
    assert AccountStore(database_url).list() == []


def test_a_single_listener_token_from_the_environment_becomes_default_once(
    spotify_app, spotify_server, database_url, monkeypatch, tmp_path
):
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", spotify_server.current_refresh_token)

    migrated = accounts.ensure_default_account(database_url)

    assert migrated is not None
    assert (migrated.name, migrated.user_id, migrated.authorised_at) == ("default", "listener-1", None)
    assert migrated.account_id == me(spotify_server).get("account_id")
    assert AccountStore(database_url).refresh_token("default") == spotify_server.current_refresh_token
    assert accounts.ensure_default_account(database_url) is None  # done once: nothing more to do
    assert len(AccountStore(database_url).list()) == 1


def test_no_configured_token_migrates_nothing(spotify_app, database_url):
    assert accounts.ensure_default_account(database_url) is None
    assert AccountStore(database_url).list() == []


def test_a_rotated_token_file_wins_over_the_configured_token_and_the_auth_date_is_kept(
    spotify_app, spotify_server, database_url, tmp_path
):
    secrets_file, token_file = tmp_path / "secrets.toml", tmp_path / "state" / "refresh_token.toml"
    write_spotify_secrets(
        secrets_file, client_id="test-client-id", client_secret=SPOTIFY_CLIENT_SECRET, refresh_token="configured-0"
    )
    write_rotated_token(token_file, spotify_server.current_refresh_token, replaces=fingerprint("configured-0"))

    migrated = accounts.ensure_default_account(database_url, secrets_file=secrets_file, token_file=token_file)

    assert migrated is not None and migrated.user_id == "listener-1"
    assert AccountStore(database_url).refresh_token("default") == spotify_server.current_refresh_token


def test_unreachable_spotify_still_migrates_the_token_without_a_user(spotify_app, database_url, monkeypatch):
    with socket_closed() as url:
        monkeypatch.setenv("SPOTIFY_API_URL", url + "/v1")
        monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", url)
        monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", "offline-token")
        monkeypatch.setattr(settings, "MAX_ATTEMPTS", 2)

        migrated = accounts.ensure_default_account(database_url)

    assert migrated is not None and (migrated.user_id, migrated.status) == (None, "active")
    assert AccountStore(database_url).refresh_token("default") == "offline-token"


def test_a_rejected_default_follows_a_new_configured_token_but_a_live_one_stays(
    spotify_app, spotify_server, database_url, monkeypatch
):
    first = spotify_server.current_refresh_token
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", first)
    accounts.ensure_default_account(database_url)
    # The listener authorises again elsewhere (the server now knows only the new token) and configures it.
    second = spotify_server.rotate_refresh_token("second-" + uuid.uuid4().hex)
    accounts.identify(first, spotify_app)
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", second)

    # While the stored token is live, a configuration of unknown age does not replace it...
    assert accounts.ensure_default_account(database_url) is None
    assert AccountStore(database_url).refresh_token("default") == first
    # ...once Spotify rejected it, the configured one does.
    AccountStore(database_url).set_status("default", "needs_auth", "invalid_grant")
    replaced = accounts.ensure_default_account(database_url)

    assert replaced is not None and replaced.status == "active"
    assert AccountStore(database_url).refresh_token("default") == second


def test_adding_a_second_listener_keeps_the_single_listener_as_default(
    spotify_app, spotify_server, database_url, monkeypatch
):
    monkeypatch.setenv("SPOTIFY_REFRESH_TOKEN", spotify_server.current_refresh_token)
    other = spotify_server.add_listener("listener-2", refresh_token="listener-2-token")

    accounts.add_account(database_url, "second", "listener-2-token", now=NOW)

    stored = {account.name: account.user_id for account in AccountStore(database_url).list()}
    assert stored == {"default": "listener-1", "second": other.user_id}


class socket_closed:
    """A loopback URL where nothing listens (connections are refused at once)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        pass
