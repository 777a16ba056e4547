"""Benchmark: one hourly round for many listeners, each with a long stored history (issue 12).

Run: .venv/bin/python bench/accounts_scale.py --listeners 100 --plays-per-listener 10000
Smoke: .venv/bin/python bench/accounts_scale.py --listeners 3 --plays-per-listener 200
(5-6 min on a busy 2-core machine; 3 min with --skip-dag)

The sample server serves `--listeners` listeners of one app, each stored as an account (`AccountStore.add`, tokens
encrypted with a throwaway `SPOTIFY_TOKEN_KEY`). Each measured setup gets a fresh database and sample server.

The "nothing stored" setup (the baseline): a first load of every account through the API (`python -m pipelines
load`: the last 50 plays each), the first full `dbt build`, then the dbt round: each listener plays
`--round-plays` more within the next hour, `python -m pipelines load`, then `dbt build` alone, timed, with its
per-node timings (run_results.json).

The "stored" setup, the same listeners:
1. each listener's older history is imported the real way: a generated extended-history export per listener
   (`bench/generate_export.py`'s plays, a seed each, `--plays-per-listener` plays) through
   `pipelines.export.importer.import_history`, one import per listener;
2. the same first load and first full `dbt build` (timed for reference: an hourly run does neither);
3. the same dbt round; its build time over the baseline's is the ratio the issue bounds (<= 1.3);
4. the CLI round: a round of plays, then `python -m pipelines run` (loads every account, then `dbt build` and
   source freshness), wall time;
5. the DAG round: Airflow deployed on the same database and state dir (`tests/deployment/airflow_deployment.py`:
   LocalExecutor, `scheduler`, `dag-processor`, `api-server`, `triggerer`, metadata in PostgreSQL, the
   `spotify_api` pool set with `airflow pools set`, `--pool-slots`), a round of plays, then one DAG run from the
   trigger through the REST API to the run's end, with its task instances and their summed duration.

Rounds run minutes apart but stand for hours: round k's plays end k hours after the first load's (all in the
past), so each round's plays are newer than the previous round's, as Spotify's `after` cursor needs.
Every subprocess gets the telemetry switches off. Nothing prints a token or the key.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from cryptography.fernet import Fernet  # noqa: E402
from generate_export import FOLDER, PLAYS_PER_FILE, plays  # noqa: E402

from pipelines import transform  # noqa: E402
from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database  # noqa: E402
from pipelines.orchestration import SPOTIFY_POOL_SLOTS_ENV  # noqa: E402
from pipelines.orchestration import runner as airflow_runner  # noqa: E402
from pipelines.sample_server import SampleSpotifyServer, demo_history  # noqa: E402
from pipelines.settings import DAG_ID  # noqa: E402
from tests.deployment.airflow_deployment import AirflowDeployment  # noqa: E402

PYTHON = sys.executable
CLIENT = ("benchclient", "bench-secret")
ROLE = ("bench_loader", "bench-password")


def listener_name(number: int) -> str:
    return f"listener-{number:03d}"


def write_listener_export(number: int, count: int, out: Path) -> Path:
    """A listener's extended-history export (a zip like Spotify's), `count` plays, seeded by the listener."""
    out.parent.mkdir(parents=True, exist_ok=True)
    batch: list[dict] = []
    members = 0

    def flush(archive: zipfile.ZipFile) -> None:
        nonlocal batch, members
        name = f"{FOLDER}/Streaming_History_Audio_{members // 4 + 2014}_{members % 4}.json"
        archive.writestr(name, json.dumps(batch, indent=4, ensure_ascii=False))
        batch, members = [], members + 1

    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for play in plays(count, seed=10_000 + number):
            batch.append(play)
            if len(batch) == PLAYS_PER_FILE:
                flush(archive)
        if batch:
            flush(archive)
        archive.writestr("Spotify Account Data/Userdata.json", json.dumps({"username": listener_name(number)}))
    return out


class Setup:
    """One measured setup: a fresh database, a sample server with the listeners, their accounts, a state dir."""

    def __init__(
        self, label: str, admin: DatabaseUrl, listeners: int, work: Path, key: str, round_plays: int, rounds: int
    ) -> None:
        self.label = label
        self.round_plays = round_plays
        # Rounds are minutes apart here but model hours: round k's plays end at `first_hour` + k hours, all in the
        # past, so each round's plays are newer than the last round's (Spotify's `after` cursor) and none is future.
        self.first_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=rounds + 1)
        self.admin = admin
        self.dbname = f"bench_accounts_{label}_{uuid.uuid4().hex[:6]}"
        self.database = ensure_role_and_database(admin, *ROLE, self.dbname)
        self.home = work / label
        self.home.mkdir(parents=True)
        self.log = self.home / "bench.log"
        self.key = key
        self.server = SampleSpotifyServer(
            client_id=CLIENT[0], client_secret=CLIENT[1], refresh_token="bench-refresh-0", user_id="bench-user-000"
        )
        self.listeners = [self.server.default_listener] + [
            self.server.add_listener(f"bench-user-{number:03d}") for number in range(1, listeners)
        ]
        self.rounds = 0
        self.deployment = AirflowDeployment(home=self.home / "airflow", admin_db=admin, pipeline_db=self.database)

    def start(self) -> None:
        from pipelines.spotify.token_store import AccountStore

        self.server.start()
        now = datetime.now(UTC)
        # what the API shows at the first load: the last 50 plays, before the first round's hour
        for number, listener in enumerate(self.listeners):
            listener.add_plays(demo_history(self.first_hour, count=50, seed=number))
        store = AccountStore(self.database)
        for number, listener in enumerate(self.listeners):
            store.add(
                listener_name(number),
                listener.current_refresh_token,
                user_id=listener.user_id,
                client_id=CLIENT[0],
                authorised_at=now,
            )
        self.deployment.settings = {
            "SPOTIFY_CLIENT_ID": CLIENT[0],
            "SPOTIFY_CLIENT_SECRET": CLIENT[1],
            "SPOTIFY_API_URL": self.server.api_url,
            "SPOTIFY_ACCOUNTS_URL": self.server.accounts_url,
            "SPOTIFY_TOKEN_KEY": self.key,
            "DATABASE_URL": str(self.database),
            # only the run this benchmark triggers: an hourly run of its own would queue in front of it
            "SPOTIFY_ELT_SCHEDULE": "none",
        }

    def close(self) -> None:
        self.deployment.close()
        self.server.stop()
        drop_database(self.admin, self.dbname)

    def import_exports(self, exports: list[Path]) -> dict[str, float]:
        """Each listener's export through the real importer, one import each; total seconds and rows."""
        from pipelines.export.importer import import_history

        started = time.perf_counter()
        rows = 0
        for number, (listener, export) in enumerate(zip(self.listeners, exports, strict=True)):
            summary = import_history(self.database, [export], user_id=listener.user_id, account=listener_name(number))
            rows += summary.rows_loaded
        return {"seconds": time.perf_counter() - started, "rows": rows}

    def add_an_hour(self) -> None:
        """Every listener plays a round's plays within the round's hour (what an hourly run finds)."""
        self.rounds += 1
        end = self.first_hour + timedelta(hours=self.rounds)
        for number, listener in enumerate(self.listeners):
            session = demo_history(end, count=self.round_plays, seed=1_000_000 + 1000 * self.rounds + number)
            listener.add_plays(play for play in session if play[1] > end - timedelta(hours=1))

    def pipelines(self, *args: str) -> float:
        """`python -m pipelines <args>` as a user runs it (this setup's environment), wall time."""
        started = time.perf_counter()
        with self.log.open("ab") as out:
            subprocess.run(
                [PYTHON, "-m", "pipelines", *args],
                env=self.deployment.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                cwd=ROOT,
            )
        return time.perf_counter() - started

    def dbt_build(self) -> tuple[float, list[dict[str, Any]]]:
        """`dbt build` alone (as the CLI runs it), wall time, and (seconds, node) per node, slowest first."""
        target = self.home / "dbt-target"
        started = time.perf_counter()
        with self.log.open("ab") as out:
            subprocess.run(
                [
                    transform.dbt_executable(),
                    "build",
                    "--project-dir",
                    str(ROOT / "dbt_project"),
                    "--profiles-dir",
                    str(ROOT),
                    "--target-path",
                    str(target),
                    "--log-path",
                    str(self.home / "dbt-logs"),
                ],
                env=transform.dbt_env(self.database),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )
        seconds = time.perf_counter() - started
        results = json.loads((target / "run_results.json").read_text())["results"]
        nodes = sorted(
            ({"node": result["unique_id"], "seconds": result["execution_time"]} for result in results),
            key=lambda node: -node["seconds"],
        )
        return seconds, nodes

    def dag_round(self, timeout: float) -> dict[str, float]:
        """Deploy Airflow on this setup, then one DAG run from the trigger to its end."""
        deployment = self.deployment
        deployment.migrate()  # and the pool: `airflow pools set spotify_api N ...`
        deployment.run_pipelines("parse")
        deployment.start_components()
        deployment.wait_for_dag(DAG_ID)
        self.add_an_hour()
        started = time.perf_counter()
        run_id = deployment.trigger(DAG_ID)
        state = deployment.wait_for_run(DAG_ID, run_id, timeout=timeout)
        seconds = time.perf_counter() - started
        tis = all_task_instances(deployment, run_id)
        deployment.stop()
        if state != "success":
            failed = [f"{ti['task_id']}[{ti.get('map_index')}]" for ti in tis if ti["state"] != "success"]
            raise RuntimeError(f"the DAG run ended {state}: {failed[:10]} (logs under {deployment.home})")
        return {
            "seconds": seconds,
            "tis": len(tis),
            "task_seconds": sum(ti["duration"] or 0 for ti in tis),
            "load_tis": sum(ti["task_id"] == "load_account" for ti in tis),
            "retries": sum(ti["try_number"] - 1 for ti in tis),
        }

    def dbt_rounds(self, repeats: int) -> tuple[float, list[dict[str, Any]]]:
        """`repeats` times: a round of plays, a load of every account, then the timed `dbt build`; the median
        and the per-node timings of the median round."""
        builds = []
        for _ in range(repeats):
            self.add_an_hour()
            self.pipelines("load")
            builds.append(self.dbt_build())
        builds.sort(key=lambda build: build[0])
        return builds[len(builds) // 2]


def all_task_instances(deployment: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run: the REST API answers at most 100 a page, and a run here has more."""
    tis: list[dict[str, Any]] = []
    while True:
        page = deployment.api(
            "GET",
            f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
            params={"limit": 100, "offset": len(tis), "order_by": "id"},
        )
        tis += page["task_instances"]
        if not page["task_instances"] or len(tis) >= page["total_entries"]:
            return tis


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--plays-per-listener", type=int, default=10_000, help="stored (imported) plays each")
    parser.add_argument("--round-plays", type=int, default=12, help="new plays per listener per round")
    parser.add_argument("--pool-slots", type=int, default=4, help="slots of the spotify_api pool")
    parser.add_argument("--dbt-repeats", type=int, default=1, help="dbt rounds per setup (median)")
    parser.add_argument("--skip-dag", action="store_true", help="no Airflow round")
    parser.add_argument("--dag-timeout", type=float, default=3600)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-accounts")
    parser.add_argument(
        "--admin-url", default=os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres:x@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    admin = DatabaseUrl.parse(args.admin_url, "--admin-url")
    os.environ.update(airflow_runner.QUIET_ENV)
    # `migrate` sets the pool from this process's environment (pipelines.orchestration.pool_command)
    os.environ[SPOTIFY_POOL_SLOTS_ENV] = str(args.pool_slots)
    key = Fernet.generate_key().decode()
    os.environ["SPOTIFY_TOKEN_KEY"] = key  # the in-process AccountStore encrypts with it
    shutil.rmtree(args.work, ignore_errors=True)
    work = args.work
    work.mkdir(parents=True)
    print(f"logs: {work}; load average before: {load_average()}", flush=True)

    started = time.perf_counter()
    exports = [
        write_listener_export(number, args.plays_per_listener, work / "exports" / f"{listener_name(number)}.zip")
        for number in range(args.listeners)
    ]
    print(
        f"exports generated: {args.listeners} x {args.plays_per_listener:,} plays in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    figures: dict[str, Any] = {}
    rounds = 2 + args.dbt_repeats  # dbt round(s), CLI round, DAG round

    # the baseline first: the same listeners and rounds, no export stored
    empty = Setup("empty", admin, args.listeners, work, key, args.round_plays, rounds)
    try:
        empty.start()
        empty.pipelines("load")
        figures["first_build_empty"] = empty.dbt_build()[0]
        before = empty.deployment.raw_plays()
        figures["dbt_empty"] = empty.dbt_rounds(args.dbt_repeats)
        figures["dbt_plays_empty"] = empty.deployment.raw_plays() - before
        print(f"dbt round, nothing stored: {figures['dbt_empty'][0]:.1f} s", flush=True)
    finally:
        empty.close()

    stored = Setup("stored", admin, args.listeners, work, key, args.round_plays, rounds)
    try:
        stored.start()
        imported = stored.import_exports(exports)
        figures["import"] = imported
        print(f"import: {imported['rows']:,.0f} plays in {imported['seconds']:.1f} s", flush=True)
        figures["first_load"] = stored.pipelines("load")
        figures["first_build"] = stored.dbt_build()[0]
        print(
            f"first load {figures['first_load']:.1f} s, first full dbt build {figures['first_build']:.1f} s", flush=True
        )
        before = stored.deployment.raw_plays()
        figures["dbt_stored"] = stored.dbt_rounds(args.dbt_repeats)
        figures["dbt_plays"] = stored.deployment.raw_plays() - before
        ratio = figures["dbt_stored"][0] / figures["dbt_empty"][0]
        print(f"dbt round, stored: {figures['dbt_stored'][0]:.1f} s (ratio {ratio:.2f})", flush=True)
        before = stored.deployment.raw_plays()
        stored.add_an_hour()
        figures["cli"] = stored.pipelines("run")
        figures["cli_plays"] = stored.deployment.raw_plays() - before
        print(f"CLI round: {figures['cli']:.1f} s, {figures['cli_plays']} new plays", flush=True)
        if not args.skip_dag:
            before = stored.deployment.raw_plays()
            figures["dag"] = stored.dag_round(args.dag_timeout)
            figures["dag_plays"] = stored.deployment.raw_plays() - before
            print(f"DAG round: {figures['dag']}, {figures['dag_plays']} new plays", flush=True)
    finally:
        stored.close()

    report(args, figures)
    print(f"load average after: {load_average()}", flush=True)


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    listeners, per = args.listeners, args.plays_per_listener
    imported = figures["import"]
    stored_build, stored_nodes = figures["dbt_stored"]
    empty_build, empty_nodes = figures["dbt_empty"]
    print()
    print("| measure | result |")
    print("|---|---|")
    print(f"| listeners (accounts) x stored plays each | {listeners} x {per:,} = {listeners * per:,} |")
    print(
        f"| import of the exports, one `import_history` per listener | {imported['seconds']:.1f} s, "
        f"{imported['rows'] / imported['seconds']:,.0f} plays/s |"
    )
    print(f"| first API load of every account (50 plays each), CLI `load` | {figures['first_load']:.1f} s |")
    print(f"| first full `dbt build` | {figures['first_build']:.1f} s |")
    print(
        f"| **hourly round, CLI `python -m pipelines run`** ({figures['cli_plays']} new plays) | "
        f"**{figures['cli']:.1f} s** |"
    )
    if "dag" in figures:
        dag = figures["dag"]
        print(
            f"| **hourly round, DAG on the real scheduler** ({figures['dag_plays']} new plays; "
            f"pool `spotify_api` {args.pool_slots} slots) | **{dag['seconds']:.1f} s** |"
        )
        print(
            f"| DAG round: task instances (load_account), summed task time, retries | {dag['tis']:.0f} "
            f"({dag['load_tis']:.0f}), {dag['task_seconds']:.0f} s, {dag['retries']:.0f} |"
        )
    print(
        f"| incremental `dbt build` after a round, {listeners * per:,} plays stored "
        f"({figures['dbt_plays']} new plays) | {stored_build:.1f} s |"
    )
    print(
        f"| the same with nothing stored (empty raw, same round: {figures['dbt_plays_empty']} new plays) "
        f"| {empty_build:.1f} s |"
    )
    print(f"| **ratio (stored / nothing stored)** | **{stored_build / empty_build:.2f}** |")
    print()
    print("Slowest nodes of the incremental build (run_results.json), stored vs nothing stored:")
    empty_by_node = {node["node"]: node["seconds"] for node in empty_nodes}
    print("| node | stored | nothing stored |")
    print("|---|---|---|")
    for node in stored_nodes[:12]:
        print(f"| `{node['node']}` | {node['seconds']:.2f} s | {empty_by_node.get(node['node'], 0):.2f} s |")
    total_stored = sum(node["seconds"] for node in stored_nodes)
    total_empty = sum(node["seconds"] for node in empty_nodes)
    print(f"| all {len(stored_nodes)} nodes, summed | {total_stored:.1f} s | {total_empty:.1f} s |")
    nodes = {"median_of": args.dbt_repeats, "stored_nodes": stored_nodes, "empty_nodes": empty_nodes}
    (args.work / "dbt_nodes.json").write_text(json.dumps(nodes, indent=1))


if __name__ == "__main__":
    main()
