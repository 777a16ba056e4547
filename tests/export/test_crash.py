"""A killed import leaves nothing behind: the whole import is one transaction, and the next run imports all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.generate_export import write_export
from tests.conftest import query
from tests.test_cli import cli_env

PLAYS = 200_000
USER = "crash-test-user"


def bytes_written(database_url) -> int:
    """How far the import got: the raw table's size on disk grows with rows that are not committed yet."""
    return int(
        query(database_url, "select coalesce(pg_relation_size(to_regclass('raw.export_extended_plays')), 0)")[0][0]
    )


def copying(database_url) -> bool:
    rows = query(
        database_url,
        "select count(*) from pg_stat_progress_copy as p"
        " join pg_database as d on d.oid = p.datid where d.datname = current_database()",
    )
    return bool(rows[0][0])


def test_sigkill_mid_import_stores_nothing_and_the_rerun_imports_everything(database_url, import_into, tmp_path):
    archive = write_export(PLAYS, tmp_path / "my_spotify_data.zip")
    child = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "import-history", str(archive), "--user-id", USER],
        env=cli_env(tmp_path, DATABASE_URL=str(database_url)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while bytes_written(database_url) < 16 << 20:  # a few of the export's files
            assert child.poll() is None, child.stderr.read().decode()[-2000:] if child.stderr else ""
            assert time.monotonic() < deadline, "the import never started copying"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while copying(database_url):  # the server notices the dead client and rolls back
        assert time.monotonic() < deadline
        time.sleep(0.05)

    stored = "select (select count(*) from raw.export_extended_plays), (select count(*) from raw.export_files)"
    assert query(database_url, stored) == [(0, 0)]

    summary = import_into(archive, user_id=USER)

    assert (summary.rows_read, summary.rows_loaded) == (PLAYS, PLAYS)
    assert query(database_url, stored) == [(PLAYS, summary.files_read)]
