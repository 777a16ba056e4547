"""`python -m pipelines import-history` as a user runs it: summary on success, one line and exit 1 on bad input."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import query
from tests.export.conftest import USER, export_zip, write_json


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
