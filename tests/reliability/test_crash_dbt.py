"""`python -m pipelines transform` killed with SIGKILL mid-build; the next run must leave the marts whole.

Each round loads a few new plays, then starts `transform` while the test holds an exclusive lock on a
seeded random model's relation, so dbt is certainly mid-build (some models built, one waiting inside its
transaction) when it is killed. Half the rounds kill the whole process group (a machine or container
dying); the others kill only the CLI process, as the OOM killer might, and dbt must die with it rather than
build on unlocked. After each crash a normal `transform` must succeed; at the end the marts hold every
loaded play exactly once and no half-built relation is left behind.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path

from tests.conftest import query
from tests.reliability.helpers import cli_process
from tests.reliability.report import record
from tests.spotify.test_recently_played import START, add_plays
from tests.test_cli import cli_env, run_cli

SEED = 1127
ROUNDS = 3
WHOLE_GROUP = "SIGKILL of `transform` and dbt mid-build (a model waiting inside its transaction)"
CLI_ONLY = "SIGKILL of the `transform` process alone mid-build (its dbt child must die too)"


def model_relations(database) -> list[str]:
    rows = query(
        database,
        """select table_schema || '.' || table_name from information_schema.tables
           where table_schema in ('staging', 'analytics') order by 1""",
    )
    return [row[0] for row in rows]


def dbt_waits_for_a_lock(database) -> bool:
    waiting = query(
        database,
        """select count(*) from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock' and application_name like 'dbt%'""",
    )
    return waiting[0][0] > 0


def session_processes(session_id: int) -> list[int]:
    """Processes still alive in a session (the CLI was started in its own, so dbt is in it too)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def marts_lost_and_duplicated(database) -> tuple[int, int]:
    """Plays of raw.recently_played that analytics.plays lacks, and its rows beyond one per play."""
    [(lost, duplicated)] = query(
        database,
        """select (select count(*) from raw.recently_played as r
                   where not exists (select from analytics.plays as p
                                     where p.user_id = r.user_id and p.played_at = r.played_at)),
                  (select count(*) - count(distinct (user_id, played_at)) from analytics.plays)""",
    )
    return lost, duplicated


def wait_until_gone(session_id: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := session_processes(session_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_sigkill_mid_build_leaves_marts_whole_after_the_next_run(load_plays, spotify_server, database_url, tmp_path):
    rng = random.Random(SEED)
    env = cli_env(tmp_path, DATABASE_URL=str(database_url))
    add_plays(spotify_server, 20)
    load_plays()
    assert run_cli(env, "transform").returncode == 0
    targets = model_relations(database_url)
    rng.shuffle(targets)
    start = START
    # Per kind: crashes survived, and the most plays its rebuilt marts lacked or held twice against raw.
    measured = {WHOLE_GROUP: [0, 0, 0], CLI_ONLY: [0, 0, 0]}

    for round_number in range(ROUNDS):
        start += timedelta(hours=2)
        add_plays(spotify_server, 3, start)
        load_plays()
        target = targets[round_number % len(targets)]
        kind = WHOLE_GROUP if round_number % 2 == 0 else CLI_ONLY
        blocker = database_url.connect()
        try:
            with blocker.cursor() as cur:
                cur.execute(f"lock table {target} in access exclusive mode")
                process = cli_process(env, "transform")
                deadline = time.monotonic() + 120
                while not dbt_waits_for_a_lock(database_url):
                    assert time.monotonic() < deadline and process.poll() is None, f"dbt never reached {target}"
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, 0.3))
                if kind == WHOLE_GROUP:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
                assert process.wait(timeout=30) == -signal.SIGKILL
                survivors = wait_until_gone(process.pid)
                if survivors:
                    os.killpg(process.pid, signal.SIGKILL)  # clean up before failing
                assert survivors == [], f"{kind}: dbt outlived the killed run"
                process.communicate(timeout=30)
        finally:
            blocker.rollback()
            blocker.close()

        after = run_cli(env, "transform")

        assert after.returncode == 0, f"{kind} at {target}: the next transform failed\n{after.stderr[-3000:]}"
        lost, duplicated = marts_lost_and_duplicated(database_url)
        tally = measured[kind]
        tally[:] = [tally[0] + 1, max(tally[1], lost), max(tally[2], duplicated)]

    for kind, (times, lost, duplicated) in measured.items():
        record(
            "Crash",
            kind,
            tried=times,
            lost=lost,
            duplicated=duplicated,
            result="next `transform` rebuilt cleanly; marts hold every play once",
        )
    assert [tally[1:] for tally in measured.values()] == [[0, 0], [0, 0]]
    raw = query(database_url, "select count(*) from raw.recently_played")[0][0]
    assert raw == len(spotify_server.plays)
    plays = query(database_url, "select count(*), count(distinct (user_id, played_at)) from analytics.plays")
    assert plays == [(raw, raw)]
    assert query(database_url, "select count(*) from analytics.listening_history") == [(raw,)]
    leftovers = query(
        database_url,
        """select table_schema, table_name from information_schema.tables
           where table_schema in ('staging', 'analytics') and table_name ~ '__dbt_(tmp|backup)$'""",
    )
    assert leftovers == []
