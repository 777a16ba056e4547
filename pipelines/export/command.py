"""`python -m pipelines import-history PATH...`: the import with a progress bar and a summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError
from pipelines.export.importer import ImportSummary, import_history
from pipelines.export.inputs import Discovery, ExportFile
from pipelines.spotify.accounts import resolve_account

log = logging.getLogger(__name__)


def run_import(
    database: DatabaseUrl,
    paths: Sequence[Path],
    *,
    console: Console,
    user_id: str | None = None,
    account: str | None = None,
    include_network_data: bool = False,
    skip_invalid_files: bool = False,
) -> ImportSummary:
    """Import `paths` into `database`, showing progress (files, rows, rows/s) and a summary on `console`.

    The plays are the Spotify user of `account` (`--account`); without it, of the only account, else of `user_id`
    or the one user in raw.recently_played, as before accounts (`accounts.resolve_account`).

    Raises:
        ConfigError: several accounts and none chosen, or an unknown account.
        PipelineError: the import failed (nothing was imported), or every file with plays was another listener's;
            one line, never a traceback, even for a failure no one foresaw (its traceback is logged at debug
            level: `--verbose` shows it).
    """
    chosen = resolve_account(database, account, user_id=user_id)
    if chosen is not None and chosen.user_id is not None:
        user_id, account = chosen.user_id, chosen.name
    display = _ProgressDisplay(console)
    try:
        with display.progress:
            summary = import_history(
                database,
                paths,
                user_id=user_id,
                account=account,
                include_network_data=include_network_data,
                skip_invalid_files=skip_invalid_files,
                on_discovered=display.discovered,
                on_progress=display.advance,
                on_stage=display.stage,
            )
    except PipelineError:
        raise
    except Exception as exc:
        log.debug("import-history failed", exc_info=True)
        raise PipelineError(
            f"the import failed, nothing was imported: {type(exc).__name__}: {_first_line(exc)} "
            "(run with --verbose for details)"
        ) from None
    print_summary(summary, console, include_network_data)
    if summary.refused and not summary.rows_read:
        whose = f"account {summary.account}" if summary.account else f"Spotify user {summary.user_id}"
        raise PipelineError(
            f"nothing was imported: every file with plays is another listener's export, not {whose}'s "
            "(see `refused` above)"
        )
    return summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"


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
    whose = (
        f"account {summary.account} (Spotify user {summary.user_id})" if summary.account else f"user {summary.user_id}"
    )
    table = Table(title=f"import-history for {whose}", show_header=False, title_justify="left")
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("files read", f"{summary.files_read:,}")
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("rows loaded", f"{summary.rows_loaded:,}")
    for name, count in sorted(summary.loaded_by_table.items()):
        table.add_row(f"  into raw.{name}", f"{count:,}")
    table.add_row("duplicates skipped (already stored)", f"{summary.duplicates_skipped:,}")
    if summary.files_reread:
        table.add_row("files read twice (plays sharing a key, or stored already)", f"{summary.files_reread:,}")
    table.add_row("files rejected", f"{len(summary.rejected):,}")
    if summary.refused:
        table.add_row("files refused (another listener's export)", f"{len(summary.refused):,}")
    table.add_row("other export files (not streaming history)", f"{len(summary.files_skipped):,}")
    table.add_row("time", f"{summary.seconds:,.1f} s ({summary.rows_per_second:,.0f} rows/s)")
    table.add_row("IP addresses and user agents", "stored" if include_network_data else "not stored")
    console.print(table)
    for error in summary.rejected:
        console.print(f"[bold yellow]rejected:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    for refused in summary.refused:
        console.print(f"[bold yellow]refused:[/] {escape(str(refused))}", highlight=False, soft_wrap=True)
    for warning in summary.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if summary.files_skipped:
        names = ", ".join(Path(name).name for name in summary.files_skipped)
        console.print(f"other export files, not loaded: {escape(names)}", highlight=False, soft_wrap=True)
    if summary.rows_loaded:
        console.print("Run `python -m pipelines transform` to model the imported plays (analytics.plays, coverage).")
