"""What an import has read so far, file by file: counts, time ranges and errors, for progress and the summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.export.formats import ExportFormat
from pipelines.export.inputs import ExportFile
from pipelines.export.problems import ExportFileError


@dataclass
class FileReport:
    """What was read from one file."""

    export_file: ExportFile
    number: int  # within the import, from 1: what the file's plays store (`file_number`)
    rows: int = 0
    first_played_at: datetime | None = None
    last_played_at: datetime | None = None
    error: ExportFileError | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        """Count a batch of the file's plays and widen the file's time range."""
        first, last = time_range(batch, self.export_file.export_format)
        self.first_played_at = min(first, self.first_played_at or first)
        self.last_played_at = max(last, self.last_played_at or last)
        self.rows += batch.num_rows


@dataclass
class ReadTracker:
    """Counts what the import read, file by file, and tells a progress display.

    Args:
        skip_invalid_files: record a bad file's error and go on with the next file, instead of raising.
        on_progress: called with (file, rows just read, whether the file is done).
    """

    skip_invalid_files: bool = False
    on_progress: Callable[[ExportFile, int, bool], None] | None = None
    files: list[FileReport] = field(default_factory=list)

    @property
    def rejected(self) -> list[ExportFileError]:
        return [report.error for report in self.files if report.error is not None]

    @property
    def accepted(self) -> list[FileReport]:
        return [report for report in self.files if report.error is None and report.rows]

    @property
    def rows_read(self) -> int:
        return sum(report.rows for report in self.files if report.error is None)

    def notify(self, export_file: ExportFile, rows: int, done: bool) -> None:
        if self.on_progress is not None:
            self.on_progress(export_file, rows, done)


class AscendingTimes:
    """Whether a file's end times, batch after batch, only ever grow. Then no two of its plays share a key
    (the user is the same, the times differ), so its rows need no numbering: every one is occurrence 0."""

    def __init__(self, time_column: str) -> None:
        self.time_column = time_column
        self.strictly_ascending = True
        self._last: str | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        """Look at the file's next batch."""
        if not self.strictly_ascending or not batch.num_rows:
            return
        # The reader keeps times as validated UTC text of one format, which sorts like the times it holds.
        times = batch.column(self.time_column)
        count = len(times)
        after_previous = self._last is None or times[0].as_py() > self._last
        within = count == 1 or pc.all(pc.less(times.slice(0, count - 1), times.slice(1))).as_py()
        self.strictly_ascending = after_previous and within
        self._last = times[count - 1].as_py()


def time_range(batch: pa.RecordBatch, export_format: ExportFormat) -> tuple[datetime, datetime]:
    """When the batch's first and last plays ended."""
    # The reader keeps times as validated UTC text, which sorts like the times it holds.
    first, last = pc.min_max(batch.column(export_format.time_column)).values()
    return _as_time(first.as_py()), _as_time(last.as_py())


def _as_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
