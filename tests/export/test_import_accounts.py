"""`import-history --account NAME`: each listener's export lands under their Spotify user, and an older export's
file that names another listener (`username`) is refused on its own, file by file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.database import DatabaseUrl
from pipelines.export.problems import OtherListenerError
from pipelines.spotify.token_store import AccountStore, TokenCipher
from tests.conftest import query
from tests.export.conftest import EXTENDED_DIR, T0, endsong_play, track_play, write_json

KEY = Fernet.generate_key().decode()
DAY = timedelta(days=1)


def add_account(database: DatabaseUrl, name: str, user_id: str | None) -> None:
    store = AccountStore(database, cipher=TokenCipher([KEY], "the test key"))
    store.add(name, f"{name}-refresh-token", user_id=user_id, client_id="test-client-id", authorised_at=T0)


@pytest.fixture
def two_accounts(database_url):
    add_account(database_url, "alice", "alice-id")
    add_account(database_url, "bob", "bob-id")
    return database_url


@pytest.fixture
def cli(database_url, monkeypatch):
    """`python -m pipelines ...` in-process, on the test database; the result's output has stdout and stderr."""
    monkeypatch.setenv("DATABASE_URL", str(database_url))
    monkeypatch.setenv("COLUMNS", "250")  # rich's summary table and messages on whole lines

    def run(*args: str):
        return CliRunner().invoke(app, [*args])

    return run


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def plays_by_user(database: DatabaseUrl) -> list[tuple]:
    return query(
        database,
        "select user_id, count(*), min(master_metadata_track_name) from raw.export_extended_plays"
        " group by 1 order by 1",
    )


def newer_export(folder: Path, first: int, count: int) -> Path:
    """A 2023+ `Streaming_History_Audio` file: no `username` at all, whoever's it is."""
    plays = [track_play(T0 + n * DAY, first + n) for n in range(count)]
    return write_json(folder / EXTENDED_DIR / "Streaming_History_Audio_2024_0.json", plays)


def test_each_account_s_export_lands_under_its_spotify_user(two_accounts, cli, tmp_path):
    alice = cli("import-history", str(newer_export(tmp_path / "alice", 1, 3)), "--account", "alice")
    bob = cli("import-history", str(newer_export(tmp_path / "bob", 50, 2)), "--account", "bob")

    assert alice.exit_code == 0, alice.output
    assert bob.exit_code == 0, bob.output
    assert "import-history for account alice (Spotify user alice-id)" in alice.output
    assert "import-history for account bob (Spotify user bob-id)" in bob.output
    assert plays_by_user(two_accounts) == [("alice-id", 3, "Song 1"), ("bob-id", 2, "Song 50")]
    assert query(two_accounts, "select distinct user_id from raw.export_files order by 1") == [
        ("alice-id",),
        ("bob-id",),
    ]


def test_without_account_two_accounts_are_one_error_line_listing_them_and_nothing_is_imported(
    two_accounts, cli, tmp_path
):
    result = cli("import-history", str(newer_export(tmp_path, 1, 3)))

    assert result.exit_code == 1
    assert error_lines(result.output) == [
        "error: there are several accounts (alice, bob): choose one with --account NAME"
    ]
    assert "Traceback" not in result.output
    assert query(two_accounts, "select to_regclass('raw.export_extended_plays')") == [(None,)]


def test_an_unknown_account_or_one_whose_user_is_not_known_yet_is_one_error_line(two_accounts, cli, tmp_path):
    add_account(two_accounts, "carol", None)  # Spotify could not be asked whose token it is
    export = str(newer_export(tmp_path, 1, 1))

    unknown = cli("import-history", export, "--account", "dave")
    not_known = cli("import-history", export, "--account", "carol")
    contradicted = cli("import-history", export, "--account", "alice", "--user-id", "bob-id")

    assert error_lines(unknown.output) == [
        "error: no account named 'dave' (the accounts are alice, bob, carol): see `python -m pipelines accounts list`"
    ]
    assert error_lines(not_known.output)[0].startswith("error: the Spotify user of account carol is not known yet")
    assert error_lines(contradicted.output) == [
        "error: account alice is Spotify user alice-id, not bob-id: leave out the user id"
    ]
    assert {unknown.exit_code, not_known.exit_code, contradicted.exit_code} == {1}
    assert query(two_accounts, "select to_regclass('raw.export_extended_plays')") == [(None,)]


def test_with_one_account_the_option_is_optional_and_its_user_gets_the_plays(database_url, cli, tmp_path):
    add_account(database_url, "alice", "alice-id")  # and raw.recently_played does not even exist

    result = cli("import-history", str(newer_export(tmp_path, 1, 2)))

    assert result.exit_code == 0, result.output
    assert plays_by_user(database_url) == [("alice-id", 2, "Song 1")]


def test_an_older_export_of_another_listener_is_refused_file_by_file(two_accounts, cli, tmp_path):
    folder = tmp_path / "MyData"
    write_json(folder / "endsong_0.json", [endsong_play(T0 + n * DAY, n, username="alice-id") for n in (1, 2)])
    # bob's file, and a copy of it renamed by hand (known by its content)
    bobs = [endsong_play(T0 + 5 * DAY + n * DAY, 10 + n, username="bob-id") for n in range(3)]
    write_json(folder / "endsong_1.json", bobs)
    write_json(folder / "bob's plays (1).json", bobs)
    # real exports also hold plays with a null username: they say nothing about whose they are
    write_json(folder / "endsong_2.json", [endsong_play(T0 + 20 * DAY, 30, username=None)])

    result = cli("import-history", str(folder), "--account", "alice")

    assert result.exit_code == 0, result.output
    refused = [line for line in result.output.splitlines() if line.startswith("refused:")]
    assert refused == [
        f"refused: {folder.name}/{name}: looks like Spotify user bob-id's export (its plays' `username`), not that "
        "of account alice (Spotify user alice-id): nothing imported from it; import it with that listener's --account"
        for name in ("bob's plays (1).json", "endsong_1.json")
    ]
    assert "files refused (another listener's export)" in result.output
    assert query(
        two_accounts, "select user_id, master_metadata_track_name from raw.export_extended_plays order by ts"
    ) == [("alice-id", "Song 1"), ("alice-id", "Song 2"), ("alice-id", "Song 30")]
    assert query(two_accounts, "select source_file from raw.export_files order by 1") == [
        (f"{folder.name}/endsong_0.json",),
        (f"{folder.name}/endsong_2.json",),
    ]


def test_one_foreign_play_deep_in_a_large_file_refuses_the_whole_file_and_names_its_row(
    import_into, database_url, tmp_path
):
    # Past the reader's first 4 MiB chunk: the file's COPY has started when the foreign play shows up.
    plays = [endsong_play(T0 + n * timedelta(minutes=4), n) for n in range(12_000)]
    plays[11_000]["username"] = "bob-id"
    mixed = write_json(tmp_path / "MyData" / "endsong_0.json", plays)
    own = write_json(tmp_path / "MyData" / "endsong_1.json", [endsong_play(T0 - DAY, 99_999)])

    summary = import_into(mixed, own, user_id="listener-1", account="alice")

    [refused] = summary.refused
    assert isinstance(refused, OtherListenerError)
    assert (refused.file, refused.row, refused.username) == ("endsong_0.json", 11_001, "bob-id")
    assert summary.rejected == []
    assert (summary.rows_read, summary.rows_loaded) == (1, 1)
    assert query(database_url, "select count(*), min(master_metadata_track_name) from raw.export_extended_plays") == [
        (1, "Song 99999")
    ]


def test_the_single_listener_way_also_refuses_a_file_naming_another_user(import_into, database_url, tmp_path):
    theirs = write_json(tmp_path / "endsong_0.json", [endsong_play(T0, 1, username="someone-else")])
    ours = write_json(tmp_path / "endsong_1.json", [endsong_play(T0 + DAY, 2)])  # username listener-1

    summary = import_into(theirs, ours)  # --user-id listener-1, no accounts

    assert [str(error) for error in summary.refused] == [
        "endsong_0.json: looks like Spotify user someone-else's export (its plays' `username`), not that of "
        "Spotify user listener-1: nothing imported from it; import it with that listener's --account"
    ]
    assert query(database_url, "select user_id, username from raw.export_extended_plays") == [
        ("listener-1", "listener-1")
    ]


def test_when_every_file_is_another_listener_s_the_import_exits_1_after_its_summary(two_accounts, cli, tmp_path):
    bobs = write_json(tmp_path / "endsong_0.json", [endsong_play(T0, 1, username="bob-id")])

    result = cli("import-history", str(bobs), "--account", "alice")

    assert result.exit_code == 1
    assert "refused: endsong_0.json: looks like Spotify user bob-id's export" in result.output
    assert error_lines(result.output) == [
        "error: nothing was imported: every file with plays is another listener's export, not account alice's "
        "(see `refused` above)"
    ]
    assert query(two_accounts, "select count(*) from raw.export_extended_plays") == [(0,)]
