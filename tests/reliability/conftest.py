"""Fixtures for fault, crash and security tests, and the check of docs/reliability.md at the end of a session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipelines.database import DatabaseUrl, ensure_role_and_database
from pipelines.database import embedded as embedded_postgres
from pipelines.load import default_pipelines_dir
from tests.reliability import report as reliability_report
from tests.test_cli import cli_env, spotify_env

HERE = Path(__file__).resolve().parent


TOKEN_KEY = Fernet.generate_key().decode()


@pytest.fixture
def loader_env(spotify_server, database_url: DatabaseUrl, tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI subprocess that loads from the test's Spotify server into the test's database."""
    return cli_env(
        tmp_path,
        DATABASE_URL=str(database_url),
        COLUMNS="500",
        # the key of the accounts' stored tokens, shared with in-process Airflow task bodies (not the checkout's)
        SPOTIFY_TOKEN_KEY=TOKEN_KEY,
        **spotify_env(spotify_server),
    )


@pytest.fixture
def child_pipelines_dir(database_url: DatabaseUrl) -> Iterator[Path]:
    """The dlt working dir a CLI subprocess uses for the test database (under .data/dlt), removed afterwards."""
    path = default_pipelines_dir(database_url)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, DatabaseUrl]]:
    """A PostgreSQL server of this test's own, to stop and start at will: (data dir, pipeline URL)."""
    data_dir = tmp_path_factory.mktemp("own-postgres")
    admin = embedded_postgres.start_server(data_dir)
    database = ensure_role_and_database(admin, "pipeline", "pipeline-password-0e5f", "history")
    yield data_dir, database
    embedded_postgres.stop_server(data_dir)


@pytest.fixture(scope="session")
def elt_dagbag(airflow_db):
    """The project's DAG folder parsed by Airflow, rendered from a fresh dbt manifest.

    In the per-model design: these tests run it with dag.test(), one task at a time, where a watcher that
    starts before the producer would wait forever (the watcher design runs on a real scheduler in
    tests/deployment)."""
    from airflow.dag_processing.dagbag import DagBag

    from pipelines import paths, transform

    # `dbt parse` never connects, so a placeholder database is enough to render the profile.
    transform.parse(DatabaseUrl("parse", "unused", "127.0.0.1", 5432, "parse"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPOTIFY_ELT_DBT_EXECUTION", "local")
        dagbag = DagBag(dag_folder=str(paths.DAGS_DIR))
    assert dagbag.import_errors == {}
    return dagbag


# --- docs/reliability.md is checked against what this session measured --------------------------------

_session_state = {"deselected": False, "failed": False}


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any(HERE in Path(item.fspath).parents for item in items):
        _session_state["deselected"] = True


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and report.nodeid.startswith("tests/reliability/"):
        _session_state["failed"] = True


def _ran_every_reliability_file(session: pytest.Session) -> bool:
    files = {path.name for path in HERE.glob("test_*.py")}
    collected = {Path(item.fspath).name for item in session.items if HERE in Path(item.fspath).parents}
    return files <= collected and not _session_state["deselected"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not reliability_report.RECORDED:
        return
    complete = exitstatus == 0 and not _session_state["failed"] and _ran_every_reliability_file(session)
    if os.environ.get("RELIABILITY_REPORT") == "update":
        if complete:
            reliability_report.rewrite()
            print(f"\nrewrote the table in {reliability_report.DOC}")
        else:
            print("\nRELIABILITY_REPORT=update needs a complete, passing run of tests/reliability; nothing written")
        return
    problems = reliability_report.differences(complete)
    if problems:
        print(f"\n{reliability_report.DOC} differs from what the tests measured (RELIABILITY_REPORT=update fixes it):")
        for problem in problems:
            print(f"- {problem}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
