"""Secrets never reach a log: the whole DAG and the CLI run with canary secrets, then every file they wrote
(Airflow task logs and metadata DB, dbt logs and artefacts, dlt's working dir) and all captured output are
searched for them. Plus: where secrets are kept (mode 0600, git-ignored), and the auth callback's binding.

Failures name the secret and the file, never the value.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import paths
from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database
from pipelines.orchestration import docs as airflow_docs
from pipelines.sample_server import SampleSpotifyServer, demo_history
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID
from tests.conftest import AIRFLOW_HOME, query
from tests.reliability.report import record
from tests.test_cli import cli_env, run_cli

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_OUTPUTS = (paths.DBT_PROJECT_DIR / "logs", paths.DBT_PROJECT_DIR / "target")


class Canaries:
    """Unique secret values for one test, and the Spotify server and database that use them."""

    def __init__(self, admin: DatabaseUrl) -> None:
        tag = secrets.token_hex(6)
        self.values = {
            "client secret": f"canary-client-secret-{tag}",
            "refresh token": f"canary-refresh-token-{tag}",
            "rotated refresh token": f"canary-rotated-token-{tag}",
            "database password": f"canary-db-password-{tag}",
        }
        self.admin = admin
        self.role, self.dbname = f"canary_{tag}", f"test_canary_{tag}"
        self.database = ensure_role_and_database(admin, self.role, self.values["database password"], self.dbname)
        self.server = SampleSpotifyServer(
            client_id="canary-client",
            client_secret=self.values["client secret"],
            refresh_token=self.values["refresh token"],
            user_id="canary-listener",
        )
        self.server.add_plays(demo_history(datetime.now(UTC), count=25))
        # The first refresh hands out a new refresh token, which the run must store without printing it.
        self.server.rotate_refresh_token(self.values["rotated refresh token"])

    def spotify_env(self) -> dict[str, str]:
        return {
            "SPOTIFY_CLIENT_ID": "canary-client",
            "SPOTIFY_CLIENT_SECRET": self.values["client secret"],
            "SPOTIFY_REFRESH_TOKEN": self.values["refresh token"],
            "SPOTIFY_API_URL": self.server.api_url,
            "SPOTIFY_ACCOUNTS_URL": self.server.accounts_url,
        }

    def all_values(self) -> dict[str, str]:
        tokens = {f"access token #{n}": token for n, token in enumerate(self.server.issued_access_tokens, 1)}
        assert tokens, "no access token was ever issued: the run did not reach Spotify"
        return {**self.values, **tokens}

    def close(self) -> None:
        self.server.stop()
        drop_database(self.admin, self.dbname)
        drop_roles(self.admin, self.role)


def drop_roles(admin: DatabaseUrl, *roles: str) -> None:
    conn = admin.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role in roles:
                cur.execute(f'drop role if exists "{role}"')
    finally:
        conn.close()


@pytest.fixture
def canaries(postgres_admin) -> Iterator[Canaries]:
    made = Canaries(postgres_admin)
    with made.server:
        yield made
    made.close()


def readable_files(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every file under `roots` (gzip files decompressed), keyed by path."""
    found = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if not path.is_file() or any(path == s or s in path.parents for s in skip):
                continue
            content = path.read_bytes()
            if path.suffix == ".gz":
                content = gzip.decompress(content)
            found[str(path)] = content
    return found


def leaks(values: dict[str, str], places: dict[str, bytes]) -> list[str]:
    """Which secret appears where: names only, so a failure does not print the secret it found."""
    return [
        f"{name} in {where}"
        for where, blob in places.items()
        for name, value in values.items()
        if value.encode() in blob
    ]


def test_a_full_dag_run_leaks_no_secret_into_any_log(canaries, elt_dagbag, monkeypatch, tmp_path, capfd, caplog):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    caplog.set_level(logging.DEBUG)  # every record any logger emits, down to debug
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", str(canaries.database))
    for name, value in canaries.spotify_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DLT_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path / "data")
    docs = tmp_path / "dbt_docs"
    monkeypatch.setenv(airflow_docs.PROJECTS_ENV, airflow_docs.projects_setting(docs))
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(elt_dagbag, "dags-folder", None)

    # the suite's one full run of the per-model design in `dag.test()`: it checks what the run builds, too
    run = elt_dagbag.dags[DAG_ID].test()

    assert run.state == "success"
    assert query(canaries.database, "select count(*) from analytics.plays") == [(25,)]
    assert query(canaries.database, "select count(*) from analytics.listening_history") == [(25,)]
    # The docs task published what Cosmos' plugin serves: the project's models, with this database's catalog,
    # and what they were generated from (the next run leaves them alone while those stay the same).
    assert sorted(path.name for path in docs.iterdir()) == [
        airflow_docs.STAMP_FILE,
        "catalog.json",
        "index.html",
        "manifest.json",
    ]
    published = json.loads((docs / "manifest.json").read_text())
    catalog = json.loads((docs / "catalog.json").read_text())
    assert "model.spotify_history.listening_sessions" in published["nodes"]
    assert catalog["nodes"]["model.spotify_history.plays"]["metadata"]["database"] == canaries.dbname
    stored = tmp_path / "project" / ".dlt" / "secrets.toml"  # where the rotated token belongs, and only there
    assert canaries.values["rotated refresh token"] in stored.read_text()
    assert stored.stat().st_mode & 0o777 == 0o600
    output = capfd.readouterr()
    # `dag.test()` runs the tasks in this process: their logs are these records (and files, if any are written).
    assert "loaded 25 plays into raw.recently_played" in caplog.text and "task_id=transform." in caplog.text
    places = {
        "captured output": (output.out + output.err).encode(),
        "captured log records": caplog.text.encode(),
        **readable_files(AIRFLOW_HOME / "logs"),
        **readable_files(*AIRFLOW_HOME.glob("*.db")),
        **readable_files(*DBT_OUTPUTS),
        **readable_files(tmp_path / "data"),
        **readable_files(docs),
    }
    assert any(path.endswith("/state.json") for path in places), "dlt's working dir was not searched"
    assert leaks(canaries.all_values(), places) == []
    record(
        "Security",
        "Canary secrets through a full DAG run (client secret, refresh token rotated mid-run, "
        "access tokens, DB password)",
        tried=1,
        lost=None,
        duplicated=None,
        result="none in Airflow task logs, metadata DB, dbt logs/target, published dbt docs, dlt dir or output",
    )


def test_cli_runs_leak_no_secret_even_when_verbose(canaries, postgres_admin, tmp_path):
    loader, analyst = f"{canaries.role}_loader", f"{canaries.role}_analyst"
    role_passwords = {
        "loader password": f"canary-loader-{uuid.uuid4().hex}",
        "analyst password": f"canary-an-{uuid.uuid4().hex}",
    }
    state = tmp_path / "state"  # the CLI's dbt target and logs and dlt's working dir: all searched below
    env = cli_env(tmp_path, DATABASE_URL=str(canaries.database), SPOTIFY_ELT_HOME=str(state), **canaries.spotify_env())
    try:
        run = run_cli(env, "--verbose", "run")
        roles = run_cli(
            {
                **env,
                "ADMIN_DATABASE_URL": str(postgres_admin),
                "LOADER_PASSWORD": role_passwords["loader password"],
                "ANALYST_PASSWORD": role_passwords["analyst password"],
            },
            "--verbose",
            "grant-roles",
            "--loader-role",
            loader,
            "--analyst-role",
            analyst,
        )
        failed = run_cli({**env, "SPOTIFY_CLIENT_SECRET": "canary-wrong-secret-4f1d"}, "--verbose", "load")
    finally:
        dlt_files = readable_files(state / "dlt") if (state / "dlt").exists() else {}
        drop_database(postgres_admin, canaries.dbname)
        drop_roles(postgres_admin, loader, analyst)

    assert run.returncode == 0, run.stderr[-2000:]
    assert roles.returncode == 0, roles.stderr[-2000:]
    assert failed.returncode == 1 and "invalid_client" in failed.stderr
    assert "DEBUG" in run.stderr  # verbose really was verbose
    assert any(path.endswith("/trace.pickle") for path in dlt_files), "dlt's working dir was not searched"
    assert (state / "dbt" / "logs" / "dbt.log").exists(), "the CLI's dbt log is not where this test searches"
    values = {**canaries.all_values(), **role_passwords, "wrong client secret": "canary-wrong-secret-4f1d"}
    places = {
        **{
            f"`{name}` output": (result.stdout + result.stderr).encode()
            for name, result in (("run", run), ("grant-roles", roles), ("load", failed))
        },
        **dlt_files,
        **readable_files(*DBT_OUTPUTS),
        **readable_files(tmp_path, skip=(tmp_path / ".dlt" / "secrets.toml",)),
    }
    assert leaks(values, places) == []
    record(
        "Security",
        "Canary secrets through CLI `run`, `grant-roles` and a failing `load`, all --verbose",
        tried=3,
        lost=None,
        duplicated=None,
        result="none in output, dbt logs/target or the dlt dir",
    )


@pytest.mark.parametrize(
    "path",
    [".dlt/secrets.toml", ".env", ".data/roles/analyst.url", ".data/postgres/role-password", ".airflow/airflow.cfg"],
)
def test_files_that_hold_secrets_are_git_ignored(path):
    git = shutil.which("git")
    assert git, "git is needed to ask git"
    result = subprocess.run([git, "-C", str(PROJECT_ROOT), "check-ignore", "--quiet", "--no-index", path], check=False)
    assert result.returncode == 0, f"{path} is not git-ignored"
    record(
        "Security",
        "Files holding secrets are git-ignored (secrets.toml, .env, role and DB passwords, Airflow home)",
        tried=1,
        lost=None,
        duplicated=None,
        result="`git check-ignore` confirms each",
    )


def test_secrets_file_and_generated_role_passwords_are_private(tmp_path, postgres_admin, database_url):
    from pipelines.database.roles import grant_roles
    from pipelines.spotify.secrets_file import update_refresh_token, write_spotify_secrets

    secrets_file = tmp_path / "project" / ".dlt" / "secrets.toml"
    previous = os.umask(0o022)  # a typical umask, which would leave new files world-readable
    try:
        write_spotify_secrets(secrets_file, client_id="id", client_secret="secret", refresh_token="token")
        update_refresh_token(secrets_file, "rotated")
    finally:
        os.umask(previous)
    tag = uuid.uuid4().hex[:8]
    try:
        granted = grant_roles(
            postgres_admin,
            database_url,
            credentials_dir=tmp_path / "roles",
            loader_role=f"loader_{tag}",
            analyst_role=f"analyst_{tag}",
        )
    finally:
        drop_database(postgres_admin, database_url.dbname)
        drop_roles(postgres_admin, f"loader_{tag}", f"analyst_{tag}")

    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert [role.password for role in granted] == ["generated", "generated"]
    for role in granted:
        assert role.credentials_file.stat().st_mode & 0o777 == 0o600
        assert role.credentials_file.read_text().strip() == str(role.url)
        assert role.url.password not in role.describe()
    assert (tmp_path / "roles").stat().st_mode & 0o777 == 0o700
    record(
        "Security",
        "secrets.toml and generated role passwords are written owner-only",
        tried=3,
        lost=None,
        duplicated=None,
        result="mode 0600 (directory 0700) from creation",
    )


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, read from the kernel's table."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address if width == 32 else socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_the_auth_callback_listens_on_loopback_only():
    from pipelines.spotify.auth import AuthError, authorize

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: dict[str, set[str]] = {}

    def look(url: str) -> None:
        seen["addresses"] = listening_addresses(port)

    with pytest.raises(AuthError, match="no callback arrived"):
        authorize(
            client_id="c",
            client_secret="s",
            accounts_url="http://127.0.0.1:9",
            redirect_uri=f"http://127.0.0.1:{port}/callback",
            open_browser=False,
            timeout_seconds=0.5,
            on_url=look,
        )

    assert seen["addresses"] == {"127.0.0.1"}
    assert listening_addresses(port) == set()  # and it is gone once the command gives up
    record(
        "Security",
        "`auth` callback server: where it listens, and for how long",
        tried=1,
        lost=None,
        duplicated=None,
        result="127.0.0.1 only; closed after the timeout",
    )
