"""Wrapped for the fixture year: every number checked against SQL written here, on the core marts only.

The expected values come from `analytics.plays` (time listened: the track's length the API gave with each play,
as the fixture has API plays only) joined to `tracks`, `artists` and `albums` for names: none of the listening
marts Wrapped reads. A few headline numbers are also pinned to what `tests/listening_year.py` builds
by construction, so the page and the checking SQL cannot be wrong in the same way.
"""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.wrapped import Period, write_report
from pipelines.wrapped.period import resolve
from tests.conftest import query
from tests.listening_year import year_database  # noqa: F401 - fixture

PLAYS_2025 = """
    from analytics.plays as p
    join analytics.tracks as t using (track_id)
    join analytics.artists as a on a.artist_id = p.primary_artist_id
    join analytics.albums as al on al.album_id = p.album_id
    where p.played_at >= '2025-01-01 00:00+00' and p.played_at < '2026-01-01 00:00+00'
"""


def minutes(ms: int) -> int:
    return round(ms / 60000)


@pytest.fixture(scope="module")
def report(year_database, tmp_path_factory):  # noqa: F811
    return write_report(year_database, Period.year(2025), tmp_path_factory.mktemp("wrapped"))


def test_headline_numbers_match_sql(report, year_database):  # noqa: F811
    [(plays, ms, tracks, artists, days)] = query(
        year_database,
        f"""select count(*), sum(p.duration_ms), count(distinct p.track_id), count(distinct p.primary_artist_id),
                   count(distinct (p.played_at at time zone 'UTC')::date) {PLAYS_2025}""",
    )
    data = report.data
    assert (data.plays, data.listened_ms, data.distinct_tracks, data.distinct_artists, data.days_listened) == (
        plays,
        ms,
        tracks,
        artists,
        days,
    )
    # By construction: 38 plays in 2025 (not the 2024 or 2026 ones), 7,540,000 ms.
    assert (data.plays, data.listened_ms, data.minutes_listened, data.days_listened) == (38, 7_540_000, 126, 24)


def test_top_fives_match_sql(report, year_database):  # noqa: F811
    def top(key: str, name: str, detail: str) -> list[tuple]:
        rows = query(
            year_database,
            f"""select {name}, {detail}, count(*) as n, sum(p.duration_ms) as ms {PLAYS_2025}
                group by {key}, {name} order by n desc, ms desc, {name} limit 5""",
        )
        return [(n, d, int(count), int(ms)) for n, d, count, ms in rows]

    def shown(entries) -> list[tuple]:
        return [(e.name, e.detail, e.plays, e.listened_ms) for e in entries]

    assert shown(report.data.top_artists) == top("p.primary_artist_id", "a.artist_name", "null")
    assert shown(report.data.top_tracks) == top("p.track_id", "t.track_name", "min(a.artist_name)")
    assert shown(report.data.top_albums) == top("p.album_id", "al.album_name", "min(a.artist_name)")
    assert [e.name for e in report.data.top_artists] == [
        "Hollow Pines",
        "Static Bloom",
        "Ünïcødé & <Friends>",
        "Kasimir Lund",
        "Nova Lane",  # one play, like Late Discovery, but a longer one
    ]


def test_months_and_hours_match_sql(report, year_database):  # noqa: F811
    by_month = dict(
        query(
            year_database,
            f"""select date_trunc('month', p.played_at at time zone 'UTC')::date, sum(p.duration_ms)
                {PLAYS_2025} group by 1""",
        )
    )
    assert [(b.key, b.listened_ms) for b in report.data.by_month] == [
        (date(2025, month, 1), by_month.get(date(2025, month, 1), 0)) for month in range(1, 13)
    ]
    by_hour = dict(
        query(
            year_database,
            f"select extract(hour from p.played_at at time zone 'UTC')::int, count(*) {PLAYS_2025} group by 1",
        )
    )
    assert [(b.key, b.plays) for b in report.data.by_hour] == [(hour, by_hour.get(hour, 0)) for hour in range(24)]


def test_highlights_match_sql(report, year_database):  # noqa: F811
    days = [
        row[0]
        for row in query(
            year_database, f"select distinct (p.played_at at time zone 'UTC')::date {PLAYS_2025} order by 1"
        )
    ]
    # The longest run of consecutive days, computed in Python from the distinct days.
    best, run = (1, days[0], days[0]), (1, days[0])
    for previous, day in zip(days, days[1:], strict=False):
        run = (run[0] + 1, run[1]) if (day - previous).days == 1 else (1, day)
        if run[0] > best[0]:
            best = (run[0], run[1], day)
    streak = report.data.longest_streak
    assert (streak.days, streak.first_day, streak.last_day) == best == (7, date(2025, 3, 10), date(2025, 3, 16))

    [replayed] = query(
        year_database,
        f"""select (p.played_at at time zone 'UTC')::date as day, t.track_name, count(*) as n {PLAYS_2025}
            group by 1, p.track_id, t.track_name order by n desc, day limit 1""",
    )
    replay = report.data.most_replayed
    assert (replay.day, replay.track_name, replay.plays) == replayed == (date(2025, 7, 4), 'Say "Hi" <3', 6)

    [busiest] = query(
        year_database,
        f"""select (p.played_at at time zone 'UTC')::date as day, sum(p.duration_ms) as ms {PLAYS_2025}
            group by 1 order by ms desc, day limit 1""",
    )
    assert (report.data.busiest_day.key, report.data.busiest_day.listened_ms) == busiest

    new_artists = {
        row[0]
        for row in query(
            year_database,
            """select a.artist_name from analytics.plays as p
               join analytics.artists as a on a.artist_id = p.primary_artist_id
               group by a.artist_name
               having min(p.played_at) >= '2025-01-01 00:00+00' and min(p.played_at) < '2026-01-01 00:00+00'""",
        )
    }
    assert report.data.new_artists == len(new_artists) == 4
    assert {e.name for e in report.data.top_new_artists} == new_artists
    assert "Static Bloom" not in new_artists  # first played on 31 December 2024


def test_page_shows_the_numbers_offline_with_names_escaped(report):
    page = report.html.read_text(encoding="utf-8")
    stats = dict(re.findall(r'data-stat="(\w+)">([^<]+)<', page))
    assert stats == {"minutes": "126", "plays": "38", "tracks": "8", "artists": "6", "days": "24"}
    names = [html.unescape(name) for name in re.findall(r'<span class="name">(.*?)</span>', page)]
    assert names[:5] == [entry.name for entry in report.data.top_artists]
    assert names[5:10] == [entry.name for entry in report.data.top_tracks]
    # User text is escaped: the markup in a track name stays text.
    assert "<3" not in page and "Say &#34;Hi&#34; &lt;3" in page
    assert "&lt;Friends&gt;" in page and "<Friends>" not in page
    # Self-contained: no fetch of anything, charts inline and identical to the PNG files written beside it.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    inline = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert sorted(inline) == sorted(path.read_bytes() for path in report.charts)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in inline) and len(inline) == 3


def test_custom_period_across_new_year(year_database, tmp_path):  # noqa: F811
    report = write_report(year_database, Period(date(2024, 12, 31), date(2025, 1, 1)), tmp_path)
    data = report.data
    assert (data.plays, data.listened_ms) == (2, 200_000 + 210_000)  # Loop One at 23:50, Harbour at 00:10
    assert [(b.key, b.plays) for b in data.by_month] == [(date(2024, 12, 1), 1), (date(2025, 1, 1), 1)]
    # Static Bloom's first play ever is in the period, Nova Lane's (30 December) is not.
    assert (data.longest_streak.days, data.new_artists, [e.name for e in data.top_new_artists]) == (
        2,
        1,
        ["Static Bloom"],
    )
    assert "Your Wrapped 2024-12-31 to 2025-01-01" in report.html.read_text(encoding="utf-8")


def test_a_period_without_plays_or_an_unknown_listener_is_one_clear_error(year_database, tmp_path):  # noqa: F811
    with pytest.raises(PipelineError, match="no plays of year-listener between 2023-01-01 and 2023-12-31"):
        write_report(year_database, Period.year(2023), tmp_path)
    with pytest.raises(ConfigError, match="no plays of listener 'someone-else'.*known: year-listener"):
        write_report(year_database, Period.year(2025), tmp_path, user="someone-else")
    assert not (tmp_path / "index.html").exists()


def test_period_options():
    today = date(2026, 6, 1)
    assert resolve(None, None, None, today) == Period(date(2026, 1, 1), date(2026, 12, 31))
    assert resolve(2025, None, None, today).label == "2025"
    assert resolve(None, "2025-03-01", "2025-05-31", today).slug == "2025-03-01_2025-05-31"
    assert Period(date(2025, 11, 15), date(2026, 2, 1)).months() == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    for args, message in [
        ((2025, "2025-01-01", None), "either --year or --from/--to"),
        ((None, "2025-01-01", None), "go together"),
        ((None, "2025-02-30", "2025-03-01"), "--from '2025-02-30' is not a date"),
        ((None, "2025-03-02", "2025-03-01"), "is after"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve(*args, today)


@pytest.fixture
def select_only_role(year_database, postgres_admin):  # noqa: F811
    """A login role with USAGE on schema analytics and SELECT on its tables, nothing else (an analyst)."""
    role, password = f"wrapped_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = postgres_admin.with_dbname(year_database.dbname)
    statements = [
        sql.SQL("create role {} login password {}").format(sql.Identifier(role), sql.Literal(password)),
        sql.SQL("grant usage on schema analytics to {}").format(sql.Identifier(role)),
        sql.SQL("grant select on all tables in schema analytics to {}").format(sql.Identifier(role)),
    ]
    conn = admin.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        yield DatabaseUrl(role, password, year_database.host, year_database.port, year_database.dbname)
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            cur.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        conn.close()


def test_cli_wraps_a_year_as_a_select_only_analyst(select_only_role, tmp_path):
    # The role really is read-only and analytics-only.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(select_only_role, "select count(*) from raw.recently_played")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(select_only_role, "create table analytics.scratch (n int)")

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "wrapped", "--year", "2025", "--output-dir", str(tmp_path / "out")],
        cwd=paths.PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": str(select_only_role)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Wrapped 2025: 126 minutes, 38 plays" in result.stderr
    assert select_only_role.password not in result.stderr + result.stdout
    files = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert files == ["index.html", "minutes-by-hour.png", "minutes-by-month.png", "top-artists.png"]
    assert 'data-stat="minutes">126<' in Path(tmp_path / "out" / "index.html").read_text(encoding="utf-8")
