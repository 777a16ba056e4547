"""Deploying from a read-only code mount: everything is written to the state dir, never into the code.

The code is a copy of the repository's (pipelines/, dbt_project/, dags/, profiles.yml, .dlt/config.toml) made
read-only by a read-only bind mount in a private mount namespace (`unshare`): file modes alone would not stop
these tests, which run as root. Real PostgreSQL, real dbt, real Airflow; Spotify is the sample server.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines import transform
from pipelines.database import DatabaseUrl
from pipelines.settings import POSTGRES_CONN_ID
from pipelines.spotify.secrets_file import fingerprint, read_spotify_secrets, write_rotated_token
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, query
from tests.spotify.test_recently_played import add_plays
from tests.test_cli import spotify_env

REPO = Path(__file__).resolve().parents[1]
# `sh -c` script: bind the code dir onto itself, make that mount read-only, then run the command.
_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
PLACEHOLDER_DB = DatabaseUrl("parse", "unused", "127.0.0.1", 5432, "parse")


def in_read_only_mount(code: Path, *command: str) -> list[str]:
    """`command`, run where `code` is a read-only mount (for root too); the rest of the filesystem is as it was."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _READ_ONLY, str(code), *command]


@pytest.fixture(scope="module")
def read_only_mounts() -> None:
    probe = subprocess.run(in_read_only_mount(REPO, "true"), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here (unshare/mount): {probe.stderr.strip()[:200]}")


@pytest.fixture
def code(tmp_path: Path, read_only_mounts: None) -> Path:
    """A copy of what a deployment ships, without local state, for a read-only mount."""
    root = tmp_path / "code"
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages", ".user.yml")
    for folder in ("pipelines", "dbt_project", "dags"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    shutil.copy2(REPO / "profiles.yml", root / "profiles.yml")
    (root / ".dlt").mkdir()
    shutil.copy2(REPO / ".dlt" / "config.toml", root / ".dlt" / "config.toml")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash (directories: empty), to prove nothing was written."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        for path in sorted(root.rglob("*"))
    }


def deployed_env(code: Path, tmp_path: Path, **settings: str) -> dict[str, str]:
    """A worker's environment: the code on PYTHONPATH, Airflow's home outside it, nothing from this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPOTIFY_", "DATABASE_URL", "DLT_", "AIRFLOW_CONN_", "DBT_TARGET", "DBT_LOG"))
    }
    env.update(PYTHONPATH=str(code), AIRFLOW_HOME=str(tmp_path / "airflow-home"), COLUMNS="300", **settings)
    return env


def run_in(code: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        in_read_only_mount(code, *args), env=env, cwd=code, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_read_only_mount_refuses_writes_even_from_root(code):
    result = run_in(code, os.environ.copy(), sys.executable, "-c", f"open({str(code / 'probe')!r}, 'w')")

    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert not (code / "probe").exists()


def test_cli_loads_and_builds_from_read_only_code_and_keeps_a_rotated_token(
    code, spotify_server, database_url, tmp_path
):
    add_plays(spotify_server, 6)
    rotated = "rotated-refresh-token-5c8f0e2a91"
    spotify_server.rotate_refresh_token(rotated)  # handed out on the first refresh; the old token dies with it
    before = snapshot(code)
    # SPOTIFY_ELT_HOME unset and the code read-only: the state dir falls back to Airflow's home.
    env = deployed_env(code, tmp_path, DATABASE_URL=str(database_url), **spotify_env(spotify_server))
    state = tmp_path / "airflow-home" / "spotify_elt"

    first = run_in(code, env, sys.executable, "-m", "pipelines", "run")

    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    assert query(database_url, "select count(*) from analytics.listening_history") == [(6,)]
    assert spotify_server.current_refresh_token == rotated
    token_file = state / "spotify" / "refresh_token.toml"
    assert read_spotify_secrets(token_file) == {
        "refresh_token": rotated,
        "replaces": fingerprint(SPOTIFY_REFRESH_TOKEN),
    }
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert rotated not in first.stdout + first.stderr
    assert list((state / "dlt").glob("*/spotify_recently_played/state.json"))
    assert (state / "dbt" / "target" / "manifest.json").is_file()
    assert (state / "dbt" / "logs" / "dbt.log").is_file()

    # The environment still names the old token, which Spotify now refuses: only the saved one can work.
    add_plays(spotify_server, 3, start=after_the_newest_play(database_url))
    second = run_in(code, env, sys.executable, "-m", "pipelines", "load")

    assert second.returncode == 0, second.stderr[-3000:]
    assert query(database_url, "select count(*) from raw.recently_played") == [(9,)]
    assert snapshot(code) == before


def after_the_newest_play(database_url: DatabaseUrl):
    """A start for new plays: an hour after the newest play already loaded."""
    from datetime import timedelta

    [(newest,)] = query(database_url, "select max(played_at) from raw.recently_played")
    return newest + timedelta(hours=1)


def test_a_state_dir_that_cannot_be_written_is_one_line_naming_the_setting(code, database_url, tmp_path):
    env = deployed_env(code, tmp_path, DATABASE_URL=str(database_url), SPOTIFY_ELT_HOME=str(code / "state"))

    result = run_in(code, env, sys.executable, "-m", "pipelines", "load")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert re.fullmatch(
        rf"error: cannot write to {re.escape(str(code / 'state' / 'dlt'))}/\w+ \(Read-only file system\): "
        r"set SPOTIFY_ELT_HOME to a writable directory",
        lines[-1],
    ), lines[-1]


def test_deploy_parse_then_the_dag_runs_from_read_only_code_reusing_the_partial_parse(
    code, spotify_server, database_url, tmp_path
):
    add_plays(spotify_server, 5)
    before = snapshot(code)
    env = deployed_env(
        code,
        tmp_path,
        SPOTIFY_ELT_HOME=str(tmp_path / "state"),
        AIRFLOW__COSMOS__CACHE_DIR=str(tmp_path / "cosmos"),
        AIRFLOW__CORE__DAGS_FOLDER=str(code / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__COSMOS__DBT_DOCS_PROJECTS=json.dumps({"spotify_history": {"dir": str(tmp_path / "docs")}}),
        **{f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": str(database_url)},
        **spotify_env(spotify_server),
        # `airflow dags test` runs one task at a time: a watcher-mode consumer would wait for a producer forever.
        SPOTIFY_ELT_DBT_EXECUTION="local",
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    migrate = run_in(code, env, airflow, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    parse = run_in(code, env, sys.executable, "-m", "pipelines", "parse")

    assert parse.returncode == 0, parse.stderr[-3000:]
    assert (tmp_path / "state" / "dbt" / "dag" / "manifest.json").is_file()
    shipped = tmp_path / "cosmos" / "spotify_elt__transform" / "target" / "partial_parse.msgpack"
    assert shipped.is_file()

    run = run_in(code, env, airflow, "dags", "test", "spotify_elt", "-f", str(code / "dags" / "spotify_elt.py"))

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert query(database_url, "select count(*) from analytics.plays") == [(5,)]
    assert "manifest.json" in {path.name for path in (tmp_path / "docs").iterdir()}
    # Every dbt task reused the shipped partial parse (dbt says so when it cannot: "Unable to do partial parsing
    # because config vars, config profile, or config target have changed", for one, with other flags).
    assert "Running with dbt=" in output
    assert f"Partial parse is enabled and the latest partial parse file is {shipped}" in output
    assert "Unable to do partial parsing" not in output
    assert snapshot(code) == before


# --- the manifest the DAG renders from --------------------------------------------------------------

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x2, 0x8, 0x80, 0x100


class DirectoryEvents:
    """What happens to the files of one directory (Linux inotify): [(event mask, file name)]."""

    def __init__(self, directory: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        assert self._fd >= 0, "inotify_init1 failed"
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        assert self._libc.inotify_add_watch(self._fd, str(directory).encode(), mask) >= 0

    def read(self) -> list[tuple[int, str]]:
        events: list[tuple[int, str]] = []
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                events.append((mask, name))
                offset += 16 + length

    def close(self) -> None:
        os.close(self._fd)


def test_parse_replaces_the_dag_manifest_in_one_rename_and_a_reader_never_sees_half(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTIFY_ELT_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("AIRFLOW__COSMOS__CACHE_DIR", str(tmp_path / "cosmos"))
    manifest = transform.parse(PLACEHOLDER_DB)
    old_inode = manifest.stat().st_ino
    events = DirectoryEvents(manifest.parent)
    partial_reads: list[str] = []
    stop = threading.Event()

    def read_like_a_dag_parse() -> None:
        while not stop.is_set():
            try:
                json.loads(manifest.read_text())
            except json.JSONDecodeError as exc:
                partial_reads.append(str(exc))

    reader = threading.Thread(target=read_like_a_dag_parse)
    reader.start()
    try:
        assert transform.parse(PLACEHOLDER_DB) == manifest
    finally:
        stop.set()
        reader.join()
    happened = events.read()
    events.close()

    assert partial_reads == []
    assert manifest.stat().st_ino != old_inode  # a new file renamed over the old one, not the old one rewritten
    on_manifest = [mask for mask, name in happened if name == "manifest.json"]
    assert on_manifest == [_IN_MOVED_TO]  # never opened for writing, never modified in place
    assert [path.name for path in manifest.parent.iterdir()] == ["manifest.json"]  # no scratch dir left behind
    assert "model.spotify_history.plays" in json.loads(manifest.read_text())["nodes"]


def test_cli_dbt_runs_write_the_state_dir_and_never_the_dag_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTIFY_ELT_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("AIRFLOW__COSMOS__CACHE_DIR", str(tmp_path / "cosmos"))
    monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    monkeypatch.delenv("DBT_LOG_PATH", raising=False)
    manifest = transform.parse(PLACEHOLDER_DB)
    written = manifest.stat()

    transform.run_dbt(PLACEHOLDER_DB, "parse")  # what `transform` and `docs` do before they build

    assert (manifest.stat().st_ino, manifest.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert (tmp_path / "state" / "dbt" / "target" / "manifest.json").is_file()
    assert (tmp_path / "state" / "dbt" / "logs" / "dbt.log").is_file()
    # (that they write nothing into dbt_project/ the read-only tests above prove)


# --- the rotated refresh token ------------------------------------------------------------------


def spotify_args(server) -> dict[str, str]:
    return {
        "client_id": "test-client-id",
        "client_secret": SPOTIFY_CLIENT_SECRET,
        "api_url": server.api_url,
        "accounts_url": server.accounts_url,
    }


def test_a_rotated_token_goes_to_the_state_dir_when_secrets_toml_cannot_be_written(
    spotify_server, database_url, tmp_path
):
    from pipelines.load import load_recently_played

    add_plays(spotify_server, 2)
    spotify_server.rotate_refresh_token("rotated-refresh-token-0b7d")
    (tmp_path / "code").write_text("a file where .dlt/ would be: secrets.toml cannot be written")
    unwritable = tmp_path / "code" / ".dlt" / "secrets.toml"
    token_file = tmp_path / "state" / "refresh_token.toml"
    args = {"pipelines_dir": tmp_path / "dlt", "secrets_file": unwritable, "token_file": token_file}

    load_recently_played(database_url, refresh_token=SPOTIFY_REFRESH_TOKEN, **args, **spotify_args(spotify_server))
    spotify_server.rotate_refresh_token("rotated-again-refresh-token-77e1")
    load_recently_played(database_url, refresh_token=SPOTIFY_REFRESH_TOKEN, **args, **spotify_args(spotify_server))

    # The second run used the first rotation's token (the configured one was dead) and kept the lineage.
    assert read_spotify_secrets(token_file) == {
        "refresh_token": "rotated-again-refresh-token-77e1",
        "replaces": fingerprint(SPOTIFY_REFRESH_TOKEN),
    }
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_a_saved_token_from_an_earlier_authorisation_is_ignored(spotify_server, database_url, tmp_path):
    from pipelines.load import load_recently_played

    add_plays(spotify_server, 2)
    token_file = tmp_path / "state" / "refresh_token.toml"
    # Saved while another token was configured; `auth` has since configured the one the server knows.
    write_rotated_token(token_file, "a-token-spotify-no-longer-knows", replaces=fingerprint("the-old-configured-one"))

    summary = load_recently_played(
        database_url,
        refresh_token=SPOTIFY_REFRESH_TOKEN,
        pipelines_dir=tmp_path / "dlt",
        secrets_file=tmp_path / "secrets.toml",
        token_file=token_file,
        **spotify_args(spotify_server),
    )

    assert summary["plays_loaded"] == 2
