"""`python -m pipelines import-history` as a user runs it: summary on success, one line and exit 1 on bad input."""

from __future__ import annotations

import codecs

from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import query
from tests.export.conftest import (
    T0,
    USER,
    export_zip,
    sample_extended_plays,
    track_play,
    write_encoded,
    write_json,
)
from tests.test_cli import cli_env, run_cli


def test_import_history_prints_a_summary(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", str(database_url))

    result = CliRunner().invoke(app, ["import-history", str(export_zip(tmp_path)), "--user-id", USER])

    assert result.exit_code == 0, result.output
    for line in ("rows read", "rows loaded", "duplicates skipped", "files rejected", "not stored"):
        assert line in result.output
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(6,)]


def test_a_bad_file_exits_1_with_one_line_naming_file_and_row(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", str(database_url))
    bad = write_json(tmp_path / "Streaming_History_Audio_2020_0.json", [{"ts": "2020-01-01T00:00:00Z"}])

    result = CliRunner().invoke(app, ["import-history", str(bad), "--user-id", USER])

    assert result.exit_code == 1
    assert "Streaming_History_Audio_2020_0.json, row 1" in result.output
    assert "missing required field `ms_played`" in result.output
    assert "Traceback" not in result.output


def test_a_file_in_another_encoding_is_one_error_line_naming_it_and_no_traceback(database_url, tmp_path):
    """Through `python -m pipelines`, as a user runs it; the file name holds what rich would read as markup."""
    renamed = write_encoded(
        tmp_path / "my history [bold] (1).json", [track_play(T0, 1, master_metadata_track_name="Café")], "cp1252"
    )
    offset = renamed.read_bytes().index(b"\xe9")

    result = run_cli(
        cli_env(tmp_path, DATABASE_URL=str(database_url)), "import-history", str(renamed), "--user-id", USER
    )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # Besides the progress bar's last state, one line.
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(
        f"error: my history [bold] (1).json: not UTF-8 or UTF-16 text (byte 0xE9 at offset {offset}); "
        "re-download the export or save the file as UTF-8. Nothing was imported"
    ), line


def test_skip_invalid_files_reports_rejected_empty_and_other_files_by_name(database_url, tmp_path):
    folder = tmp_path / "export"
    write_encoded(
        folder / "Streaming_History_Audio_2023_0.json", [track_play(T0, 1, master_metadata_track_name="Café")], "cp1252"
    )
    write_encoded(
        folder / "Streaming_History_Audio_2024_0.json", sample_extended_plays(), "utf-16-le", bom=codecs.BOM_UTF16_LE
    )
    (folder / "Streaming_History_Video_2024.json").write_text("[]")
    write_json(folder / "Userdata.json", {"username": USER})  # type: ignore[arg-type]
    (folder / "ReadMeFirst_ExtendedStreamingHistory.pdf").write_bytes(b"%PDF-1.4")
    env = cli_env(tmp_path, DATABASE_URL=str(database_url))

    result = run_cli(env, "import-history", str(folder), "--user-id", USER, "--skip-invalid-files")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "rejected: export/Streaming_History_Audio_2023_0.json: not UTF-8 or UTF-16 text (byte 0xE9" in output
    assert "warning: export/Streaming_History_Video_2024.json: holds no plays (an empty list)" in output
    assert "other export files, not loaded: ReadMeFirst_ExtendedStreamingHistory.pdf, Userdata.json" in output
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(6,)]
