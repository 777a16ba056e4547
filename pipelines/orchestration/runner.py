"""Run the `spotify_elt` DAG once, end to end, under a real Airflow (metadata DB and home inside the project).

This is `make run`. Airflow's and dbt's output (about 2,500 lines) goes to a log file under the Airflow home,
`logs/make-run-<time>.log`; the screen shows where that file is, one line per task as it starts and ends
(`run_progress`), and a summary. A run that fails shows the whole log, and the command exits non-zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

from pipelines import orchestration, paths, transform
from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError
from pipelines.orchestration import docs as airflow_docs
from pipelines.orchestration.progress import (
    DbtResults,
    MetadataDatabase,
    ProgressLines,
    TaskInstance,
    plays_loaded,
)
from pipelines.settings import DAG_ID, POSTGRES_CONN_ID

if TYPE_CHECKING:
    from pipelines.sample_server.demo_year import DemoYear

DEFAULT_AIRFLOW_HOME = paths.PROJECT_ROOT / ".airflow"
POLL_SECONDS = 1.0
EXECUTION_MODE_SETTING = "SPOTIFY_ELT_DBT_EXECUTION"  # Cosmos' execution mode (pipelines.orchestration)

QUIET_ENV = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    # dlt would otherwise look up every config key in Airflow Variables (seconds per run).
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
}


def airflow_env(database: DatabaseUrl, airflow_home: Path = DEFAULT_AIRFLOW_HOME) -> dict[str, str]:
    """Environment for Airflow commands: project home and dags, the database as connection `spotify_postgres`."""
    return {
        **os.environ,
        **QUIET_ENV,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.DAGS_DIR),
        f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": str(database),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        # Cosmos' dbt-docs plugin shows what the DAG's docs task publishes (Browse > dbt Docs); keep a user's own.
        airflow_docs.PROJECTS_ENV: os.environ.get(airflow_docs.PROJECTS_ENV)
        or airflow_docs.projects_setting(airflow_docs.default_docs_dir(airflow_home)),
    }


@dataclass
class RunReport:
    """How a run went: for the summary, and for the tests."""

    log_file: Path
    succeeded: bool = False
    failure: str | None = None  # one line: which step or tasks failed
    seconds: float = 0.0
    task_states: dict[str, int] = field(default_factory=dict)  # final state -> tasks
    failed_tasks: list[str] = field(default_factory=list)
    plays_loaded: int | None = None  # as the load task reported it
    dbt: DbtResults = field(default_factory=DbtResults)
    progress_note: str | None = None  # why task progress could not be shown, if it could not


def run_dag_once(
    database: DatabaseUrl, airflow_home: Path = DEFAULT_AIRFLOW_HOME, *, say: Callable[[str], None] = print
) -> RunReport:
    """Migrate Airflow's metadata DB, parse the dbt project as the DAG's tasks will, then `airflow dags test` it.

    `say` receives the lines a person reads; everything Airflow and dbt print goes to the report's `log_file`.
    A failure does not raise: the report says what failed (`succeeded`, `failure`), the log says why.
    """
    started = time.monotonic()
    report = RunReport(log_file=new_log_file(airflow_home))
    env = {
        **airflow_env(database, airflow_home),
        "DBT_USE_COLORS": os.environ.get("DBT_USE_COLORS", "false"),  # a log file, not a terminal
        # `airflow dags test` runs one task at a time, and a deferred task's trigger inline: a Cosmos watcher consumer
        # would wait forever for a producer that cannot start before it ends. So each dbt task runs its own dbt
        # here (`local`), unless the setting says otherwise.
        EXECUTION_MODE_SETTING: os.environ.get(EXECUTION_MODE_SETTING) or "local",
    }
    clock = _Clock(say)
    say(f"Airflow's and dbt's full output: {report.log_file}")
    with report.log_file.open("w", encoding="utf-8") as log:
        # Airflow's configured metadata DB (honours airflow.cfg and AIRFLOW__DATABASE__*), looked up meanwhile.
        metadata_url = subprocess.Popen(
            [_airflow(), "config", "get-value", "database", "sql_alchemy_conn"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=paths.PROJECT_ROOT,
        )
        steps = (
            ("preparing Airflow's metadata database", [_airflow(), "db", "migrate"]),
            ("creating the pool that bounds calls to Spotify", orchestration.pool_command(_airflow())),
            ("parsing the dbt project as the DAG's tasks will", [sys.executable, "-m", "pipelines", "parse"]),
        )
        for title, command in steps:
            shown = _shown(command)
            clock.say(f"{title} ({shown})")
            code = _logged(command, env, log)
            if code != 0:
                metadata_url.kill()
                metadata_url.wait()
                report.failure = f"{shown} failed (exit code {code})"
                report.seconds = time.monotonic() - started
                return report
        url = (metadata_url.communicate()[0] or "").strip().splitlines()
        clock.say(f"running the DAG {DAG_ID} (airflow dags test): one line per task as it starts and ends")
        _run_dag(env, log, url[-1] if url and metadata_url.returncode == 0 else None, clock, report)
    report.dbt = DbtResults.from_log(report.log_file)
    report.seconds = time.monotonic() - started
    return report


def new_log_file(airflow_home: Path) -> Path:
    """A new `make-run-<local time>.log` in the Airflow home's `logs/`."""
    folder = airflow_home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"make-run-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for suffix in ("", *(f"-{n}" for n in range(1, 100))):
        try:
            (folder / f"{stem}{suffix}.log").touch(exist_ok=False)
        except FileExistsError:
            continue
        return (folder / f"{stem}{suffix}.log").resolve()
    raise FileExistsError(f"{folder / stem}*.log: too many runs in one second")


def print_log(path: Path, out: TextIO) -> None:
    """Copy the whole log to `out` (a failed run's log is what says why)."""
    out.flush()
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            out.write(line)
    out.flush()


class _Clock:
    """Lines prefixed with the time since the run began, like the task lines."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.started_at = datetime.now(UTC)
        self.emit = emit

    def say(self, line: str) -> None:
        seconds = int((datetime.now(UTC) - self.started_at).total_seconds())
        self.emit(f"[{seconds // 60:02d}:{seconds % 60:02d}] {line}")


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _shown(command: list[str]) -> str:
    """A command as a person would type it: `airflow db migrate`, `python -m pipelines parse`."""
    program = "python" if command[0] == sys.executable else Path(command[0]).name
    return " ".join([program, *command[1:]])


def _logged(command: list[str], env: dict[str, str], log: IO[str]) -> int:
    """Run `command` with its output appended to the log, after a line saying what runs."""
    log.write(f"$ {_shown(command)}\n")
    log.flush()
    result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=paths.PROJECT_ROOT)
    return result.returncode


def _run_dag(env: dict[str, str], log: IO[str], metadata_url: str | None, clock: _Clock, report: RunReport) -> None:
    """`airflow dags test`, with its task instances followed in the metadata DB while it runs."""
    command = [_airflow(), "dags", "test", DAG_ID, "-f", str(paths.DAGS_DIR / "spotify_elt.py")]
    progress = ProgressLines(clock.emit, clock.started_at)
    follower = _RunFollower(metadata_url, report)
    log.write(f"$ {_shown(command)}\n")
    log.flush()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=paths.PROJECT_ROOT,
        preexec_fn=transform._die_with_parent(),  # a killed `make run` leaves no DAG running on its own
    )
    try:
        while process.poll() is None:
            follower.follow(progress)
            time.sleep(POLL_SECONDS)
        follower.follow(progress)
    finally:
        if process.poll() is None:  # interrupted (Ctrl-C) or failed here: never leave the DAG running alone
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        follower.close()
    not_run = progress.not_run()
    if not_run:
        states = ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in sorted(not_run.items()))
        clock.say(f"tasks not run: {states}")
    report.task_states = dict(progress.states())
    report.failed_tasks = progress.failed()
    report.plays_loaded = follower.plays_loaded
    report.succeeded = process.returncode == 0 and follower.run_state in (None, "success")
    if not report.succeeded:
        failed = report.failed_tasks
        report.failure = (
            f"the DAG run failed: {len(failed)} task(s) failed ({', '.join(failed)})"
            if failed
            else f"the DAG run failed (airflow dags test exit code {process.returncode})"
        )


class _RunFollower:
    """Follows the run that `airflow dags test` creates; any trouble reading the metadata DB only costs progress."""

    def __init__(self, metadata_url: str | None, report: RunReport) -> None:
        self.report = report
        self.run_id: str | None = None
        self.run_state: str | None = None
        self.plays_loaded: int | None = None
        self._db: MetadataDatabase | None = None
        self._newest_before = 0
        self._accounts: list[str] = []
        if metadata_url is None:
            self._give_up("Airflow did not say where its metadata database is")
            return
        try:
            self._db = MetadataDatabase(metadata_url)
            self._newest_before = self._db.newest_run(DAG_ID)
        except Exception as exc:  # progress is a nicety: the run goes on without it
            self._give_up(f"cannot read Airflow's metadata database ({type(exc).__name__})")

    def follow(self, progress: ProgressLines) -> None:
        if self._db is None:
            return
        try:
            found = self._db.run_after(DAG_ID, self._newest_before)
            if found is None:  # `airflow dags test` has not created its run yet
                return
            self.run_id, self.run_state = found
            progress.update(self._named(self._db.task_instances(DAG_ID, self.run_id)))
            if self.run_state in ("success", "failed"):
                self.plays_loaded = plays_loaded(lambda key: self._db.xcom_values(DAG_ID, self.run_id, key))
        except Exception as exc:  # e.g. SQLite busy for a moment: the next poll tries again
            self.report.progress_note = f"reading Airflow's metadata database failed at times ({type(exc).__name__})"

    def _named(self, instances: list[TaskInstance]) -> list[TaskInstance]:
        """Mapped loads named by their account while they run, as Airflow names them once they end.

        Airflow renders `map_index_template` only when a task instance finishes; until then a load's account is
        the one at its map index in the list the loads were expanded over.
        """

        def unnamed(ti: TaskInstance) -> bool:
            return ti.task_id == orchestration.LOAD_TASK_ID and ti.map_index >= 0 and ti.label is None

        if not any(unnamed(ti) for ti in instances):
            return instances
        if not self._accounts:
            values = self._db.xcom_values(DAG_ID, self.run_id, "return_value", orchestration.ACCOUNTS_TASK_ID)
            self._accounts = values[0] if values and isinstance(values[0], list) else []
        return [
            replace(ti, label=str(self._accounts[ti.map_index]))
            if unnamed(ti) and ti.map_index < len(self._accounts)
            else ti
            for ti in instances
        ]

    def _give_up(self, why: str) -> None:
        self.report.progress_note = f"{why}: task progress is only in the log"

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def summary(report: RunReport, database: DatabaseUrl, demo_year: DemoYear | None = None) -> list[str]:
    """The lines after a green run: what was loaded and built, where the marts are, how to look at them."""
    tasks = ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in sorted(report.task_states.items()))
    minutes, seconds = divmod(int(report.seconds), 60)
    source = "the sample server (demo)" if demo_year else "Spotify"
    loaded = "?" if report.plays_loaded is None else f"{report.plays_loaded:,}"
    dbt = report.dbt
    tests = f"{dbt.tests_with('pass'):,} tests passed"
    tests += "".join(
        f", {dbt.tests_with(status)} {label}"
        for status, label in (("warn", "warned"), ("skip", "skipped"))
        if dbt.tests_with(status)
    )
    wrapped = f"--from {_span(demo_year, ' --to ')}" if demo_year else f"--year {datetime.now(UTC).year}"
    lines = [
        "",
        f"The DAG {DAG_ID} ran green in {minutes}:{seconds:02d} ({tasks or 'no task states read'}).",
        f"  loaded      {loaded} new plays from {source} into raw.recently_played",
        *(
            [f"  history     a generated year ({_span(demo_year)}), imported as a Spotify data export (demo)"]
            if demo_year
            else []
        ),
        f"  dbt         {dbt.models_in('staging')} staging models and {dbt.models_in('analytics')} marts built, "
        + tests,
        f"  your marts  schema analytics in {database.redacted()}{_plays_in_marts(database)}",
        "  query them  make psql, then for instance:",
        "                select played_at, track_name, artist_name, album_name from analytics.listening_history",
        "                order by played_at desc limit 20;",
        f"              .venv/bin/python -m pipelines wrapped {wrapped}   (your Wrapped: HTML and charts)",
        "              make docs   (the dbt docs: every model, column and test)",
        f"  full log    {report.log_file}",
    ]
    if report.progress_note:
        lines.append(f"  note        {report.progress_note}")
    return lines


def _plays_in_marts(database: DatabaseUrl) -> str:
    """`: analytics.plays holds N plays`, or nothing when it cannot be read."""
    try:
        conn = database.connect()
    except PipelineError:
        return ""
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass('analytics.plays') is not null")
            if not cur.fetchone()[0]:
                return ""
            cur.execute("select count(*) from analytics.plays")
            return f": analytics.plays holds {cur.fetchone()[0]:,} plays"
    finally:
        conn.close()


def _span(year: DemoYear, between: str = " to ") -> str:
    return f"{year.first_play_at:%Y-%m-%d}{between}{year.last_day:%Y-%m-%d}"
