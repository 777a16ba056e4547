"""`python -m pipelines` as a user runs it: real subprocesses, real database, loopback Spotify."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from pipelines.spotify.secrets_file import read_spotify_secrets
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query
from tests.spotify.test_recently_played import add_plays

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "DATABASE_URL"))}
    env["DLT_PROJECT_DIR"] = str(tmp_path)  # secrets file and dlt config of this test only
    env.update(settings)
    return env


def spotify_env(server) -> dict[str, str]:
    return {
        "SPOTIFY_CLIENT_ID": "test-client-id",
        "SPOTIFY_CLIENT_SECRET": SPOTIFY_CLIENT_SECRET,
        "SPOTIFY_REFRESH_TOKEN": server.current_refresh_token,
        "SPOTIFY_API_URL": server.api_url,
        "SPOTIFY_ACCOUNTS_URL": server.accounts_url,
    }


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_loads_then_builds_and_exits_zero(spotify_server, database_url, tmp_path):
    add_plays(spotify_server, 7)
    env = cli_env(tmp_path, DATABASE_URL=str(database_url), **spotify_env(spotify_server))

    result = run_cli(env, "run")

    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded 7 plays" in result.stderr
    assert query(database_url, "select count(*) from analytics.listening_history") == [(7,)]


def test_run_stops_with_one_clear_line_when_spotify_rejects_the_token(spotify_server, database_url, tmp_path):
    add_plays(spotify_server, 2)
    spotify_server.revoke_refresh_token()
    env = cli_env(tmp_path, DATABASE_URL=str(database_url), **spotify_env(spotify_server))

    result = run_cli(env, "run")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "account default: not loaded, it needs a new authorisation (Spotify answered invalid_grant" in result.stderr
    assert "Fix: python -m pipelines auth\n" in result.stderr
    for secret in (SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, database_url.password):
        assert secret not in result.stdout + result.stderr


def test_transform_exits_non_zero_when_dbt_fails(database_url, tmp_path):
    # A play stored twice, which dlt's merge never writes: the source's key test fails the build.
    import psycopg2

    with psycopg2.connect(str(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "create schema raw; create table raw.recently_played (user_id text, played_at timestamptz, "
            "track jsonb, context jsonb, _dlt_load_id text, _dlt_id text)"
        )
        cur.executemany(
            "insert into raw.recently_played values ('u1', '2025-01-01T10:00:00Z', '{}', null, '1735725600.1', %s)",
            [("a",), ("b",)],
        )
    conn.close()
    result = run_cli(cli_env(tmp_path, DATABASE_URL=str(database_url)), "transform")

    assert result.returncode == 1
    assert "error: dbt build failed" in result.stderr


def test_auth_stores_the_refresh_token_where_load_reads_it(spotify_server, database_url, tmp_path):
    add_plays(spotify_server, 3)
    with socket_port() as port:
        redirect_uri = f"http://127.0.0.1:{port}/callback"
    env = cli_env(
        tmp_path,
        SPOTIFY_CLIENT_ID="test-client-id",
        SPOTIFY_CLIENT_SECRET=SPOTIFY_CLIENT_SECRET,
        SPOTIFY_ACCOUNTS_URL=spotify_server.accounts_url,
        SPOTIFY_REDIRECT_URI=redirect_uri,
    )
    auth = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "auth", "--no-browser", "--timeout", "60"],
        env={**env, "COLUMNS": "10000"},
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = wait_for_line(auth.stderr, prefix=spotify_server.accounts_url + "/authorize")

    requests.get(url, timeout=10)  # the browser: Spotify redirects it to our callback
    auth.wait(timeout=30)

    assert auth.returncode == 0
    secrets_file = tmp_path / ".dlt" / "secrets.toml"
    assert read_spotify_secrets(secrets_file)["refresh_token"] == spotify_server.current_refresh_token
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    # `load` finds the credentials in the file alone (no SPOTIFY_CLIENT_* or token in the environment).
    load_env = cli_env(
        tmp_path,
        DATABASE_URL=str(database_url),
        SPOTIFY_API_URL=spotify_server.api_url,
        SPOTIFY_ACCOUNTS_URL=spotify_server.accounts_url,
    )
    result = run_cli(load_env, "load")
    assert result.returncode == 0, result.stderr[-2000:]
    assert query(database_url, "select count(*) from raw.recently_played") == [(3,)]


def wait_for_line(stream, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.strip().startswith(prefix):
            return line.strip()
    raise AssertionError(f"the command never printed a line starting with {prefix}")


class socket_port:
    """A free loopback port (closed again before use, as the callback server binds it itself)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
