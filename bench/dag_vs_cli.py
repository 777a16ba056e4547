"""Benchmark: one hourly run of the DAG on a real Airflow deployment against the CLI `run` on the same data.

Run: .venv/bin/python bench/dag_vs_cli.py [--designs chosen,local-after-each,...] [--repeats 3]

Everything is measured in one run on the same machine, PostgreSQL and sample server. For each design (a way to
render the dbt project, see `pipelines/orchestration/`), a fresh pipeline database gets a first load of the
sample listener's history; then each repeat adds an hour of plays and times one incremental run:
- the CLI: `python -m pipelines run` (load + `dbt build` with the source's freshness and tests), wall time;
- `airflow dags test` (what `make run` does), wall time: in the first design only, since it renders the
  per-model design whatever the design;
- the real scheduler (LocalExecutor; `scheduler`, `dag-processor`, `api-server`, `triggerer`), from the trigger
  through the REST API to the run's end, with the run's task instances, their summed duration and retries.
Each figure is the median of the repeats; `scheduler / CLI` is the median of each repeat's ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database  # noqa: E402
from pipelines.orchestration import runner as airflow_runner  # noqa: E402
from pipelines.sample_server import SampleSpotifyServer, demo_history  # noqa: E402
from pipelines.settings import DAG_ID  # noqa: E402
from tests.deployment.airflow_deployment import AirflowDeployment  # noqa: E402

PYTHON = sys.executable
# Each design is the environment that selects it (see orchestration.py).
DESIGNS = {
    "local-after-each": {"SPOTIFY_ELT_DBT_EXECUTION": "local", "SPOTIFY_ELT_DBT_TESTS": "after_each"},
    "local-build": {"SPOTIFY_ELT_DBT_EXECUTION": "local", "SPOTIFY_ELT_DBT_TESTS": "build"},
    # Cosmos' own watchers: each starts on a worker, defers, and resumes on a worker
    "watcher-on-workers-1-thread": {
        "SPOTIFY_ELT_DBT_EXECUTION": "watcher",
        "SPOTIFY_ELT_DBT_WATCHERS": "worker",
        "DBT_THREADS": "1",
    },
    "watcher-on-workers-4-threads": {
        "SPOTIFY_ELT_DBT_EXECUTION": "watcher",
        "SPOTIFY_ELT_DBT_WATCHERS": "worker",
        "DBT_THREADS": "4",
    },
    # the producer's dbt as a subprocess: Cosmos parses its JSON log lines, instead of every dbtRunner event
    "watcher-subprocess": {"SPOTIFY_ELT_DBT_INVOCATION": "subprocess"},
    # the defaults: watchers started at once and ended in the triggerer, the producer pushing results only
    # (pipelines/orchestration/watchers.py), 4 dbt threads
    "chosen": {},
}
CLIENT = ("bench-client", "bench-secret")


def spotify_env(server: SampleSpotifyServer) -> dict[str, str]:
    return {
        "SPOTIFY_CLIENT_ID": CLIENT[0],
        "SPOTIFY_CLIENT_SECRET": CLIENT[1],
        "SPOTIFY_REFRESH_TOKEN": server.current_refresh_token,
        "SPOTIFY_API_URL": server.api_url,
        "SPOTIFY_ACCOUNTS_URL": server.accounts_url,
    }


def timed(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.perf_counter() - started


def add_an_hour(server: SampleSpotifyServer, since: datetime, hour: int) -> datetime:
    """12 new plays, what an hourly run finds, all newer than `since` (the newest play so far) and ended before now.

    Each run here follows the last within a minute, so an hour of plays is squeezed into the time since the last
    ones: laid out as they were played, most would be older than what the last run loaded, which Spotify's
    `after` cursor (rightly) never returns. Returns the newest play's time."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    plays = demo_history(now, count=12, seed=1000 + hour)
    step = (now - since) / (len(plays) + 1)
    # the API keeps milliseconds only
    times = [since + step * (n + 1) for n in range(len(plays))]
    times = [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in times]
    server.add_plays([(track, played_at, context) for (track, _, context), played_at in zip(plays, times, strict=True)])
    return times[-1]


def measure(design: str, admin: DatabaseUrl, repeats: int, work: Path, *, dags_test: bool) -> dict[str, float]:
    dbname = f"bench_dag_{uuid.uuid4().hex[:8]}"
    database = ensure_role_and_database(admin, "bench_loader", "bench-password", dbname)
    server = SampleSpotifyServer(
        client_id=CLIENT[0], client_secret=CLIENT[1], refresh_token="bench-refresh", user_id="bench-listener"
    )
    newest = datetime.now(UTC) - timedelta(hours=2)
    server.add_plays(demo_history(newest, count=50))
    home = work / design
    deployment = AirflowDeployment(home=home / "airflow", admin_db=admin, pipeline_db=database)
    log = home / "bench.log"
    home.mkdir(parents=True)
    results: dict[str, list[float]] = {
        key: [] for key in ("cli", "dags_test", "scheduler", "ratio", "task_seconds", "tis", "retries")
    }
    with server:
        deployment.settings = {
            **DESIGNS[design],
            **spotify_env(server),
            "DATABASE_URL": str(database),
            # only the runs this benchmark triggers: an hourly run of its own would queue in front of them
            "SPOTIFY_ELT_SCHEDULE": "none",
        }
        cli_env = deployment.env()
        try:
            deployment.migrate()
            deployment.run_pipelines("parse")
            deployment.start_components()
            deployment.wait_for_dag(DAG_ID)
            # the first run loads the backlog and builds every table in full: not what an hourly run does
            run_id = deployment.trigger(DAG_ID)
            assert deployment.wait_for_run(DAG_ID, run_id) == "success", deployment.task_instances(DAG_ID, run_id)
            for repeat in range(repeats):
                newest = add_an_hour(server, newest, 3 * repeat)
                before = deployment.raw_plays()
                results["cli"].append(timed([PYTHON, "-m", "pipelines", "run"], cli_env, log))
                newest = add_an_hour(server, newest, 3 * repeat + 1)
                started = time.perf_counter()
                run_id = deployment.trigger(DAG_ID)
                state = deployment.wait_for_run(DAG_ID, run_id)
                results["scheduler"].append(time.perf_counter() - started)
                # each run loaded its hour of plays: the same work on both sides
                after = deployment.raw_plays()
                assert after == before + 24, (before, after)
                results["ratio"].append(results["scheduler"][-1] / results["cli"][-1])
                assert state == "success", [ti for ti in deployment.task_instances(DAG_ID, run_id)]
                tis = deployment.task_instances(DAG_ID, run_id)
                results["tis"].append(len(tis))
                results["retries"].append(sum(ti["try_number"] - 1 for ti in tis))
                results["task_seconds"].append(sum(ti["duration"] or 0 for ti in tis))
            deployment.stop()
            # `airflow dags test` (what `make run` does), in the same home, after the scheduler has stopped;
            # it runs one task at a time, so it renders the per-model design whatever the design: measured once
            dags_test_env = {**cli_env, "SPOTIFY_ELT_DBT_EXECUTION": "local"}
            for repeat in range(repeats if dags_test else 0):
                newest = add_an_hour(server, newest, 3 * repeat + 2)
                command = [deployment_airflow(), "dags", "test", DAG_ID, "-f", str(ROOT / "dags" / "spotify_elt.py")]
                results["dags_test"].append(timed(command, dags_test_env, log))
        finally:
            deployment.close()
            drop_database(admin, dbname)
    return {key: statistics.median(values) for key, values in results.items() if values}


def deployment_airflow() -> str:
    return str(Path(PYTHON).parent / "airflow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--admin-url", default=os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres:x@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    admin = DatabaseUrl.parse(args.admin_url, "--admin-url")
    os.environ.update(airflow_runner.QUIET_ENV)
    work = Path(tempfile.mkdtemp(prefix="bench-dag-"))
    print(f"logs: {work}")
    print(
        "| design | CLI run | real scheduler | scheduler / CLI | task instances | task time | retries "
        "| `airflow dags test` |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for index, design in enumerate(args.designs.split(",")):
        row = measure(design, admin, args.repeats, work, dags_test=index == 0)
        dags_test = f"{row['dags_test']:.1f} s" if "dags_test" in row else "–"
        print(
            f"| {design} | {row['cli']:.1f} s | {row['scheduler']:.1f} s | {row['ratio']:.2f} | {row['tis']:.0f} "
            f"| {row['task_seconds']:.0f} s | {row['retries']:.0f} | {dags_test} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
