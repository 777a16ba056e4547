"""Import Spotify's privacy export into `raw`, in one transaction, at the speed of a bulk `COPY`.

Each streaming-history file becomes one `COPY` job (see `copy_worker`): its plays, decoded and validated
chunk by chunk (`reader`), stream in COPY's text format (`copy_text`) into PostgreSQL while the next chunk is
parsed. A file goes one of two ways:

- **straight** into its raw table (`raw.export_extended_plays` / `raw.export_account_plays`), when it starts
  outside every time range stored for the user or read earlier in this import: a first import, or a newer
  export's new months, costs one `COPY`;
- **through a scratch table**, when it may repeat plays that are stored already (a reimport, an overlapping
  newer export, the same file twice): copied into a temporary table, then inserted with
  `on conflict do nothing`, each row numbered among the file's rows that share its user, end time, ms played
  and item (`occurrence`, see `formats.occurrence_order`). A straight file stores every row as occurrence 0;
  one that turns out to hold two rows with the same key, or to repeat a stored play, breaks the raw table's
  primary key (`formats.primary_key`), is undone by its savepoint and read again this way.

The files are logged in `raw.export_files`, and everything commits at once: a reimport adds nothing, a file
that fails validation leaves nothing behind, a crash or kill rolls the whole import back, and what is already
stored is never touched. A file of another listener's export (older files name the Spotify user in every play)
is refused on its own: nothing of it is loaded, the other files are.

The API's loads go through dlt (incremental cursor, merge, schema evolution); the export is a one-off bulk load
of a fixed format, where dlt's extract, normalise and load steps (one after the other, with files in between)
would cost more than the whole import (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
from dlt.common.storages.load_package import create_load_id
from psycopg2 import sql

from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.export.copy_text import encode_rows
from pipelines.export.copy_worker import CopyJob, CopyWorker, Outcome
from pipelines.export.formats import (
    FILE_NUMBER_COLUMN,
    FORMATS,
    ITEM_KEY_COLUMN,
    OCCURRENCE_COLUMN,
    USER_COLUMN,
    ExportFormat,
    occurrence_order,
    primary_key,
)
from pipelines.export.inputs import Discovery, ExportFile, discover
from pipelines.export.problems import ExportFileError, ImportRejectedError, OtherListenerError
from pipelines.export.raw_tables import (
    LOAD_ID_COLUMN,
    RAW_SCHEMA,
    ensure_tables,
    files_table,
    load_index_name,
    raw_table,
)
from pipelines.export.reader import read_batches
from pipelines.export.tracking import AscendingTimes, FileReport, ReadTracker, time_range

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """What an import did, for the CLI summary and for tests."""

    user_id: str
    account: str | None = None  # the account asked for (`--account`), when there is one
    files_read: int = 0
    files_skipped: list[str] = field(default_factory=list)  # the export's other files (not streaming history)
    rows_read: int = 0
    rows_loaded: int = 0
    duplicates_skipped: int = 0  # plays read that were stored already (by an earlier import, or earlier in this one)
    rejected: list[ExportFileError] = field(default_factory=list)
    refused: list[OtherListenerError] = field(default_factory=list)  # other listeners' files, never loaded
    warnings: list[str] = field(default_factory=list)  # one line each, naming the file (e.g. a file without plays)
    loaded_by_table: dict[str, int] = field(default_factory=dict)
    load_id: str | None = None
    files_reread: int = 0  # files sent straight that broke the key, read again through the scratch table
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def import_history(
    database: DatabaseUrl,
    paths: Iterable[Path],
    *,
    user_id: str | None = None,
    account: str | None = None,
    include_network_data: bool = False,
    skip_invalid_files: bool = False,
    on_discovered: Callable[[Discovery], None] | None = None,
    on_progress: Callable[[ExportFile, int, bool], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the streaming history under `paths` (export zip, folder, or JSON files) for one user.

    Args:
        database: Where `raw` lives.
        paths: The export's `.zip`, its extracted folder, or single JSON files.
        user_id: The Spotify user the plays belong to; default: the only user in raw.recently_played.
        account: The account `user_id` is, named when a file turns out to be another listener's.
        include_network_data: Also store IP addresses and user agents (off by default).
        skip_invalid_files: Import the valid files even when some are rejected (default: import nothing).
        on_discovered: Told which files will be read, before reading starts.
        on_progress: Told (file, rows read, file done) as reading goes.
        on_stage: Told when a stage starts ("re-reading", "committing").

    Raises:
        ConfigError: nothing to import, or the user is ambiguous.
        ImportRejectedError: a file is invalid (and skipping was not asked for); nothing was imported.
            Another listener's file (older exports name the user) is no reason: it is left out, in `refused`.
        PipelineError: the database failed; nothing was imported.
    """
    started = time.perf_counter()
    found = discover(list(paths))
    if found.rejected and not skip_invalid_files:
        raise ImportRejectedError(found.rejected)
    for rejected in found.rejected:
        log.warning("skipping %s", rejected)
    if on_discovered is not None:
        on_discovered(found)
    try:
        user = resolve_user_id(database, user_id)
        ensure_tables(database)
    except psycopg2.Error as exc:
        raise PipelineError(f"the import failed, nothing was imported: {_first_line(exc)}") from None
    summary = ImportSummary(user_id=user, account=account, files_skipped=found.skipped, load_id=create_load_id())
    tracker = ReadTracker(skip_invalid_files=skip_invalid_files, on_progress=on_progress)

    conn = database.connect()
    try:
        with conn.cursor() as cur:
            loaded = _ImportRun(cur, summary, tracker, include_network_data).load(found.files, on_stage)
            if on_stage is not None:
                on_stage("committing")
            _log_files(cur, summary, tracker.accepted)
            for export_format in FORMATS:
                if loaded.get(export_format.table):
                    _analyze(cur, export_format)
        conn.commit()
    except psycopg2.Error as exc:
        raise PipelineError(f"the import failed, nothing was imported: {_first_line(exc)}") from None
    finally:
        conn.close()  # without a commit, PostgreSQL rolls everything back

    summary.files_read = len(tracker.files)
    summary.rejected = [*found.rejected, *(e for e in tracker.rejected if not isinstance(e, OtherListenerError))]
    summary.refused = [e for e in tracker.rejected if isinstance(e, OtherListenerError)]
    summary.rows_read = tracker.rows_read
    summary.loaded_by_table = loaded
    summary.rows_loaded = sum(loaded.values())
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


class _ImportRun:
    """Streams an import's files into the raw tables on one cursor (one transaction), choosing each file's way."""

    def __init__(self, cur: Any, summary: ImportSummary, tracker: ReadTracker, include_network_data: bool) -> None:
        self.cur = cur
        self.summary = summary
        self.tracker = tracker
        self.include_network_data = include_network_data
        # Per format: the (first, last) play times stored for the user or read earlier in this import.
        self.known = {f.name: _stored_ranges(cur, summary.user_id, f) for f in FORMATS}
        self.scratch = {f.name: _create_scratch_table(cur, f) for f in FORMATS}

    def load(self, files: list[ExportFile], on_stage: Callable[[str], None] | None) -> dict[str, int]:
        """Send every file; return the plays inserted per raw table.

        Raises:
            ImportRejectedError: a file is invalid and skipping was not asked for.
        """
        worker = CopyWorker(self.cur)
        try:
            for number, export_file in enumerate(files, start=1):
                self._send(worker, FileReport(export_file, number), scratch=False)
            results = worker.wait()
            repeated = [result.job.tag for result in results if result.outcome is Outcome.DUPLICATE]
            if repeated:
                self.summary.files_reread = len(repeated)
                if on_stage is not None:
                    on_stage(f"re-reading {len(repeated)} file(s) that repeat stored plays")
                for report in repeated:
                    self._send(worker, report, scratch=True, count=False)
                results = worker.wait()
        finally:
            worker.close()
        loaded = {f.table: 0 for f in FORMATS}
        for result in results:
            if result.outcome is Outcome.DONE:
                loaded[result.job.tag.export_file.export_format.table] += result.rows
        return {table: rows for table, rows in loaded.items() if rows}

    def _send(self, worker: CopyWorker, report: FileReport, *, scratch: bool, count: bool = True) -> None:
        """Stream the report's file into a COPY job; record a bad file's error (or raise it, unless skipping).

        `count`: track the rows for the summary and progress (off when a file is read a second time).
        """
        export_file = report.export_file
        export_format = export_file.export_format
        if count:
            self.tracker.files.append(report)
        started = False
        batches = read_batches(
            export_file, self.summary.user_id, self.include_network_data, account=self.summary.account
        )
        times = AscendingTimes(export_format.time_column)
        try:
            first = next(batches, None)
            if first is not None:
                scratch = scratch or self._may_repeat(export_format, first)
                worker.start(self._job(report, scratch=scratch, times=times))
                started = True
                for batch in chain([first], batches):
                    if scratch:
                        times.add(batch)
                    worker.write(batch)
                    if count:
                        report.add(batch)
                        self.tracker.notify(export_file, batch.num_rows, False)
        except ExportFileError as exc:
            if started:
                worker.abort()
            report.error = exc
            # Another listener's file is not broken: the rest of the export is still this listener's to import.
            if not self.tracker.skip_invalid_files and not isinstance(exc, OtherListenerError):
                raise ImportRejectedError([exc]) from None
            log.warning("skipping %s", exc)
        else:
            if started:
                worker.end()
                self.known[export_format.name].append((report.first_played_at, report.last_played_at))
            elif count:
                self.summary.warnings.append(f"{export_file.name}: holds no plays (an empty list), nothing to import")
        if count:
            self.tracker.notify(export_file, 0, True)

    def _may_repeat(self, export_format: ExportFormat, first: pa.RecordBatch) -> bool:
        """Whether the file's first plays fall in a time range stored already or read earlier in this import."""
        start, end = time_range(first, export_format)
        known = self.known[export_format.name]
        return any(start <= known_end and known_start <= end for known_start, known_end in known)

    def _job(self, report: FileReport, *, scratch: bool, times: AscendingTimes) -> CopyJob:
        """The file's COPY; through the scratch table, an insert follows, which `times` (filled by the time
        the COPY ends) spares numbering the rows when no two of them can share a key."""
        export_format = report.export_file.export_format
        columns = sql.SQL(", ").join(map(sql.Identifier, self._columns(export_format)))
        if not scratch:
            target = raw_table(export_format)
            return CopyJob(self._copy_statement(target, columns), encode=self._encoder(report), tag=report)
        scratch_table = sql.Identifier(self.scratch[export_format.name])
        numbered = _insert_numbered(export_format, columns, scratch_table)
        # Numbering sorts the file's rows on the server, which makes the insert cost about 1.7 times as much.
        unnumbered = sql.SQL("insert into {} ({}) select {} from {} on conflict do nothing").format(
            raw_table(export_format), columns, columns, scratch_table
        )
        empty = sql.SQL("truncate {}").format(scratch_table)

        def insert_new_plays(cur: Any) -> int:
            cur.execute(unnumbered if times.strictly_ascending else numbered)
            inserted = cur.rowcount
            cur.execute(empty)
            return inserted

        return CopyJob(
            self._copy_statement(scratch_table, columns),
            encode=self._encoder(report),
            then=insert_new_plays,
            tag=report,
        )

    def _copy_statement(self, table: sql.Identifier, columns: sql.Composable) -> str:
        statement = sql.SQL("copy {} ({}) from stdin with (format text)").format(table, columns)
        return statement.as_string(self.cur)

    def _columns(self, export_format: ExportFormat) -> list[str]:
        return [
            USER_COLUMN,
            export_format.time_column,
            *(f.column for f in export_format.columns(self.include_network_data)),
            ITEM_KEY_COLUMN,
            FILE_NUMBER_COLUMN,
            LOAD_ID_COLUMN,
        ]

    def _encoder(self, report: FileReport) -> Callable[[pa.RecordBatch], bytes]:
        """Turns a batch of the file into COPY text, with the file's number and the load id; runs in the COPY
        worker's thread, mostly without the GIL."""
        constants = (str(report.number), self.summary.load_id)

        def encode(batch: pa.RecordBatch) -> bytes:
            return encode_rows(batch, constants)

        return encode


def _insert_numbered(export_format: ExportFormat, columns: sql.Composable, scratch: sql.Identifier) -> sql.Composed:
    """Insert the scratch table's rows (one file's) that are not stored yet, each with its occurrence: its rank,
    from 0, among the file's rows with the same key, by content (`formats.occurrence_order`). Rows read again
    get the numbers they got before, so they conflict with what is stored and add nothing."""
    key = [c for c in primary_key(export_format) if c != OCCURRENCE_COLUMN]
    order = [
        sql.SQL('{} collate "C" nulls first' if f.pg_type == "text" else "{} nulls first").format(
            sql.Identifier(f.column)
        )
        for f in occurrence_order(export_format)
    ]
    return sql.SQL(
        "insert into {stored} ({columns}, {occurrence})"
        " select {columns}, row_number() over (partition by {key} order by {order}) - 1 from {scratch}"
        " on conflict do nothing"
    ).format(
        stored=raw_table(export_format),
        columns=columns,
        occurrence=sql.Identifier(OCCURRENCE_COLUMN),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        order=sql.SQL(", ").join(order),
        scratch=scratch,
    )


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


def _analyze(cur: Any, export_format: ExportFormat) -> None:
    """Fresh statistics right away: dbt's incremental filters (new loads, a few days) only use the indexes when
    the planner knows how load ids and times are spread. Only the key, load and file columns, which dbt's
    models filter and join on: all columns take ANALYZE twice as long (bench/RESULTS.md).

    The load-id BRIN index is summarized too: pages added since its last summary are not in it, so every
    hourly `load_id > watermark` read would scan all of them (a 1M-play import: about 0.5 s per read, six
    reads per build). Autovacuum summarizes them only when it runs, and it may be off, as on these machines.
    """
    columns = [*primary_key(export_format), LOAD_ID_COLUMN, FILE_NUMBER_COLUMN]
    cur.execute(
        sql.SQL("analyze {} ({})").format(raw_table(export_format), sql.SQL(", ").join(map(sql.Identifier, columns)))
    )
    cur.execute(
        "select brin_summarize_new_values(%s::regclass)",
        (f"{RAW_SCHEMA}.{load_index_name(export_format)}",),
    )


def _stored_ranges(cur: Any, user_id: str, export_format: ExportFormat) -> list[tuple[datetime, datetime]]:
    """The time ranges of the files imported for the user before, from the import log."""
    cur.execute(
        sql.SQL(
            "select first_played_at, last_played_at from {} where user_id = %s and export_format = %s"
            " and first_played_at is not null"
        ).format(files_table()),
        (user_id, export_format.name),
    )
    return list(cur.fetchall())


def _create_scratch_table(cur: Any, export_format: ExportFormat) -> str:
    """A temporary twin of the format's raw table without its keys: where possibly repeated plays land first.
    Its defaults fill `occurrence`, which the COPY leaves out and the insert computes."""
    name = f"incoming_{export_format.name}"
    cur.execute(
        sql.SQL("create temporary table {} (like {} including defaults) on commit drop").format(
            sql.Identifier(name), raw_table(export_format)
        )
    )
    return name


def _log_files(cur: Any, summary: ImportSummary, reports: list[FileReport]) -> None:
    for report in reports:
        cur.execute(
            sql.SQL(
                "insert into {} (_dlt_load_id, user_id, file_number, source_file, export_format, file_kind,"
                " rows_read, first_played_at, last_played_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(files_table()),
            (
                summary.load_id,
                summary.user_id,
                report.number,
                report.export_file.name,
                report.export_file.export_format.name,
                report.export_file.kind,
                report.rows,
                report.first_played_at,
                report.last_played_at,
            ),
        )


def _exists(database: DatabaseUrl, table: str) -> bool:
    return _query(database, "select to_regclass(%s) is not null", (f"{RAW_SCHEMA}.{table}",))[0][0]


def _query(database: DatabaseUrl, statement: str, params: tuple = ()) -> list[tuple]:
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
