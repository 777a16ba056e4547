"""Shared by the reliability tests: count plays lost or duplicated, run the CLI as a killable subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines.database import DatabaseUrl
from pipelines.spotify.helpers import parse_played_at
from tests.conftest import query
from tests.reliability.report import record

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RECENTLY_PLAYED = "/v1/me/player/recently-played"


def stored_plays(database: DatabaseUrl) -> list[tuple[str, Any]]:
    """(user_id, played_at) of every row in raw.recently_played; empty when the table does not exist yet."""
    if query(database, "select to_regclass('raw.recently_played')") == [(None,)]:
        return []
    return query(database, "select user_id, played_at from raw.recently_played")


def lost_and_duplicated(server: Any, database: DatabaseUrl) -> tuple[int, int]:
    """Plays the server ever served that raw.recently_played lacks, and rows beyond one per play."""
    served = {(server.user_id, parse_played_at(item["played_at"])) for item in server.plays}
    stored = stored_plays(database)
    return len(served - set(stored)), len(stored) - len(set(stored))


def record_all_loaded(area: str, fault: str, server: Any, database: DatabaseUrl, *, tried: int, result: str) -> None:
    """Record the plays lost and duplicated against what the server served, then assert there are none.

    Recorded first, so a failing run's counts reach the report (which then differs from the doc) rather than
    vanishing with the assertion.
    """
    lost, duplicated = lost_and_duplicated(server, database)
    record(area, fault, tried=tried, lost=lost, duplicated=duplicated, result=result)
    assert (lost, duplicated) == (0, 0), f"{fault}: {lost} plays lost, {duplicated} duplicated"


def cli_process(env: dict[str, str], *args: str, **popen: Any) -> subprocess.Popen:
    """`python -m pipelines ARGS` in its own session (so a test can kill it with all its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines of a command's stderr."""
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_clear_error(stderr: str, *expected: str) -> str:
    """The command ended with exactly one `error:` line, containing `expected`, and printed no traceback."""
    lines = error_lines(stderr)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert "Traceback" not in stderr and not any(line.lstrip().startswith('File "') for line in lines)
    missing = [text for text in expected if text not in errors[0]]
    assert missing == [], errors[0]
    return errors[0]
