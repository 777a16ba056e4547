"""Benchmark of `import-history` against a plain COPY of the same rows, in the same run, on the same server.

Measures, for a synthetic export (bench/generate_export.py, default 1M plays):
- plain COPY: the same rows, already flattened to CSV in memory, `COPY`-ed into an unindexed table (the
  server's ingest ceiling; reading the export is not timed), and, for reference, into a table keyed and
  indexed like the raw table the import writes;
- naive script: `json.load` each file, `csv.writer`, one `COPY` per file (what a quick script would do);
- the import (`pipelines.export.importer.import_history`, in a child process): zip to committed rows, with
  validation, dedup keys and the import log; its peak memory (max RSS of the child), and again for a quarter
  of the export to show that memory does not grow with it; a reimport of the same zip (adds nothing);
- the incremental `dbt build` after an hourly API load (30 new plays), with the import stored vs with no
  export at all, and their ratio.

    DATABASE_ADMIN_URL=postgresql://postgres:x@127.0.0.1:5432/postgres python bench/export_import.py
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from generate_export import write_export  # noqa: E402

from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database  # noqa: E402
from pipelines.export.copy_text import escape  # noqa: E402
from pipelines.export.formats import EXTENDED  # noqa: E402

USER = "bench-user"
ENV = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
}
CHILD = """
import json, sys
from pathlib import Path
from pipelines.database import DatabaseUrl
from pipelines.export.importer import import_history
summary = import_history(DatabaseUrl.parse(sys.argv[1]), [Path(sys.argv[2])], user_id=sys.argv[3])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": summary.seconds, "read": summary.rows_read, "loaded": summary.rows_loaded,
                  "maxrss_mb": peak_kb / 1024}))
"""


def checkpoint(admin: DatabaseUrl) -> None:
    """Flush the server's dirty pages before a timed write, so that no measurement pays for an earlier one's
    checkpoint (each writes hundreds of MB of WAL)."""
    conn = admin.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("checkpoint")
    finally:
        conn.close()


def fresh_database(admin: DatabaseUrl, name: str) -> DatabaseUrl:
    drop_database(admin, name)
    return ensure_role_and_database(admin, "bench", "bench-password", name)


def export_files(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, JSON bytes) of the export's extended-history files."""
    with zipfile.ZipFile(archive) as opened:
        for info in opened.infolist():
            if EXTENDED.matches(Path(info.filename).name):
                yield info.filename, opened.read(info)


def flat(file_name: str, plays: list[dict]) -> Iterator[tuple]:
    """The plays of one file as tuples of the raw columns (what the COPY baselines load)."""
    columns = [f.json_name for f in EXTENDED.columns(include_network_data=False)]
    for play in plays:
        yield (USER, file_name, play["ts"], *(play.get(c) for c in columns))


def copy_csv(cur, rows: Iterable[tuple]) -> None:
    """What a plain loader does: the rows through `csv.writer`, one COPY."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    buffer.seek(0)
    cur.copy_expert("copy plain_copy from stdin with (format csv)", buffer, size=1 << 20)


def plain_table(cur, keyed: bool = False) -> None:
    columns = ", ".join(f"{f.column} {f.pg_type}" for f in EXTENDED.columns(include_network_data=False))
    cur.execute("drop table if exists plain_copy")
    cur.execute(f"create table plain_copy (user_id text, source_file text, ts timestamptz, {columns})")
    if keyed:  # as raw.export_extended_plays, whose key also holds the item (here: the track URI)
        cur.execute("create unique index on plain_copy (user_id, ts, ms_played, spotify_track_uri)")


def text_line(row: tuple) -> str:
    """A row in COPY's text format (what the import sends)."""
    values = ("\\N" if v is None else str(v).lower() if isinstance(v, bool) else escape(str(v)) for v in row)
    return "\t".join(values) + "\n"


def copy_baselines(admin: DatabaseUrl, database: DatabaseUrl, archive: Path, repeats: int) -> dict[str, float]:
    """Seconds (medians of `repeats`) for the plain COPYs of the same rows:

    - `memory`: the issue's measurement: the plays already decoded in memory (not timed), flattened to rows,
      written by `csv.writer`, one COPY per file into an unindexed table;
    - `csv`, `text`: the server's ingest alone: the rows already flattened and serialised (not timed), one
      COPY into an unindexed table; `keyed`: the same in text format into a table keyed like the raw table;
    - `naive`: a quick script: `json.loads` of each file, then as `memory` (once).
    """
    csv_buffer, text_buffer = io.StringIO(), io.StringIO()
    writer = csv.writer(csv_buffer)
    rows = 0
    for file_name, data in export_files(archive):
        for row in flat(file_name, json.loads(data)):
            writer.writerow(row)
            text_buffer.write(text_line(row))
            rows += 1
    prepared = {"csv": csv_buffer.getvalue().encode(), "text": text_buffer.getvalue().encode()}
    del csv_buffer, text_buffer
    runs = {"csv": ("csv", False), "text": ("text", False), "keyed": ("text", True)}
    timings: dict[str, list[float]] = {name: [] for name in [*runs, "memory"]}
    conn = database.connect()
    try:
        with conn.cursor() as cur:

            def timed(name: str, keyed: bool, load: Callable[[], float | None]) -> None:
                plain_table(cur, keyed)
                conn.commit()
                checkpoint(admin)
                started = time.perf_counter()
                untimed = load() or 0.0
                conn.commit()
                timings[name].append(time.perf_counter() - started - untimed)

            def from_memory() -> float:
                untimed = 0.0
                for file_name, data in export_files(archive):
                    started = time.perf_counter()
                    plays = json.loads(data)
                    untimed += time.perf_counter() - started
                    copy_csv(cur, flat(file_name, plays))
                return untimed

            for _ in range(repeats):
                for name, (copy_format, keyed) in runs.items():
                    data = prepared[copy_format]
                    sql = f"copy plain_copy from stdin with (format {copy_format})"
                    timed(name, keyed, lambda: cur.copy_expert(sql, io.BytesIO(data), 1 << 20))  # noqa: B023
            prepared.clear()
            for _ in range(repeats):
                timed("memory", False, from_memory)
            timings["naive"] = []

            def naive() -> None:
                for file_name, data in export_files(archive):
                    copy_csv(cur, flat(file_name, json.loads(data)))

            timed("naive", False, naive)
            cur.execute("drop table plain_copy")
            conn.commit()
    finally:
        conn.close()
    return {"rows": rows, **{name: statistics.median(t) for name, t in timings.items()}}


def issue_calibration(database: DatabaseUrl, plays: int = 60_000) -> float:
    """Plays/s of the issue's own measurement: API-shaped plays (nested track, album and artists objects) in
    memory, flattened, `csv.writer`, one COPY. The issue reports about 110k plays/s on its machine."""
    from pipelines.sample_server.catalog import make_track

    tracks = [
        make_track(f"Track {n}", [f"Artist {n % 300}", f"Guest {n % 7}"], album_name=f"Album {n % 500}")
        for n in range(2000)
    ]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    items = [
        {"track": tracks[n % len(tracks)], "played_at": (start + timedelta(minutes=3 * n)).isoformat(), "context": None}
        for n in range(plays)
    ]
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "create table api_flat (played_at timestamptz, track_id text, track_name text, duration_ms bigint,"
                " explicit boolean, popularity int, track_number int, disc_number int, isrc text, album_id text,"
                " album_name text, album_type text, release_date text, total_tracks int, artist_ids text,"
                " artist_names text, context_uri text)"
            )
            conn.commit()
            started = time.perf_counter()
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for item in items:
                track, album = item["track"], item["track"]["album"]
                writer.writerow(
                    (
                        item["played_at"],
                        track["id"],
                        track["name"],
                        track["duration_ms"],
                        track["explicit"],
                        track["popularity"],
                        track["track_number"],
                        track["disc_number"],
                        track["external_ids"].get("isrc"),
                        album["id"],
                        album["name"],
                        album["album_type"],
                        album["release_date"],
                        album["total_tracks"],
                        ",".join(a["id"] for a in track["artists"]),
                        ",".join(a["name"] for a in track["artists"]),
                        (item["context"] or {}).get("uri"),
                    )
                )
            buffer.seek(0)
            cur.copy_expert("copy api_flat from stdin with (format csv)", buffer, size=1 << 20)
            conn.commit()
            seconds = time.perf_counter() - started
            cur.execute("drop table api_flat")
            conn.commit()
    finally:
        conn.close()
    return plays / seconds


def run_import(database: DatabaseUrl, archive: Path, work: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(database), str(archive), USER],
        cwd=ROOT,
        env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def dbt_build(database: DatabaseUrl, work: Path) -> float:
    env = {**os.environ, **ENV, **database.dbt_env()}
    started = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "build",
            "--project-dir",
            str(ROOT / "dbt_project"),
            "--profiles-dir",
            str(ROOT),
            "--target-path",
            str(work / "dbt-target"),
            "--log-path",
            str(work / "dbt-logs"),
            "--quiet",
        ],
        env=env,
        check=True,
    )
    return time.perf_counter() - started


def hourly_build_seconds(database: DatabaseUrl, work: Path, repeats: int = 3) -> tuple[float, float]:
    """(full build after a first API load, median incremental build after each of `repeats` hourly loads)."""
    from pipelines.load import load_recently_played
    from pipelines.sample_server import SampleSpotifyServer
    from pipelines.sample_server.catalog import make_track

    os.environ.update(ENV)
    server = SampleSpotifyServer(client_id="c", client_secret="s", refresh_token="r", user_id=USER)
    start = datetime(2025, 6, 1, tzinfo=UTC)

    def hour(number: int, plays: int) -> None:
        for n in range(plays):
            track = make_track(name=f"Hourly {number}-{n}", artist_names=[f"Artist {n % 5}"])
            server.add_play(track, start + timedelta(hours=number, minutes=n))
        load_recently_played(
            database,
            pipelines_dir=work / "dlt-api",
            secrets_file=work / "secrets.toml",
            client_id="c",
            client_secret="s",
            refresh_token=server.current_refresh_token,
            api_url=server.api_url,
            accounts_url=server.accounts_url,
        )

    with server:
        hour(0, 50)
        full = dbt_build(database, work)
        timings = []
        for number in range(1, repeats + 1):
            hour(number, 30)
            timings.append(dbt_build(database, work))
    return full, sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-export")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the COPYs and of the import (median)")
    parser.add_argument("--import-only", action="store_true", help="skip the dbt measurements")
    args = parser.parse_args()
    admin = DatabaseUrl.parse(
        os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"),
        "DATABASE_ADMIN_URL",
    )
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    # dlt keeps cursors and schemas in its working dirs: a previous run's would not match fresh databases.
    for state in ("with-export", "without-export"):
        shutil.rmtree(work / state, ignore_errors=True)
    full = work / f"export_{args.plays}.zip"
    quarter = work / f"export_{args.plays // 4}.zip"
    for path, count in ((full, args.plays), (quarter, args.plays // 4)):
        if not path.exists():
            write_export(count, path)

    database = fresh_database(admin, "bench_export")
    baselines = copy_baselines(admin, database, full, args.repeats)
    calibration = issue_calibration(database)
    runs = []
    for _ in range(args.repeats):  # each into a fresh database; the last one stays for what follows
        database = fresh_database(admin, "bench_export")
        checkpoint(admin)
        runs.append(run_import(database, full, work))
    imported = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    checkpoint(admin)
    reimported = run_import(database, full, work)
    small_db = fresh_database(admin, "bench_export_quarter")
    small = run_import(small_db, quarter, work)
    drop_database(admin, "bench_export_quarter")

    rows = baselines["rows"]
    rate = imported["read"] / imported["seconds"]
    memory_rate = rows / baselines["memory"]
    # The strictest baseline: the server's ingest alone, in whichever format it takes faster.
    ingest_rate = rows / min(baselines["csv"], baselines["text"])
    naive_rate = rows / baselines["naive"]
    print(f"| plays in the export | {rows:,} |")
    memory = baselines["memory"]
    print(f"| plain COPY from memory (the issue's measurement) | {memory:.1f} s, {memory_rate:,.0f} plays/s |")
    for name, label in (("csv", "CSV"), ("text", "text format")):
        seconds = baselines[name]
        print(f"| server ingest alone, prepared rows, {label} | {seconds:.1f} s, {rows / seconds:,.0f} plays/s |")
    keyed = baselines["keyed"]
    print(f"| server ingest alone, into a keyed table (reference) | {keyed:.1f} s, {rows / keyed:,.0f} plays/s |")
    print(f"| naive script (json.loads + csv + COPY) | {baselines['naive']:.1f} s, {naive_rate:,.0f} plays/s |")
    print(f"| import-history (zip to committed rows) | {imported['seconds']:.1f} s, {rate:,.0f} plays/s |")
    print(f"| import / plain COPY from memory | {rate / memory_rate:.0%} |")
    print(f"| import / server ingest alone (the faster format) | {rate / ingest_rate:.0%} |")
    print(f"| import / naive script | {rate / naive_rate:.0%} |")
    print(f"| the issue's calibration: 60k API plays from memory, flattened, CSV, COPY | {calibration:,.0f} plays/s |")
    print(f"| import peak memory, {rows:,} plays | {imported['maxrss_mb']:.0f} MB |")
    print(f"| import peak memory, {small['read']:,} plays | {small['maxrss_mb']:.0f} MB |")
    print(
        f"| reimport of the same zip | {reimported['seconds']:.1f} s, {reimported['loaded']} rows added, "
        f"{reimported['maxrss_mb']:.0f} MB |"
    )
    if args.import_only:
        return
    with_export = hourly_build_seconds(database, work / "with-export")
    empty_db = fresh_database(admin, "bench_export_empty")
    without_export = hourly_build_seconds(empty_db, work / "without-export")
    drop_database(admin, "bench_export_empty")
    print(f"| first full dbt build with the import stored | {with_export[0]:.1f} s |")
    print(f"| incremental dbt build after an hourly load, import stored | {with_export[1]:.1f} s |")
    print(f"| incremental dbt build after an hourly load, no export | {without_export[1]:.1f} s |")
    print(f"| ratio (stored / none) | {with_export[1] / without_export[1]:.2f} |")


if __name__ == "__main__":
    main()
