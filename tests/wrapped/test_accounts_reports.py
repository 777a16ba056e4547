"""`wrapped --account NAME` and `coverage [--account NAME]` for two listeners, on marts built by a real dbt run.

alice (Spotify user listener-1) has API plays with a detected gap (loaded from the loopback Spotify server) and a
2025 export; bob (bob-id) only an older export (`endsong_0.json`, which names him) of 2022.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.database import DatabaseUrl
from pipelines.export.importer import import_history
from pipelines.spotify.token_store import AccountStore, TokenCipher
from pipelines.transform import run_dbt
from tests.conftest import fresh_database, load_from, query, sample_spotify_server
from tests.export.conftest import EXTENDED_DIR, endsong_play, track_play, write_json
from tests.spotify.test_gaps import add_plays

KEY = Fernet.generate_key().decode()
API_START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
ALICE_FIRST = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BOB_FIRST = datetime(2022, 6, 1, 20, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def add_account(database: DatabaseUrl, name: str, user_id: str | None) -> None:
    store = AccountStore(database, cipher=TokenCipher([KEY], "the test key"))
    store.add(name, f"{name}-refresh-token", user_id=user_id, client_id="test-client-id", authorised_at=API_START)


@pytest.fixture(scope="module")
def two_listeners(postgres_admin, test_role_password, tmp_path_factory) -> Iterator[DatabaseUrl]:
    """Loaded, imported and built once; tests only read it."""
    workdir = tmp_path_factory.mktemp("two-listeners")
    with fresh_database(postgres_admin, test_role_password) as database:
        with sample_spotify_server() as server:  # its listener is listener-1
            first = add_plays(server, 10, API_START)
            load_from(server, database, workdir)
            add_plays(server, 60, first[-1] + timedelta(minutes=5))  # more than 50 between two loads: a gap
            load_from(server, database, workdir)
        add_account(database, "alice", "listener-1")
        add_account(database, "bob", "bob-id")
        alice = [track_play(ALICE_FIRST + n * DAY, n) for n in range(5)]
        bob = [endsong_play(BOB_FIRST + n * DAY, 100 + n, username="bob-id") for n in range(3)]
        import_history(
            database,
            [write_json(workdir / "alice" / EXTENDED_DIR / "Streaming_History_Audio_2025_0.json", alice)],
            user_id="listener-1",
            account="alice",
        )
        import_history(
            database, [write_json(workdir / "bob" / "MyData" / "endsong_0.json", bob)], user_id="bob-id", account="bob"
        )
        run_dbt(database, "run", "--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs"))
        yield database


@pytest.fixture
def cli(monkeypatch):
    """`python -m pipelines ...` in-process on `database`; the result's output has stdout and stderr."""
    monkeypatch.setenv("COLUMNS", "250")

    def run(database: DatabaseUrl, *args: str):
        monkeypatch.setenv("DATABASE_URL", str(database))
        return CliRunner().invoke(app, [*args])

    return run


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def stat(page: Path, name: str) -> str:
    return re.search(rf'data-stat="{name}">([^<]+)<', page.read_text(encoding="utf-8")).group(1)


# -- wrapped ---------------------------------------------------------------------------------------------------------


def test_wrapped_with_an_account_wraps_that_listener_s_plays(two_listeners, cli, tmp_path):
    bob = cli(two_listeners, "wrapped", "--account", "bob", "--year", "2022", "-o", str(tmp_path / "bob"))
    alice = cli(two_listeners, "wrapped", "--account", "alice", "--year", "2025", "-o", str(tmp_path / "alice"))

    assert bob.exit_code == 0, bob.output
    assert alice.exit_code == 0, alice.output
    assert "Wrapped 2022 for bob: 10 minutes, 3 plays" in bob.output
    assert "Wrapped 2025 for alice: 17 minutes, 5 plays" in alice.output
    assert stat(tmp_path / "bob" / "index.html", "plays") == "3"
    assert stat(tmp_path / "alice" / "index.html", "plays") == "5"
    assert "bob-id &middot; 2022-01-01" in (tmp_path / "bob" / "index.html").read_text(encoding="utf-8")


def test_wrapped_of_one_listener_never_shows_the_other_s_plays(two_listeners, cli, tmp_path):
    result = cli(two_listeners, "wrapped", "--account", "alice", "--year", "2022", "-o", str(tmp_path))

    assert result.exit_code == 1
    assert error_lines(result.output) == [
        "error: no plays of listener-1 between 2022-01-01 and 2022-12-31: nothing to wrap"
    ]
    assert not (tmp_path / "index.html").exists()


def test_wrapped_without_an_account_among_several_is_one_error_line_listing_them(two_listeners, cli, tmp_path):
    result = cli(two_listeners, "wrapped", "--year", "2025", "-o", str(tmp_path))

    assert result.exit_code == 1
    assert error_lines(result.output) == [
        "error: there are several accounts (alice, bob): choose one with --account NAME"
    ]
    assert "Traceback" not in result.output


# -- coverage --------------------------------------------------------------------------------------------------------

BOB_BLOCK = [
    "account bob (Spotify user bob-id)",
    "  content    from (UTC)           to (UTC)             length   covered by  gap",
    "  track      2022-06-01 20:00:00  2022-06-03 20:00:00  2 d 0 h  export",
    "  episode    2022-06-01 20:00:00  2022-06-03 20:00:00  2 d 0 h  export",
    "  audiobook  2022-06-01 20:00:00  2022-06-03 20:00:00  2 d 0 h  export",
    "  open gaps: none",
]


def test_coverage_prints_one_block_per_account_with_its_spans_and_open_gaps(two_listeners, cli):
    result = cli(two_listeners, "coverage")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    alice = lines[: lines.index("")]
    assert alice[0] == "account alice (Spotify user listener-1)"
    assert lines[lines.index("") + 1 :] == BOB_BLOCK
    table = alice[1 : next(n for n, line in enumerate(alice) if line.startswith("  open gaps"))]
    rows = [re.split(r"\s{2,}", line.strip()) for line in table]
    assert rows[0] == ["content", "from (UTC)", "to (UTC)", "length", "covered by", "gap"]
    assert ["track", "2025-03-01 12:00:00", "2025-03-05 12:00:00", "4 d 0 h", "export"] in rows
    [(gap_from, gap_to)] = query(two_listeners, "select gap_from, gap_to from raw.gaps where user_id = 'listener-1'")
    start, end = (f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}" for moment in (gap_from, gap_to))
    assert [row for row in rows if row[-1] in ("open", "filled")] == [["track", start, end, "35 min", "none", "open"]]
    assert [row[4] for row in rows if row[0] == "track"] == ["export", "none", "api", "none", "api"]
    assert alice[-2].startswith("  open gaps: 1, plays in them may be lost")
    assert "`python -m pipelines import-history --account alice PATH`" in alice[-2]
    assert alice[-1] == f"    track {start} to {end} UTC (35 min)"


def test_coverage_of_one_account_prints_only_its_block(two_listeners, cli):
    result = cli(two_listeners, "coverage", "--account", "bob")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == BOB_BLOCK


def test_coverage_before_the_first_transform_is_one_clear_line(database_url, cli):
    add_account(database_url, "alice", "listener-1")

    result = cli(database_url, "coverage")

    assert result.exit_code == 1
    assert error_lines(result.output) == [
        "error: analytics.coverage is not built yet: load plays or import an export, then run "
        "`python -m pipelines transform`"
    ]
