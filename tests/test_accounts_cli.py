"""`python -m pipelines accounts ...` and `auth --account` as a user runs them: subprocesses, real database,
loopback Spotify. No secret may reach the output."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from pipelines.database import DatabaseUrl
from pipelines.spotify.secrets_file import fingerprint, read_spotify_secrets
from pipelines.spotify.token_store import AccountStore, TokenCipher
from tests.conftest import SPOTIFY_CLIENT_SECRET, query
from tests.test_cli import PROJECT_ROOT, cli_env, socket_port, wait_for_line

KEY = Fernet.generate_key().decode()


def accounts_env(tmp_path: Path, database: DatabaseUrl, server, **settings: str) -> dict[str, str]:
    """The CLI's environment: the sample server's app, the database, a token key, a state dir of the test's own."""
    return cli_env(
        tmp_path,
        DATABASE_URL=str(database),
        SPOTIFY_CLIENT_ID="test-client-id",
        SPOTIFY_CLIENT_SECRET=SPOTIFY_CLIENT_SECRET,
        SPOTIFY_API_URL=server.api_url,
        SPOTIFY_ACCOUNTS_URL=server.accounts_url,
        SPOTIFY_TOKEN_KEY=KEY,
        SPOTIFY_ELT_HOME=str(tmp_path / "state"),
        COLUMNS="200",
        **settings,
    )


def pipelines(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        env=env,
        cwd=PROJECT_ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_no_secrets(result: subprocess.CompletedProcess, *secrets: str) -> None:
    output = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in output


def store_of(database: DatabaseUrl) -> AccountStore:
    return AccountStore(database, cipher=TokenCipher([KEY], "the test key"))


def test_add_reads_the_token_from_stdin_and_stores_it_encrypted_without_printing_it(
    spotify_server, database_url, tmp_path
):
    token = spotify_server.current_refresh_token
    env = accounts_env(tmp_path, database_url, spotify_server)

    result = pipelines(env, "accounts", "add", "alice", "--refresh-token-stdin", stdin=token + "\n")

    assert result.returncode == 0, result.stderr[-2000:]
    assert "added account alice: Spotify user listener-1" in result.stderr
    assert f"authorised {datetime.now(UTC):%Y-%m-%d}" in result.stderr
    assert "set --authorised-at" in result.stderr
    assert_no_secrets(result, token, SPOTIFY_CLIENT_SECRET, database_url.password, KEY)
    assert store_of(database_url).refresh_token("alice") == token
    ciphertext = query(database_url, "select refresh_token from accounts.spotify_accounts")[0][0]
    assert token.encode() not in bytes(ciphertext)


def test_add_refuses_an_empty_token_a_missing_flag_and_a_token_given_as_an_argument(
    spotify_server, database_url, tmp_path
):
    token = spotify_server.current_refresh_token
    env = accounts_env(tmp_path, database_url, spotify_server)

    empty = pipelines(env, "accounts", "add", "alice", "--refresh-token-stdin", stdin="  \n")
    no_flag = pipelines(env, "accounts", "add", "alice", stdin=token + "\n")
    as_argument = pipelines(env, "accounts", "add", "alice", token, "--refresh-token-stdin", stdin=token + "\n")
    bad_name = pipelines(env, "accounts", "add", "Alice!", "--refresh-token-stdin", stdin=token + "\n")

    assert (empty.returncode, no_flag.returncode, as_argument.returncode, bad_name.returncode) == (1, 1, 1, 1)
    assert "error: no refresh token on standard input" in empty.stderr
    assert "with --refresh-token-stdin (never as an argument)" in no_flag.stderr
    assert "takes no refresh token as an argument" in as_argument.stderr
    assert "is not a valid account name" in bad_name.stderr
    for result in (empty, no_flag, as_argument, bad_name):
        assert "Traceback" not in result.stderr
        assert_no_secrets(result, token, SPOTIFY_CLIENT_SECRET)
    assert store_of(database_url).list() == []


def test_add_of_a_revoked_token_fails_in_one_line(spotify_server, database_url, tmp_path):
    token = spotify_server.current_refresh_token
    spotify_server.revoke_refresh_token()
    env = accounts_env(tmp_path, database_url, spotify_server)

    result = pipelines(env, "accounts", "add", "alice", "--refresh-token-stdin", stdin=token)

    assert result.returncode == 1
    assert "error: account alice not added: Spotify rejected the refresh token (invalid_grant)" in result.stderr
    assert_no_secrets(result, token, SPOTIFY_CLIENT_SECRET)


def make_raw_tables(database: DatabaseUrl) -> None:
    """raw plays and gaps of two listeners, and a coverage mart where one of listener-1's two gaps is filled.

    Written by hand in the shape dlt and dbt give them, so the test needs neither.
    """
    query(
        database,
        """
        create schema raw;
        create table raw.recently_played (
            user_id text, played_at timestamptz, track jsonb, context jsonb, _dlt_load_id text, _dlt_id text
        );
        insert into raw.recently_played
        select user_id, '2026-11-01'::timestamptz + n * interval '4 minutes', '{}', null, '1', md5(user_id || n)
        from (values ('listener-1', 3), ('someone-else', 5)) as plays (user_id, count), generate_series(1, count) as n;
        create table raw.gaps (
            user_id text, gap_from timestamptz, gap_to timestamptz, detected_at timestamptz,
            _dlt_load_id text, _dlt_id text
        );
        insert into raw.gaps values
            ('listener-1', '2026-11-02', '2026-11-03', now(), '1', 'a'),
            ('listener-1', '2026-11-05', '2026-11-06', now(), '1', 'b'),
            ('someone-else', '2026-11-02', '2026-11-03', now(), '1', 'c');
        create schema analytics;
        create table analytics.coverage (
            user_id text, content_type text, covered_from timestamptz, covered_to timestamptz,
            covered_by text, is_gap boolean, gap_status text
        );
        insert into analytics.coverage values
            ('listener-1', 'track', '2026-11-02', '2026-11-03', 'export', true, 'filled'),
            ('listener-1', 'track', '2026-11-05', '2026-11-06', 'none', true, 'open');
        """,
    )


def test_list_shows_one_aligned_line_per_account_and_warns_of_tokens_expiring_within_30_days(
    spotify_server, database_url, tmp_path
):
    make_raw_tables(database_url)
    env = accounts_env(tmp_path, database_url, spotify_server)
    authorised = (datetime.now(UTC) - timedelta(days=165)).date()
    added = pipelines(
        env,
        "accounts",
        "add",
        "alice",
        "--refresh-token-stdin",
        "--authorised-at",
        f"{authorised}",
        stdin=spotify_server.current_refresh_token,
    )
    assert added.returncode == 0, added.stderr[-2000:]
    store = store_of(database_url)
    store.add("bob", "bob-token", user_id=None, client_id="test-client-id", authorised_at=None)
    store.set_status("bob", "needs_auth", "Spotify rejected the refresh token (invalid_grant)")
    store.record_load("alice", datetime(2026, 11, 30, 7, 5, tzinfo=UTC))

    result = pipelines(env, "accounts", "list")

    assert result.returncode == 0, result.stderr[-2000:]
    header, alice, bob = result.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "account", "user id", "authorised", "expires", "last load", "plays", "open gaps", "status"
    ]  # fmt: skip
    cells = re.split(r"\s{2,}", alice)
    assert cells[:3] == ["alice", "listener-1", f"{authorised}"]
    assert re.fullmatch(r"in 1[5-9] days", cells[3])
    assert cells[4:] == ["2026-11-30 07:05 UTC", "3", "1", "active"]
    assert re.split(r"\s{2,}", bob) == [
        "bob", "unknown", "unknown", "unknown", "never", "-", "-",
        "needs_auth (Spotify rejected the refresh token (invalid_grant))",
    ]  # fmt: skip
    # Aligned: every column starts where its title does (numbers end where theirs ends).
    for title in ("user id", "authorised", "expires", "last load", "status"):
        assert {line[header.index(title) - 2 : header.index(title)] for line in (alice, bob)} == {"  "}
    assert {len(line[: header.index("plays") + len("plays")].rstrip()) for line in (header, alice)} == {
        header.index("plays") + len("plays")
    }
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert re.match(r"warning: the Spotify authorisation of account alice expires in 1[5-9] days", warnings[0])
    assert warnings[0].endswith("run `python -m pipelines auth --account alice`")
    assert_no_secrets(result, spotify_server.current_refresh_token, "bob-token", SPOTIFY_CLIENT_SECRET, KEY)


def test_list_turns_a_single_listener_setup_into_the_account_default(spotify_server, database_url, tmp_path):
    token = spotify_server.current_refresh_token
    env = accounts_env(tmp_path, database_url, spotify_server, SPOTIFY_REFRESH_TOKEN=token)
    del env["SPOTIFY_TOKEN_KEY"]  # the embedded local setup: a key file in the state dir

    result = pipelines(env, "accounts", "list")

    assert result.returncode == 0, result.stderr[-2000:]
    header, default = result.stdout.splitlines()
    assert re.split(r"\s{2,}", default) == ["default", "listener-1", "unknown", "unknown", "never", "0", "0", "active"]
    assert "warning:" not in result.stderr
    key_file = tmp_path / "state" / "spotify-token.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    stored = AccountStore(database_url, cipher=TokenCipher([key_file.read_text().strip()], "the key file"))
    assert stored.refresh_token("default") == token
    assert_no_secrets(result, token, SPOTIFY_CLIENT_SECRET, key_file.read_text().strip())
    again = pipelines(env, "accounts", "list")
    assert again.stdout == result.stdout


def test_list_without_accounts_says_how_to_add_one(spotify_server, database_url, tmp_path):
    result = pipelines(accounts_env(tmp_path, database_url, spotify_server), "accounts", "list")

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("no accounts yet: add one with `python -m pipelines auth --account NAME`")


def test_pause_resume_and_unknown_names(spotify_server, database_url, tmp_path):
    env = accounts_env(tmp_path, database_url, spotify_server)
    store = store_of(database_url)
    store.add("alice", "alice-token", user_id="listener-1", client_id="test-client-id", authorised_at=None)

    paused = pipelines(env, "accounts", "pause", "alice")
    assert paused.returncode == 0, paused.stderr[-2000:]
    assert store.get("alice").status == "paused"
    assert [account.name for account in store.active()] == []

    resumed = pipelines(env, "accounts", "resume", "alice")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert store.get("alice").status == "active"

    store.set_status("alice", "needs_auth", "invalid_grant")
    refused = pipelines(env, "accounts", "resume", "alice")
    assert refused.returncode == 1
    assert "error: account alice needs a new authorisation (invalid_grant)" in refused.stderr
    assert "`python -m pipelines auth --account alice`" in refused.stderr
    assert store.get("alice").status == "needs_auth"

    for command in ("pause", "resume"):
        unknown = pipelines(env, "accounts", command, "carol")
        assert unknown.returncode == 1
        assert "error: no account named 'carol' (the accounts are alice)" in unknown.stderr
        assert "Traceback" not in unknown.stderr


def authorise_in_browser(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`auth` with the sample server as Spotify, and requests as the browser that approves."""
    with socket_port() as port:
        redirect_uri = f"http://127.0.0.1:{port}/callback"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "auth", "--no-browser", "--timeout", "60", *args],
        env={**env, "SPOTIFY_REDIRECT_URI": redirect_uri, "COLUMNS": "10000"},
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = wait_for_line(process.stderr, prefix=env["SPOTIFY_ACCOUNTS_URL"] + "/authorize")
    requests.get(url, timeout=10)  # the browser: Spotify redirects it to the callback
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_auth_with_an_account_stores_the_listener_and_leaves_the_secrets_file_alone(
    spotify_server, database_url, tmp_path
):
    env = accounts_env(tmp_path, database_url, spotify_server)
    before = datetime.now(UTC)

    result = authorise_in_browser(env, "--account", "bob")

    assert result.returncode == 0, result.stderr[-2000:]
    assert "account bob (Spotify user listener-1) stored" in result.stderr
    account = store_of(database_url).get("bob")
    assert (account.user_id, account.status, account.client_id) == ("listener-1", "active", "test-client-id")
    assert before - timedelta(seconds=1) <= account.authorised_at <= datetime.now(UTC)
    assert store_of(database_url).refresh_token("bob") == spotify_server.current_refresh_token
    assert not (tmp_path / ".dlt" / "secrets.toml").exists()  # that file is the single listener's, `default`
    assert_no_secrets(result, spotify_server.current_refresh_token, SPOTIFY_CLIENT_SECRET, KEY)


def test_auth_of_default_also_writes_the_secrets_file_with_the_authorisation_date(
    spotify_server, database_url, tmp_path
):
    env = accounts_env(tmp_path, database_url, spotify_server)

    result = authorise_in_browser(env)

    assert result.returncode == 0, result.stderr[-2000:]
    token = spotify_server.current_refresh_token
    written = read_spotify_secrets(tmp_path / ".dlt" / "secrets.toml")
    assert written["refresh_token"] == token
    account = store_of(database_url).get("default")
    assert datetime.fromisoformat(written["authorised_at"]) == account.authorised_at.replace(microsecond=0)
    assert store_of(database_url).refresh_token("default") == token
    stored_fingerprint = query(
        database_url, "select legacy_token_fingerprint from accounts.spotify_accounts where name = 'default'"
    )
    assert stored_fingerprint == [(fingerprint(token),)]
    assert_no_secrets(result, token, SPOTIFY_CLIENT_SECRET, KEY)
    # A later run finds nothing to migrate: the file and the account agree.
    listed = pipelines(env, "accounts", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    header, default = listed.stdout.splitlines()
    assert re.split(r"\s{2,}", default)[:3] == ["default", "listener-1", f"{account.authorised_at:%Y-%m-%d}"]
