"""`python -m pipelines import-history PATH...`: the import with a progress bar and a summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.database import DatabaseUrl
from pipelines.export.importer import ImportSummary, import_history
from pipelines.export.inputs import Discovery, ExportFile


def run_import(
    database: DatabaseUrl,
    paths: Sequence[Path],
    *,
    console: Console,
    user_id: str | None = None,
    include_network_data: bool = False,
    skip_invalid_files: bool = False,
) -> ImportSummary:
    """Import `paths` into `database`, showing progress (files, rows, rows/s) and a summary on `console`."""
    display = _ProgressDisplay(console)
    with display.progress:
        summary = import_history(
            database,
            paths,
            user_id=user_id,
            include_network_data=include_network_data,
            skip_invalid_files=skip_invalid_files,
            on_discovered=display.discovered,
            on_progress=display.advance,
            on_stage=display.stage,
        )
    print_summary(summary, console, include_network_data)
    return summary


class _ProgressDisplay:
    """A rich progress bar over the export's files, with rows read and the current rate."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[rows]:>12,} rows"),
            TextColumn("{task.fields[rate]:>9,.0f} rows/s"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: TaskID | None = None
        self.rows = 0
        self.started = time.perf_counter()

    def discovered(self, found: Discovery) -> None:
        self.started = time.perf_counter()
        self.task = self.progress.add_task("reading", total=len(found.files), rows=0, rate=0.0)

    def advance(self, export_file: ExportFile, rows: int, done: bool) -> None:
        if self.task is None:
            return
        self.rows += rows
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.task,
            advance=1 if done else 0,
            description=Path(export_file.name).name,
            rows=self.rows,
            rate=self.rows / elapsed,
        )

    def stage(self, name: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=name)


def print_summary(summary: ImportSummary, console: Console, include_network_data: bool) -> None:
    """The end-of-import summary: rows read, loaded, duplicates skipped, rejected files with reasons."""
    table = Table(title=f"import-history for user {summary.user_id}", show_header=False, title_justify="left")
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("files read", f"{summary.files_read:,}")
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("rows loaded", f"{summary.rows_loaded:,}")
    for name, count in sorted(summary.loaded_by_table.items()):
        table.add_row(f"  into raw.{name}", f"{count:,}")
    table.add_row("duplicates skipped (already stored)", f"{summary.duplicates_skipped:,}")
    if summary.files_reread:
        table.add_row("files read twice (they repeated stored plays)", f"{summary.files_reread:,}")
    table.add_row("files rejected", f"{len(summary.rejected):,}")
    table.add_row("other export files (not streaming history)", f"{len(summary.files_skipped):,}")
    table.add_row("time", f"{summary.seconds:,.1f} s ({summary.rows_per_second:,.0f} rows/s)")
    table.add_row("IP addresses and user agents", "stored" if include_network_data else "not stored")
    console.print(table)
    for error in summary.rejected:
        console.print(f"[bold yellow]rejected:[/] {error}", highlight=False, soft_wrap=True)
    if summary.rows_loaded:
        console.print("Run `python -m pipelines transform` to model the imported plays (analytics.plays, coverage).")
