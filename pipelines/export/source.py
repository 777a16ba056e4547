"""dlt source for Spotify's privacy export: one resource per history format.

The reader yields Arrow record batches; Arrow's CSV writer streams them into one CSV file per export file, and
the resource hands each file to dlt as an import (`dlt.mark.with_file_import`), dlt's fastest path: no row is
normalised in Python, the file goes into the load package as is and reaches PostgreSQL through `COPY`, and the
load step copies several files in parallel. Each resource lands one import in an `*_incoming` table;
`importer` then moves the new plays into the deduplicated raw tables in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from dlt.sources import DltResource

from pipelines.export.formats import FORMATS, ExportFormat, arrow_schema, dlt_columns
from pipelines.export.inputs import ExportFile
from pipelines.export.problems import ExportFileError
from pipelines.export.reader import read_batches

log = logging.getLogger(__name__)


@dataclass
class FileReport:
    """What was read from one file."""

    export_file: ExportFile
    rows: int = 0
    first_played_at: datetime | None = None
    last_played_at: datetime | None = None
    error: ExportFileError | None = None


@dataclass
class ReadTracker:
    """Counts what the source read, file by file, and tells a progress display.

    Args:
        skip_invalid_files: record a bad file's error and go on with the next file, instead of raising.
        on_progress: called with (file, rows just read, bytes of the file read so far or None when done).
    """

    skip_invalid_files: bool = False
    on_progress: Callable[[ExportFile, int, bool], None] | None = None
    files: list[FileReport] = field(default_factory=list)

    @property
    def rejected(self) -> list[ExportFileError]:
        return [report.error for report in self.files if report.error is not None]

    @property
    def rows_read(self) -> int:
        return sum(report.rows for report in self.files if report.error is None)

    def notify(self, export_file: ExportFile, rows: int, done: bool) -> None:
        if self.on_progress is not None:
            self.on_progress(export_file, rows, done)


@dlt.source(name="spotify_export")
def spotify_export(
    files: Sequence[ExportFile],
    user_id: str,
    work_dir: Path,
    include_network_data: bool = False,
    tracker: ReadTracker | None = None,
) -> list[DltResource]:
    """The plays of an export's streaming-history files, attributed to `user_id`.

    Args:
        files: The files to read (see `inputs.discover`).
        user_id: The Spotify user the plays belong to (the export itself has no reliable user id).
        work_dir: Where the CSV files are written before dlt takes them into its load package.
        include_network_data: Also load IP addresses and user agents (off by default: privacy).
        tracker: Collects per-file counts and errors; a fresh one when None.

    Returns:
        One resource per format, each writing its format's `*_incoming` table.
    """
    tracker = tracker if tracker is not None else ReadTracker()
    return [
        dlt.resource(
            _csv_files(
                export_format,
                [f for f in files if f.export_format is export_format],
                user_id,
                include_network_data,
                tracker,
                work_dir,
            ),
            name=export_format.incoming_table,
            write_disposition="append",
            columns=dlt_columns(export_format, include_network_data),
        )
        for export_format in FORMATS
    ]


def _csv_files(
    export_format: ExportFormat,
    files: list[ExportFile],
    user_id: str,
    include_network_data: bool,
    tracker: ReadTracker,
    work_dir: Path,
) -> Iterator[Any]:
    """One CSV file per export file, handed to dlt as a file import.

    A bad file raises (nothing of the import is loaded), or, when skipping is allowed, is recorded and left
    out: its CSV is never handed to dlt.
    """
    schema = arrow_schema(export_format, include_network_data)
    for number, export_file in enumerate(files):
        report = FileReport(export_file)
        tracker.files.append(report)
        csv_path = work_dir / f"{export_format.name}-{number:05d}.csv"
        try:
            with pa_csv.CSVWriter(str(csv_path), schema) as writer:
                for batch in read_batches(export_file, user_id, include_network_data):
                    writer.write_batch(batch)
                    # ISO-like UTC text sorts like the times it holds.
                    first, last = pc.min_max(batch.column(export_format.time_column)).values()
                    report.first_played_at = _earliest(report.first_played_at, _as_time(first.as_py()))
                    report.last_played_at = _latest(report.last_played_at, _as_time(last.as_py()))
                    report.rows += batch.num_rows
                    tracker.notify(export_file, batch.num_rows, False)
        except ExportFileError as exc:
            report.error = exc
            csv_path.unlink(missing_ok=True)
            if not tracker.skip_invalid_files:
                raise
            log.warning("skipping %s", exc)
        else:
            if report.rows:
                yield dlt.mark.with_file_import(str(csv_path), "csv", report.rows)
        tracker.notify(export_file, 0, True)


def _as_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current
