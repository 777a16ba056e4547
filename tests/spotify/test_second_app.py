"""More than 5 listeners: accounts of a second Spotify app, added through the CLI and loaded with that app's
credentials. Real PostgreSQL, the CLI as a subprocess, the loopback sample server serving both apps."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.load import per_account as account_loads
from pipelines.sample_server import demo_history
from pipelines.spotify import settings
from tests.conftest import SPOTIFY_CLIENT_SECRET, query
from tests.test_accounts_cli import KEY, accounts_env, assert_no_secrets, authorise_in_browser, pipelines, store_of

SECOND_ID = "secondApp0123456789"
SECOND_SECRET = "second-app-secret-8f14e45f"
SECOND_SECRET_ENV = f"SPOTIFY_CLIENT_SECRET_{SECOND_ID}"
NOW = datetime.now(UTC)


@pytest.fixture
def second_app(spotify_server):
    """The sample server with a second app registered: a listener `ana` of the first, `carl` of the second."""
    spotify_server.register_app(SECOND_ID, SECOND_SECRET)
    listeners = {
        "ana": spotify_server.add_listener("ana-id"),
        "carl": spotify_server.add_listener("carl-id", client_id=SECOND_ID),
    }
    for seed, listener in enumerate(listeners.values(), start=1):
        listener.add_plays(demo_history(NOW, count=7 + seed, seed=seed))
    return listeners


@pytest.fixture
def in_process(monkeypatch):
    """Give the loader, run in this process, the environment the CLI ran with."""

    def use(env: dict[str, str]) -> None:
        for name in [name for name in os.environ if name.startswith("SPOTIFY_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith("SPOTIFY_"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("DLT_PROJECT_DIR", env["DLT_PROJECT_DIR"])
        monkeypatch.setattr(settings, "BACKOFF_BASE_SECONDS", 0.05)

    return use


def token_clients(server) -> dict[str, set[str]]:
    """Per listener, the client ids their token requests authenticated as (HTTP Basic)."""
    clients: dict[str, set[str]] = {}
    for request in server.requests:
        if request.path == "/api/token" and request.user is not None:
            basic = (request.header("Authorization") or "").removeprefix("Basic ")
            clients.setdefault(request.user, set()).add(base64.b64decode(basic).decode().partition(":")[0])
    return clients


def plays_by_user(database) -> dict[str, int]:
    return dict(query(database, "select user_id, count(*) from raw.recently_played group by 1 order by 1"))


def test_an_account_added_for_the_second_app_loads_with_that_apps_credentials(
    spotify_server, second_app, database_url, tmp_path, in_process
):
    env = accounts_env(tmp_path, database_url, spotify_server, **{SECOND_SECRET_ENV: SECOND_SECRET})
    store = store_of(database_url)
    store.add(
        "ana",
        second_app["ana"].current_refresh_token,
        user_id="ana-id",
        client_id="test-client-id",
        authorised_at=NOW - timedelta(days=3),
    )
    carl_token = second_app["carl"].current_refresh_token

    added = pipelines(
        env, "accounts", "add", "carl", "--refresh-token-stdin", "--client-id", SECOND_ID, stdin=carl_token + "\n"
    )

    assert added.returncode == 0, added.stderr[-2000:]
    assert "added account carl: Spotify user carl-id" in added.stderr
    assert_no_secrets(added, carl_token, SECOND_SECRET, SPOTIFY_CLIENT_SECRET, KEY)
    assert (store.get("carl").client_id, store.get("ana").client_id) == (SECOND_ID, "test-client-id")

    in_process(env)
    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert {name: outcome.status for name, outcome in outcomes.items()} == {"ana": "loaded", "carl": "loaded"}
    assert plays_by_user(database_url) == {"ana-id": 8, "carl-id": 9}
    # each listener's token went to Spotify with their own app's credentials only
    assert token_clients(spotify_server) == {"ana-id": {"test-client-id"}, "carl-id": {SECOND_ID}}

    listed = pipelines(env, "accounts", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    header, ana, carl = listed.stdout.splitlines()
    assert re.split(r"\s{2,}", header)[:3] == ["account", "user id", "app"]
    assert re.split(r"\s{2,}", ana)[:3] == ["ana", "ana-id", "test-client-id"]
    assert re.split(r"\s{2,}", carl)[:3] == ["carl", "carl-id", SECOND_ID]


def test_a_missing_secret_for_the_second_app_fails_its_account_alone_naming_the_variable(
    spotify_server, second_app, database_url, tmp_path, in_process
):
    env = accounts_env(tmp_path, database_url, spotify_server)  # no SPOTIFY_CLIENT_SECRET_<id>
    carl_token = second_app["carl"].current_refresh_token

    refused = pipelines(
        env, "accounts", "add", "carl", "--refresh-token-stdin", "--client-id", SECOND_ID, stdin=carl_token + "\n"
    )

    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and SECOND_SECRET_ENV in errors[0]
    assert "Traceback" not in refused.stderr
    assert_no_secrets(refused, carl_token, SPOTIFY_CLIENT_SECRET, KEY)
    store = store_of(database_url)
    assert [account.name for account in store.list()] == []

    # carl stored while the secret was there (another machine, say); this one lacks it
    store.add(
        "ana", second_app["ana"].current_refresh_token, user_id="ana-id", client_id="test-client-id", authorised_at=NOW
    )
    store.add("carl", carl_token, user_id="carl-id", client_id=SECOND_ID, authorised_at=NOW)
    in_process(env)
    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert {name: outcome.status for name, outcome in outcomes.items()} == {"ana": "loaded", "carl": "failed"}
    line = outcomes["carl"].line()
    assert "\n" not in line and SECOND_SECRET_ENV in line
    assert plays_by_user(database_url) == {"ana-id": 8}
    assert "carl-id" not in token_clients(spotify_server)  # his token never left with the wrong app
    assert store.get("carl").status == "active"  # not a rejected token: it loads once the secret is there


def test_auth_with_a_client_id_authorises_that_app_and_stores_it_with_the_account(
    spotify_server, second_app, database_url, tmp_path
):
    env = accounts_env(tmp_path, database_url, spotify_server, **{SECOND_SECRET_ENV: SECOND_SECRET})
    second_app["carl"].sign_in()

    result = authorise_in_browser(env, "--account", "carl", "--client-id", SECOND_ID)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "account carl (Spotify user carl-id) stored" in result.stderr
    account = store_of(database_url).get("carl")
    assert (account.user_id, account.client_id, account.status) == ("carl-id", SECOND_ID, "active")
    assert store_of(database_url).refresh_token("carl") == second_app["carl"].current_refresh_token
    assert [r.query["client_id"] for r in spotify_server.requests if r.path == "/authorize"] == [SECOND_ID]
    assert token_clients(spotify_server) == {"carl-id": {SECOND_ID}}
    assert_no_secrets(result, second_app["carl"].current_refresh_token, SECOND_SECRET, KEY)


def test_the_account_default_stays_with_the_default_app(spotify_server, second_app, database_url, tmp_path):
    env = accounts_env(tmp_path, database_url, spotify_server, **{SECOND_SECRET_ENV: SECOND_SECRET})

    refused = pipelines(
        env,
        "accounts",
        "add",
        "default",
        "--refresh-token-stdin",
        "--client-id",
        SECOND_ID,
        stdin=second_app["carl"].current_refresh_token + "\n",
    )

    assert refused.returncode == 1
    assert "error: the account default uses the default app" in refused.stderr
    assert spotify_server.requests == []  # refused before Spotify is asked


def test_a_revoked_second_app_account_is_told_to_authorise_with_its_own_app(
    database_url, spotify_server, second_app, in_process, tmp_path
):
    env = accounts_env(tmp_path, database_url, spotify_server, **{SECOND_SECRET_ENV: SECOND_SECRET})
    store = store_of(database_url)
    store.add(
        "carl", second_app["carl"].current_refresh_token, user_id="carl-id", client_id=SECOND_ID, authorised_at=NOW
    )
    second_app["carl"].revoke_refresh_token()
    in_process(env)

    outcome = account_loads.load_account(database_url, "carl", pipelines_dir=tmp_path / "dlt")

    assert outcome.status == "needs_auth"
    # plain `auth --account carl` would authorise the first app, whose tokens carl's account cannot use
    assert outcome.line().endswith(f"Fix: python -m pipelines auth --account carl --client-id {SECOND_ID}")
