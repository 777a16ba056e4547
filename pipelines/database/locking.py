"""One pipeline run per database at a time: a PostgreSQL advisory lock around every command that writes.

`load`, `run`, `transform` and `import-history` (and the Airflow load task) take the same session-level
advisory lock on the target database before they touch it. A second run started while the first holds it
does not interleave: it waits up to `wait_seconds` (0 by default, i.e. it gives up at once) and then exits
with `PipelineLockedError`, naming the holder. The lock lives in the server, not in a file, so it works
across machines and containers, and it is released by PostgreSQL itself when the holder's connection ends,
including when the process is killed (no stale lock files to clean up after a crash).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError

log = logging.getLogger(__name__)

# Advisory locks are keyed by a bigint and scoped to one database; this key is the project's own
# (the first 8 bytes of sha256("spotify-history pipeline"), as a signed 64-bit integer).
LOCK_KEY = 8_760_703_862_086_487_813
APPLICATION_NAME_PREFIX = "spotify-history:"
# Serialises dlt's load step (schema migration, staging, merge into `raw`) between accounts loading at once.
RAW_LOAD_KEY = 8_760_703_862_086_487_814
POLL_SECONDS = 0.5
# EX_TEMPFAIL from sysexits.h: "try again later", so schedulers and scripts can tell "busy" from "broken".
EXIT_LOCKED = 75


class PipelineLockedError(PipelineError):
    """Another run holds the pipeline lock on this database."""

    exit_code = EXIT_LOCKED


def _holder(cur: psycopg2.extensions.cursor) -> str:
    """Who holds the lock, in words: the command and its process, or the PostgreSQL backend."""
    cur.execute(
        """
        select a.application_name, a.pid, a.backend_start, a.client_addr
        from pg_locks as l
        join pg_stat_activity as a on a.pid = l.pid
        where l.locktype = 'advisory'
          and l.granted
          and l.database = (select oid from pg_database where datname = current_database())
          and l.objsubid = 1
          -- a bigint key is stored as two 32-bit halves
          and ((l.classid::bigint << 32) | l.objid::bigint) = %s
        """,
        (LOCK_KEY,),
    )
    row = cur.fetchone()
    if row is None:
        return "another run"
    application, pid, started, client = row
    what = application.removeprefix(APPLICATION_NAME_PREFIX) if application else "a session"
    where = f" from {client}" if client else ""
    return f"`{what}` (PostgreSQL backend {pid}{where}, connected since {started:%Y-%m-%d %H:%M:%S %Z})"


@contextmanager
def pipeline_lock(
    database: DatabaseUrl, command: str, wait_seconds: float = 0.0, *, shared: bool = False
) -> Iterator[None]:
    """Hold the pipeline's advisory lock on `database` while inside the block.

    `shared`: hold it beside other shared holders (the Airflow DAG's load of each account, running at once),
    still excluding a CLI run, which holds it alone.

    Args:
        database: The database the run writes to; the lock is per database.
        command: What is running (`load`, `transform`...), shown to a second run that finds the lock taken.
        wait_seconds: How long to wait for a busy lock before giving up; 0 gives up at once.

    Raises:
        ConfigError: the database cannot be reached (from `DatabaseUrl.connect`).
        PipelineLockedError: another run still holds the lock after `wait_seconds`.
    """
    conn = database.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            # Shown in pg_stat_activity, so a second run can say who holds the lock.
            cur.execute("set application_name = %s", (f"{APPLICATION_NAME_PREFIX}{command} pid {os.getpid()}",))
            deadline = time.monotonic() + max(0.0, wait_seconds)
            while True:
                try_lock = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
                cur.execute(f"select {try_lock}(%s)", (LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait_seconds:g}s" if wait_seconds > 0 else ""
                    raise PipelineLockedError(
                        f"another run is using {database.redacted()}{waited}: {_holder(cur)} holds the pipeline "
                        f"lock; `{command}` did not start. Wait for it to finish (or stop it) and run again"
                    )
                time.sleep(POLL_SECONDS)
        log.debug("holding the pipeline lock on %s for %s", database.redacted(), command)
        yield
    finally:
        # Closing the session releases the lock; an explicit unlock would only add a round trip.
        conn.close()


@contextmanager
def raw_load_lock(database: DatabaseUrl) -> Iterator[None]:
    """Wait for, then hold, the lock on loading into `raw`: one account's dlt load step at a time.

    The accounts' pipelines extract from Spotify in parallel, but their load steps create and migrate the same
    `raw` tables and share dlt's staging dataset, so they take turns; each holds the lock for seconds.
    """
    conn = database.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("set application_name = %s", (f"{APPLICATION_NAME_PREFIX}raw load pid {os.getpid()}",))
            cur.execute("select pg_advisory_lock(%s)", (RAW_LOAD_KEY,))
        yield
    finally:
        conn.close()
