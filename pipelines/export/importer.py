"""Import Spotify's privacy export into `raw`: dlt lands it, one SQL transaction commits the new plays.

1. dlt (Arrow batches written as CSV files, loaded with `COPY`) lands the import in the unlogged
   `raw.export_*_incoming` tables.
2. One transaction inserts the plays not stored yet into `raw.export_extended_plays` /
   `raw.export_account_plays`, whose primary key is (user_id, end time, ms_played, item_key) (see
   `formats.item_key`), logs each file in `raw.export_files`, and empties the incoming tables.

So a reimport adds nothing, a file that fails validation leaves nothing behind, and what is already stored is
never touched: rows are only ever inserted, and only after every file was read and checked.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import errors, sql

from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.export.formats import (
    FILE_COLUMN,
    FORMATS,
    ITEM_KEY_COLUMN,
    USER_COLUMN,
    ExportFormat,
    primary_key,
)
from pipelines.export.inputs import Discovery, ExportFile, discover
from pipelines.export.problems import ExportFileError, ImportRejectedError
from pipelines.export.source import FileReport, ReadTracker, spotify_export

log = logging.getLogger(__name__)

PIPELINE_NAME = "spotify_export"
RAW_SCHEMA = "raw"
FILES_TABLE = "export_files"
# The load package's CSV files are read once, by COPY: compressing or keeping them only costs time and disk.
_DLT_ENV = {
    f"{PIPELINE_NAME.upper()}__NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION": "true",
    f"{PIPELINE_NAME.upper()}__LOAD__DELETE_COMPLETED_JOBS": "true",
}


@dataclass
class ImportSummary:
    """What an import did, for the CLI summary and for tests."""

    user_id: str
    files_read: int = 0
    files_skipped: list[str] = field(default_factory=list)  # the export's other files (not streaming history)
    rows_read: int = 0
    rows_loaded: int = 0
    duplicates_skipped: int = 0
    rejected: list[ExportFileError] = field(default_factory=list)
    loaded_by_table: dict[str, int] = field(default_factory=dict)
    load_id: str | None = None
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def import_history(
    database: DatabaseUrl,
    paths: Iterable[Path],
    *,
    user_id: str | None = None,
    include_network_data: bool = False,
    skip_invalid_files: bool = False,
    pipelines_dir: Path | None = None,
    on_discovered: Callable[[Discovery], None] | None = None,
    on_progress: Callable[[ExportFile, int, bool], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the streaming history under `paths` (export zip, folder, or JSON files) for one user.

    Args:
        database: Where `raw` lives.
        paths: The export's `.zip`, its extracted folder, or single JSON files.
        user_id: The Spotify user the plays belong to; default: the only user in raw.recently_played.
        include_network_data: Also store IP addresses and user agents (off by default).
        skip_invalid_files: Import the valid files even when some are rejected (default: import nothing).
        pipelines_dir: dlt's working directory (default: per database, under .data/dlt).
        on_discovered: Told which files will be read, before reading starts.
        on_progress: Told (file, rows read, file done) as reading goes.
        on_stage: Told when a stage starts ("loading", "committing").

    Raises:
        ConfigError: nothing to import, or the user is ambiguous.
        ImportRejectedError: a file is invalid (and skipping was not asked for); nothing was imported.
        PipelineError: the database failed.
    """
    started = time.perf_counter()
    try:
        found = discover(list(paths))
    except ExportFileError as exc:
        raise ImportRejectedError([exc]) from None
    if on_discovered is not None:
        on_discovered(found)
    user = resolve_user_id(database, user_id)
    summary = ImportSummary(user_id=user, files_skipped=found.skipped)
    tracker = ReadTracker(skip_invalid_files=skip_invalid_files, on_progress=on_progress)

    from pipelines.load import make_pipeline

    pipeline = make_pipeline(database, pipelines_dir, pipeline_name=PIPELINE_NAME)
    _discard_pending(pipeline)
    ensure_tables(database)
    _empty_incoming(database)
    try:
        with tempfile.TemporaryDirectory(prefix="spotify-export-") as work_dir, _environment(_DLT_ENV):
            source = spotify_export(
                found.files, user, Path(work_dir), include_network_data=include_network_data, tracker=tracker
            )
            info = pipeline.run(source, loader_file_format="csv")
            info.raise_on_failed_jobs()
    except Exception as exc:  # dlt wraps everything; an invalid file is the common, actionable case
        _discard_pending(pipeline)
        _empty_incoming(database)
        if tracker.rejected:
            raise ImportRejectedError(tracker.rejected) from None
        raise _actionable(exc) from None

    summary.files_read = len(tracker.files)
    summary.rejected = tracker.rejected
    summary.rows_read = tracker.rows_read
    summary.load_id = info.loads_ids[-1] if info.loads_ids else None
    if on_stage is not None:
        on_stage("committing")
    if summary.load_id is not None:
        accepted = [report for report in tracker.files if report.error is None and report.rows]
        summary.loaded_by_table = commit_import(database, summary.load_id, user, accepted)
    else:
        _empty_incoming(database)
    summary.rows_loaded = sum(summary.loaded_by_table.values())
    summary.duplicates_skipped = summary.rows_read - summary.rows_loaded
    summary.seconds = time.perf_counter() - started
    log.info(
        "imported %d of %d plays read (%d already stored) in %.1fs",
        summary.rows_loaded,
        summary.rows_read,
        summary.duplicates_skipped,
        summary.seconds,
    )
    return summary


def resolve_user_id(database: DatabaseUrl, user_id: str | None) -> str:
    """`user_id` when given, else the single user whose API plays are stored.

    Raises:
        ConfigError: no user given and none, or several, found.
    """
    if user_id:
        return user_id
    rows = _query(
        database,
        "select distinct user_id from raw.recently_played order by 1 limit 10"
        if _exists(database, "recently_played")
        else "select null where false",
    )
    users = [row[0] for row in rows]
    if len(users) == 1:
        return users[0]
    if not users:
        raise ConfigError(
            "no Spotify user found in raw.recently_played to attribute the export to: pass --user-id "
            "(your Spotify username, shown at https://www.spotify.com/account/profile/)"
        )
    raise ConfigError(f"raw.recently_played holds several users ({', '.join(users)}): pass --user-id")


def ensure_tables(database: DatabaseUrl) -> None:
    """Create the raw export tables, their unlogged incoming twins and the import log, if missing."""
    statements = [sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW_SCHEMA))]
    for export_format in FORMATS:
        columns = [
            sql.SQL("{} text not null").format(sql.Identifier(USER_COLUMN)),
            sql.SQL("{} text not null").format(sql.Identifier(FILE_COLUMN)),
            sql.SQL("{} timestamptz not null").format(sql.Identifier(export_format.time_column)),
            *(sql.SQL("{} {}").format(sql.Identifier(f.column), sql.SQL(f.pg_type)) for f in export_format.fields),
            sql.SQL("{} text not null").format(sql.Identifier(ITEM_KEY_COLUMN)),
        ]
        table = sql.Identifier(RAW_SCHEMA, export_format.table)
        key = sql.SQL(", ").join(map(sql.Identifier, primary_key(export_format)))
        statements += [
            sql.SQL("create table if not exists {} ({}, _dlt_load_id text not null, primary key ({}))").format(
                table, sql.SQL(", ").join(columns), key
            ),
            # dbt's incremental models look for new loads.
            sql.SQL("create index if not exists {} on {} (_dlt_load_id)").format(
                sql.Identifier(f"{export_format.table}_load"), table
            ),
            # Unlogged: an import in flight needs no crash safety (a crashed one is emptied and redone), and
            # skipping the write-ahead log makes its COPY much cheaper.
            sql.SQL("create unlogged table if not exists {} ({})").format(
                sql.Identifier(RAW_SCHEMA, export_format.incoming_table), sql.SQL(", ").join(columns)
            ),
        ]
    statements.append(
        sql.SQL(
            """
            create table if not exists {} (
                _dlt_load_id text not null,
                user_id text not null,
                source_file text not null,
                export_format text not null,
                rows_read bigint not null,
                first_played_at timestamptz,
                last_played_at timestamptz,
                imported_at timestamptz not null default now(),
                primary key (_dlt_load_id, source_file)
            )
            """
        ).format(sql.Identifier(RAW_SCHEMA, FILES_TABLE))
    )
    _execute(database, statements)


def commit_import(database: DatabaseUrl, load_id: str, user_id: str, reports: list[FileReport]) -> dict[str, int]:
    """Move the landed import into the raw tables in one transaction; return plays inserted per table."""
    inserted: dict[str, int] = {}
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            for export_format in FORMATS:
                if not _table_exists(cur, export_format.incoming_table):
                    continue
                inserted[export_format.table] = _insert_new_plays(cur, export_format, load_id)
                cur.execute(sql.SQL("truncate {}").format(sql.Identifier(RAW_SCHEMA, export_format.incoming_table)))
                # Fresh statistics right away: dbt's incremental filters (new loads, a few days) only use the
                # indexes when the planner knows how the load ids and times are spread.
                cur.execute(sql.SQL("analyze {}").format(sql.Identifier(RAW_SCHEMA, export_format.table)))
            for report in reports:
                cur.execute(
                    sql.SQL(
                        "insert into {} (_dlt_load_id, user_id, source_file, export_format, rows_read,"
                        " first_played_at, last_played_at) values (%s, %s, %s, %s, %s, %s, %s)"
                        " on conflict do nothing"
                    ).format(sql.Identifier(RAW_SCHEMA, FILES_TABLE)),
                    (
                        load_id,
                        user_id,
                        report.export_file.name,
                        report.export_file.export_format.name,
                        report.rows,
                        report.first_played_at,
                        report.last_played_at,
                    ),
                )
    except psycopg2.Error as exc:
        raise PipelineError(f"committing the import failed, nothing was imported: {_first_line(exc)}") from None
    finally:
        conn.close()
    return inserted


def _insert_new_plays(cur: Any, export_format: ExportFormat, load_id: str) -> int:
    """Insert the incoming plays not stored yet; a play twice within one import is kept once."""
    cur.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s"
        " and column_name not like '\\_dlt\\_%%' order by ordinal_position",
        (RAW_SCHEMA, export_format.incoming_table),
    )
    columns = sql.SQL(", ").join(sql.Identifier(row[0]) for row in cur.fetchall())
    incoming = sql.Identifier(RAW_SCHEMA, export_format.incoming_table)
    stored = sql.Identifier(RAW_SCHEMA, export_format.table)
    same_play = sql.SQL(" and ").join(
        sql.SQL("s.{column} = i.{column}").format(column=sql.Identifier(column))
        for column in primary_key(export_format)
    )
    insert = sql.SQL(
        "insert into {stored} ({columns}, _dlt_load_id) select {columns}, %(load_id)s from {incoming} as i"
    ).format(stored=stored, columns=columns, incoming=incoming)
    # Fast path: an anti-join insert. Two copies of one play within an import (the same file given twice)
    # break the primary key; only then does `on conflict` keep the first, at a higher cost.
    cur.execute("savepoint fast_path")
    try:
        cur.execute(
            insert
            + sql.SQL(" where not exists (select from {stored} as s where {same_play})").format(
                stored=stored, same_play=same_play
            ),
            {"load_id": load_id},
        )
    except errors.UniqueViolation:
        cur.execute("rollback to savepoint fast_path")
        cur.execute(insert + sql.SQL(" on conflict do nothing"), {"load_id": load_id})
    return cur.rowcount


def _discard_pending(pipeline: Any) -> None:
    """A crashed or rejected import's packages must never be loaded by a later run."""
    if pipeline.has_pending_data:
        pipeline.abort_packages()


def _empty_incoming(database: DatabaseUrl) -> None:
    statements = [
        sql.SQL("truncate {}").format(sql.Identifier(RAW_SCHEMA, f.incoming_table))
        for f in FORMATS
        if _exists(database, f.incoming_table)
    ]
    if statements:
        _execute(database, statements)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block only (dlt reads its configuration from there)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exists(database: DatabaseUrl, table: str) -> bool:
    return _query(database, "select to_regclass(%s) is not null", (f"{RAW_SCHEMA}.{table}",))[0][0]


def _table_exists(cur: Any, table: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (f"{RAW_SCHEMA}.{table}",))
    return bool(cur.fetchone()[0])


def _query(database: DatabaseUrl, statement: str, params: tuple = ()) -> list[tuple]:
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def _execute(database: DatabaseUrl, statements: list[sql.Composable]) -> None:
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _actionable(exc: BaseException) -> PipelineError:
    """The innermost PipelineError behind dlt's wrappers, or a one-line PipelineError."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not other for other in seen):
        if isinstance(current, PipelineError):
            return current
        seen.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return PipelineError(f"import failed: {_first_line(seen[-1] if seen else exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
