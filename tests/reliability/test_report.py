"""docs/reliability.md cannot drift: its table is checked against measurements, and the tests it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reliability import report

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_doc_names_exists():
    text = report.DOC.read_text(encoding="utf-8")
    named, current = [], None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(test_\w+)`", text):
        current = path or current  # `::test_x` continues the file named before it
        named.append((current, name))

    assert len(named) >= 10
    missing = [f"{path}::{name}" for path, name in named if f"def {name}(" not in (PROJECT_ROOT / path).read_text()]
    assert missing == []


def test_a_measurement_that_differs_from_the_doc_is_reported(tmp_path, monkeypatch):
    doc = tmp_path / "reliability.md"
    doc.write_text(f"intro\n{report.BEGIN}\n{report.END}\noutro\n")
    monkeypatch.setattr(report, "RECORDED", {})
    report.record("Crash", "b fault", tried=2, lost=0, duplicated=0, result="recovered")
    report.record("Spotify API", "a fault", tried=1, result="retried")
    report.record("Crash", "b fault", tried=3, lost=0, duplicated=0, result="recovered")

    assert len(report.differences(complete=True, doc=doc)) == 2  # neither row is in the doc yet
    report.rewrite(doc)
    assert report.differences(complete=True, doc=doc) == []
    assert doc.read_text().splitlines()[4:6] == [
        "| Spotify API | a fault | 1 | n/a | n/a | retried |",  # areas in their fixed order, then faults
        "| Crash | b fault | 5 | 0 | 0 | recovered |",  # two records of one row add up
    ]
    monkeypatch.setattr(report, "RECORDED", {})
    report.record("Crash", "b fault", tried=4, lost=1, duplicated=0, result="recovered")
    assert len(report.differences(complete=False, doc=doc)) == 1  # a changed measurement
    assert report.differences(complete=False, doc=doc)[0].startswith("measured:   | Crash | b fault | 4 | 1 |")
    monkeypatch.setattr(report, "RECORDED", {})
    assert report.differences(complete=False, doc=doc) == []  # a partial run checks only what it measured
    assert len(report.differences(complete=True, doc=doc)) == 2  # a complete run finds rows no test produced
