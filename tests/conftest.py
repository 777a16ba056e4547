"""Shared fixtures: a real PostgreSQL server and a fresh database per test.

The server is `TEST_ADMIN_DATABASE_URL` (a superuser URL) when set, else the machine's server on
127.0.0.1:5432 when one answers, else an embedded server started for this session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database
from pipelines.database import embedded as embedded_postgres
from pipelines.errors import ConfigError

# Telemetry off before anything imports dbt, dlt or Cosmos.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")

# Airflow reads its home when first imported: give the session a throwaway one (SQLite metadata DB).
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")

TEST_ROLE = "spotify_test"
# Known secret values, so tests can prove they never leak into output.
SPOTIFY_CLIENT_SECRET = "client-secret-d41d8cd98f00"
SPOTIFY_REFRESH_TOKEN = "refresh-token-9e107d9d372bb"


def _machine_server() -> DatabaseUrl | None:
    candidate = DatabaseUrl("postgres", "trust", "127.0.0.1", 5432, "postgres")
    try:
        candidate.connect(connect_timeout=3).close()
    except ConfigError:
        return None
    return candidate


@pytest.fixture(scope="session")
def postgres_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUrl]:
    """A superuser URL of a running PostgreSQL server."""
    configured = os.environ.get("TEST_ADMIN_DATABASE_URL")
    if configured:
        yield DatabaseUrl.parse(configured, "TEST_ADMIN_DATABASE_URL")
        return
    machine = _machine_server()
    if machine is not None:
        yield machine
        return
    data_dir = tmp_path_factory.mktemp("embedded-postgres")
    yield embedded_postgres.start_server(data_dir)
    embedded_postgres.stop_server(data_dir)


@pytest.fixture(scope="session")
def test_role_password() -> str:
    return secrets.token_urlsafe(16)


@contextmanager
def fresh_database(postgres_admin: DatabaseUrl, password: str) -> Iterator[DatabaseUrl]:
    """A new, empty database owned by the test role (with `password`), dropped on leaving."""
    dbname = f"test_{uuid.uuid4().hex[:12]}"
    url = ensure_role_and_database(postgres_admin, TEST_ROLE, password, dbname)
    try:
        yield url
    finally:
        drop_database(postgres_admin, dbname)


@pytest.fixture
def database_url(postgres_admin: DatabaseUrl, test_role_password: str) -> Iterator[DatabaseUrl]:
    """A fresh, empty database owned by a password role; dropped after the test."""
    with fresh_database(postgres_admin, test_role_password) as url:
        yield url


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def sample_spotify_server() -> Any:
    """The bundled Spotify-compatible server for the test app and user, not started, empty."""
    from pipelines.sample_server import SampleSpotifyServer

    return SampleSpotifyServer(
        client_id="test-client-id",
        client_secret=SPOTIFY_CLIENT_SECRET,
        refresh_token=SPOTIFY_REFRESH_TOKEN,
        user_id="listener-1",
    )


@pytest.fixture
def spotify_server() -> Iterator[Any]:
    """The bundled Spotify-compatible server on loopback, empty; tests add the plays they need."""
    with sample_spotify_server() as server:
        yield server


def load_from(server: Any, database: DatabaseUrl, workdir: Path, **overrides: Any) -> dict:
    """Run the real loader against a sample server (dlt's dir and the secrets file under `workdir`)."""
    from pipelines.load import load_recently_played

    args = {
        "client_id": "test-client-id",
        "client_secret": SPOTIFY_CLIENT_SECRET,
        "refresh_token": server.current_refresh_token,
        "api_url": server.api_url,
        "accounts_url": server.accounts_url,
        **overrides,
    }
    return load_recently_played(database, pipelines_dir=workdir / "dlt", secrets_file=workdir / "secrets.toml", **args)


def listeners_with_accounts(
    server: Any, store: Any, names: list[str], *, plays_each: int, ending: datetime, authorised_at: datetime
) -> dict[str, Any]:
    """A listener per name on the sample server (user id `<name>-id`) with their own plays ending at `ending`,
    each stored as an account of the test app authorised at `authorised_at`; {name: listener}."""
    from pipelines.sample_server import demo_history

    listeners = {}
    for seed, name in enumerate(names, start=1):
        listener = server.add_listener(f"{name}-id")
        listener.add_plays(demo_history(ending, count=plays_each, seed=seed))
        store.add(
            name,
            listener.current_refresh_token,
            user_id=listener.user_id,
            client_id="test-client-id",
            authorised_at=authorised_at,
        )
        listeners[name] = listener
    return listeners


@pytest.fixture
def load_plays(database_url: DatabaseUrl, spotify_server: Any, tmp_path: Path) -> Callable[..., dict]:
    """Run the real loader against the sample server; keyword arguments override source arguments."""

    def run(**overrides: Any) -> dict:
        return load_from(spotify_server, database_url, tmp_path, **overrides)

    return run


def query(database: DatabaseUrl, statement: str, params: tuple = ()) -> list[tuple]:
    """Rows of one SQL statement, in a short-lived connection."""
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            # No params, no %-formatting: SQL may contain LIKE patterns.
            cur.execute(statement, params or None)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB, migrated once per session."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return AIRFLOW_HOME
