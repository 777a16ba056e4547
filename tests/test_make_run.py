"""`make run` as a person meets it: `python -m pipelines airflow-run` from an empty home, with nothing configured.

Everything is real and runs in subprocesses: the embedded PostgreSQL (the command starts it), Airflow (`airflow db
migrate`, `airflow dags test`), dbt, and the bundled sample server standing in for Spotify. A DAG run takes one to
three minutes, so there are three: a first demo run, a second one that must add nothing, and one that fails.

The embedded server keeps its data in `paths.DATA_DIR` (`.data/` in the checkout), which no setting moves. These
tests point it at a temp dir in every Python process they start (the CLI, Airflow, the tasks it runs, dbt) with a
`sitecustomize` module on PYTHONPATH, so a developer's own `.data/` is never touched. The temp dirs are not under
pytest's: PostgreSQL runs as another user, and a pytest session starting meanwhile makes pytest's root 0700.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import demo
from pipelines.database import DatabaseUrl
from pipelines.database import embedded as embedded_postgres
from pipelines.errors import ConfigError
from tests.conftest import query
from tests.reliability.helpers import cli_process
from tests.test_cli import run_cli as pipelines  # `.venv/bin/python -m pipelines ...`, as the Makefile runs it

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_RUN_TIMEOUT = 900
SITECUSTOMIZE = '''\
"""Test only (tests/test_make_run.py): the project's data dir in a temp dir, in every Python process started."""
import os

if os.environ.get("TEST_PIPELINES_DATA_DIR"):
    from pathlib import Path

    from pipelines import paths

    paths.DATA_DIR = Path(os.environ["TEST_PIPELINES_DATA_DIR"])
'''
# What the Makefile exports for every command it runs.
MAKEFILE_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
}
# Settings a developer's shell, or another test, may have: none of them exists on a fresh machine.
NOT_ON_A_FRESH_MACHINE = ("SPOTIFY_", "DATABASE_URL", "AIRFLOW", "DLT_", "DBT_", "EMBEDDED_POSTGRES", "PG")
PROGRESS_LINE = re.compile(r"^\[\d\d:\d\d\] +\d+/\d+  (?P<verb>\S+) +(?P<task>\S+)(?: \((?P<seconds>[\d.]+) s\))?")


def fresh_machine(root: Path, **settings: str) -> dict[str, str]:
    """The environment of a fresh clone's shell: an empty HOME, no settings, the project's state under `root`."""
    site = root / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    for folder in ("home", "data", "dlt-project"):
        (root / folder).mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(NOT_ON_A_FRESH_MACHINE)}
    env.update(MAKEFILE_ENV)
    env.update(
        HOME=str(root / "home"),
        DLT_PROJECT_DIR=str(root / "dlt-project"),  # no .dlt/secrets.toml: no Spotify credentials anywhere
        TEST_PIPELINES_DATA_DIR=str(root / "data"),
        SPOTIFY_ELT_AIRFLOW_HOME=str(root / "airflow"),
        PYTHONPATH=os.pathsep.join([str(site), str(PROJECT_ROOT)]),
    )
    env.update(settings)
    return env


def make_run(env: dict[str, str], timeout: float = DAG_RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """`python -m pipelines airflow-run` (what `make run` runs); on a timeout, it and everything it started die."""
    process = cli_process(env, "airflow-run")
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@contextlib.contextmanager
def machine_root() -> Iterator[Path]:
    """A temp dir for a fresh machine; the embedded server started under it is stopped, then the dir removed."""
    root = Path(tempfile.mkdtemp(prefix="make-run-"))
    try:
        yield root
    finally:
        try:
            embedded_postgres.stop_server(root / "data" / "postgres")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def empty_home() -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh machine's root and environment; the embedded server the commands start is stopped afterwards."""
    with machine_root() as root:
        yield root, fresh_machine(root)


def log_files(output: str) -> list[Path]:
    """The log file paths the run printed, at the start and in the summary."""
    return [Path(path) for path in re.findall(r"full (?:output:|log) +(\S+\.log)", output)]


def progress(output: str) -> list[re.Match]:
    return [match for line in output.splitlines() if (match := PROGRESS_LINE.match(line))]


def airflow_task_ids(airflow_home: Path) -> set[str]:
    """The task instances of the newest DAG run, as Airflow recorded them."""
    with sqlite3.connect(airflow_home / "airflow.db") as conn:
        rows = conn.execute(
            "select task_id, map_index, rendered_map_index from task_instance"
            " where run_id = (select run_id from dag_run order by id desc limit 1)"
        ).fetchall()
    # a mapped instance is shown with its label: the load of the account `default`
    return {task if index < 0 else f"{task}[{label}]" for task, index, label in rows}


def demo_counts(database: DatabaseUrl) -> dict[str, int]:
    tables = ("analytics.plays", "raw.recently_played", "raw.export_extended_plays", "raw.export_files")
    return {table: query(database, f"select count(*) from {table}")[0][0] for table in tables}


@pytest.mark.timeout(2 * DAG_RUN_TIMEOUT + 120)
def test_make_run_from_an_empty_home_builds_a_year_of_demo_data_and_a_second_run_adds_nothing(empty_home):
    root, env = empty_home

    first = make_run(env)

    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-5000:]
    # The embedded server, started for this run, under the (temp) data dir.
    words = " ".join(output.split())  # rich wraps long lines at 80 columns when writing to a pipe
    assert re.search(r"DATABASE_URL is not set: using the embedded PostgreSQL at postgresql://spotify:\*\*\*@", words)
    assert (root / "data" / "postgres" / "pgdata" / "PG_VERSION").exists()
    url = pipelines(env, "db", "url")
    assert url.returncode == 0, url.stderr
    database = DatabaseUrl.parse(url.stdout.strip())
    assert database.password not in output

    # Loud about demo data, before the run and after it.
    lines = progress(output)
    assert output.count("DEMO DATA") == 2
    assert output.index("DEMO DATA") < output.index(lines[0].group(0)) < output.rindex(lines[-1].group(0))
    assert output.rindex(lines[-1].group(0)) < output.rindex("DEMO DATA")

    # Each task of the run, whatever its name, started and succeeded, with how long it took.
    tasks = airflow_task_ids(root / "airflow")
    assert len(tasks) > 2
    assert {line["task"] for line in lines if line["verb"] == "started"} == tasks
    assert {line["task"] for line in lines if line["verb"] == "success" and line["seconds"]} == tasks
    assert len(lines) == 2 * len(tasks)

    # Airflow's and dbt's output went to the log file, named at the start and in the summary.
    first_log, last_log = log_files(output)
    assert first_log == last_log and first_log.parent == root / "airflow" / "logs"
    log = first_log.read_text()
    assert "DagRun Finished" in log and "OK created sql incremental model analytics.plays" in log
    assert database.password not in log
    assert len(output.splitlines()) < len(log.splitlines()) / 5

    # A year of plays: the demo's export, plus the 50 plays the sample server shows.
    year = demo.demo_year_of(database)
    expected = year.export_music_plays + len(year.recent_plays)
    assert 3_000 < expected == query(database, "select count(*) from analytics.plays")[0][0]
    assert query(database, "select source, count(*) from analytics.plays group by 1 order by 1") == [
        ("api", len(year.recent_plays)),
        ("export", year.export_music_plays),
    ]
    assert f"imported {len(year.export_plays):,} plays of a generated year ({year.first_play_at:%Y-%m-%d}" in output

    # The summary: what was loaded and built, where the marts are, how to query them.
    assert f"loaded      {len(year.recent_plays)} new plays from the sample server (demo)" in output
    assert re.search(r"dbt         \d+ staging models and 1\d marts built, \d{2,} tests passed", output)
    assert f"schema analytics in {database.redacted()}: analytics.plays holds {expected:,} plays" in output
    assert "make psql" in output and "from analytics.listening_history" in output
    assert f"python -m pipelines wrapped --from {year.first_play_at:%Y-%m-%d} --to {year.last_day:%Y-%m-%d}" in output
    counts = demo_counts(database)

    second = make_run(env)

    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-5000:]
    assert "is imported already" in output and "loaded      0 new plays" in output
    assert demo_counts(database) == counts
    assert log_files(output)[0] != first_log and log_files(output)[0].exists()


def test_db_commands_start_print_and_stop_the_embedded_server():
    with machine_root() as root:
        env = fresh_machine(root)
        started = pipelines(env, "db", "start")
        assert started.returncode == 0, started.stderr
        assert re.search(r"postgresql://spotify:\*\*\*@127\.0\.0\.1:\d+/spotify", started.stderr)
        assert (root / "data" / "postgres" / "pgdata" / "PG_VERSION").exists()

        url = pipelines(env, "db", "url")
        assert url.returncode == 0, url.stderr
        database = DatabaseUrl.parse(url.stdout.strip())
        assert database.password not in started.stdout + started.stderr
        assert query(database, "select current_user, current_database()") == [("spotify", "spotify")]

        stopped = pipelines(env, "db", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stderr.strip() == "stopped"
        with pytest.raises(ConfigError, match="cannot connect"):
            database.connect(connect_timeout=3)
        assert pipelines(env, "db", "stop").stderr.strip() == "the embedded server was not running"


@pytest.mark.timeout(DAG_RUN_TIMEOUT + 60)
def test_a_failing_run_shows_the_whole_log_and_exits_non_zero(postgres_admin, database_url, tmp_path):
    # A database where the pipeline's role may not create dbt's staging views: the first dbt tasks fail, for real.
    admin = postgres_admin.with_dbname(database_url.dbname)
    query(admin, "create schema staging")  # owned by the superuser, with no privileges for the pipeline's role
    env = fresh_machine(tmp_path, DATABASE_URL=str(database_url))

    result = make_run(env)

    assert result.returncode == 1
    log_file = log_files(result.stderr)[0]
    # the CLI's own error is one line, the last (the log above holds Airflow's tracebacks, as it should)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    error = errors[0]
    assert error.startswith("error: the DAG run failed: ")
    assert error.endswith(f"the full log is above and in {log_file}")
    assert log_file.read_text() in result.stderr  # the whole log, as it is
    assert "permission denied for schema staging" in result.stderr
    lines = progress(result.stderr)
    failed = [line["task"] for line in lines if line["verb"] == "FAILED"]
    assert failed and all(task in error for task in failed)
    # what never ran because of them is counted in one line, not listed
    assert "upstream_failed" not in {line["verb"] for line in lines}
    assert re.search(r"tasks not run: \d+ upstream failed", result.stderr)
    assert result.stderr.count("DEMO DATA") == 2
    assert database_url.password not in result.stdout + result.stderr
