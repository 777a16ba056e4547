"""`python -m pipelines load` killed with SIGKILL at seeded random points; the next run must make it whole.

Five kinds of crash point, four crashes each (20 in all), in seeded random order and at seeded random points:
- extract, while Spotify's response is in flight (the sample server holds it; the test kills the process);
- extract, normalize or load, just before a random one of dlt's file operations of that step, just before
  the rename that commits the step, or just after it (`crashpoint/sitecustomize.py` kills the child from
  inside, at exactly that operation; the random ones come from the first 80% of a step, as the number of
  operations near a step's end varies a little with thread timing, so the step's end is killed explicitly);
- load, while the merge into raw.recently_played waits inside its transaction (the test holds a table lock
  the merge needs, kills the process while it waits, then lets go).
After every crash a normal run must succeed, and raw.recently_played must hold every play the server ever
served exactly once. SEED makes every choice reproducible.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from pipelines.database import DatabaseUrl
from tests.conftest import query
from tests.reliability.helpers import PROJECT_ROOT, RECENTLY_PLAYED, cli_process, lost_and_duplicated
from tests.reliability.report import record
from tests.spotify.test_recently_played import START, add_plays
from tests.test_cli import run_cli

SEED = 20261127
CRASHES_PER_KIND = 4
PLAYS_PER_ROUND = 3
CRASHPOINT = Path(__file__).resolve().parent / "crashpoint"
IN_FLIGHT = "during extract, while Spotify's response is in flight"
MERGE_WAITING = "during load, while the merge waits inside its transaction"
FILE_STEP = "during {phase}, at a random one of dlt's file operations, its commit or just after"
PHASES = ("extract", "normalize", "load")


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def crash_while_response_in_flight(server, env: dict[str, str], rng: random.Random) -> subprocess.Popen:
    hold = server.hold_requests(RECENTLY_PLAYED)
    process = cli_process(env, "load")
    try:
        assert hold.wait_for_request(timeout=60), "the load never asked Spotify for plays"
        time.sleep(rng.uniform(0, 0.2))
        kill_group(process)
    finally:
        hold.release()
    return process


def crash_while_merge_waits(database: DatabaseUrl, env: dict[str, str], rng: random.Random) -> subprocess.Popen:
    blocker = database.connect()
    try:
        with blocker.cursor() as cur:
            # SHARE lets readers through but not the merge's DELETE/INSERT, which then waits in its transaction.
            cur.execute("lock table raw.recently_played in share mode")
            process = cli_process(env, "load")
            deadline = time.monotonic() + 60
            while not someone_waits_for_a_lock(database):
                assert time.monotonic() < deadline, "the load never reached the merge"
                assert process.poll() is None, process.communicate()[1][-2000:]
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.1))
            kill_group(process)
    finally:
        blocker.rollback()
        blocker.close()
    return process


def someone_waits_for_a_lock(database: DatabaseUrl) -> bool:
    # Asked in a new transaction each time: pg_stat_activity is a snapshot taken once per transaction.
    waiting = query(
        database,
        "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    )
    return waiting[0][0] > 0


def crash_at_file_step(env: dict[str, str], phase: str, operation: int) -> subprocess.Popen:
    process = cli_process({**env, "CRASH_AT": f"{phase}:{operation}"}, "load")
    process.communicate(timeout=120)
    return process


def file_operations_per_phase(env: dict[str, str], log: Path) -> Counter:
    log.unlink(missing_ok=True)
    result = run_cli({**env, "CRASH_AT": f"record:{log}"}, "load")
    assert result.returncode == 0, result.stderr[-2000:]
    return Counter(log.read_text().split())


def crash_points(server, env: dict[str, str], tmp_path: Path, start, rng: random.Random) -> dict[str, list]:
    """Per phase: its commit, just after it, and random operations from the first 80% of the phase."""
    seen = []
    for hour in (0, 1):
        add_plays(server, PLAYS_PER_ROUND, start + timedelta(hours=hour))
        seen.append(file_operations_per_phase(env, tmp_path / "operations.log"))
    safe = {phase: int(0.8 * min(counts[phase] for counts in seen)) for phase in PHASES}
    assert all(count >= 3 for count in safe.values()), seen
    return {
        phase: ["commit", "after-commit", *(rng.randint(1, safe[phase]) for _ in range(CRASHES_PER_KIND - 2))]
        for phase in PHASES
    }


def test_sigkill_at_random_points_of_load_never_loses_or_duplicates_a_play(
    spotify_server, database_url, loader_env, child_pipelines_dir, tmp_path
):
    rng = random.Random(SEED)
    env = {**loader_env, "PYTHONPATH": os.pathsep.join([str(CRASHPOINT), str(PROJECT_ROOT)])}
    start = START
    add_plays(spotify_server, 10, start)
    assert run_cli(env, "load").returncode == 0  # tables exist from here on, as in every run but the first
    points = crash_points(spotify_server, env, tmp_path, start + timedelta(hours=1), rng)
    start += timedelta(hours=2)  # new plays are always newer than those served before, as in real listening

    kinds = [IN_FLIGHT, MERGE_WAITING, *(FILE_STEP.format(phase=phase) for phase in PHASES)] * CRASHES_PER_KIND
    rng.shuffle(kinds)
    # Per kind: its crashes, and the plays lost or duplicated since the crash before (the helper counts all so far).
    measured: dict[str, list[int]] = {}
    so_far = (0, 0)
    for kind in kinds:
        start += timedelta(hours=1)
        add_plays(spotify_server, PLAYS_PER_ROUND, start)
        if kind == IN_FLIGHT:
            crashed = crash_while_response_in_flight(spotify_server, env, rng)
        elif kind == MERGE_WAITING:
            crashed = crash_while_merge_waits(database_url, env, rng)
        else:
            phase = kind.split()[1].rstrip(",")
            crashed = crash_at_file_step(env, phase, points[phase].pop())
        assert crashed.returncode == -signal.SIGKILL, f"{kind}: the run was not killed ({crashed.returncode})"

        after = run_cli(env, "load")

        assert after.returncode == 0, f"{kind}: the run after the crash failed:\n{after.stderr[-3000:]}"
        now = lost_and_duplicated(spotify_server, database_url)
        tally = measured.setdefault(kind, [0, 0, 0])
        tally[0] += 1
        tally[1] += max(0, now[0] - so_far[0])
        tally[2] += max(0, now[1] - so_far[1])
        so_far = now

    for kind, (times, lost, duplicated) in measured.items():
        record(
            "Crash",
            f"SIGKILL of `load` {kind}",
            tried=times,
            lost=lost,
            duplicated=duplicated,
            result="next run finished the left-over package and moved on; every play once",
        )
    assert {kind: tally[1:] for kind, tally in measured.items() if tally[1:] != [0, 0]} == {}
    total = query(database_url, "select count(*), count(distinct (user_id, played_at)) from raw.recently_played")
    assert total == [(len(spotify_server.plays), len(spotify_server.plays))]
