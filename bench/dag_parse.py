"""Benchmark: how long Airflow takes to parse `dags/spotify_elt.py` (the DAG processor does this every cycle).

Run: .venv/bin/python bench/dag_parse.py [--repeats 5]
Measures DagBag parse time with a fresh dbt manifest (Cosmos LoadMode.DBT_MANIFEST) against a baseline
measured in the same run: parsing an empty DAG file that imports nothing but Airflow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each parse runs in a fresh interpreter, as Airflow's DAG processor does per file.
_PARSE = """
import sys, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(elapsed)
"""

_BASELINE_DAG = """
from datetime import datetime
from airflow.sdk import dag, task

@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def empty():
    @task
    def noop() -> None:
        pass
    noop()

empty()
"""


def parse_seconds(dag_path: Path, env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, str(dag_path)], env=env, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from pipelines import transform
    from pipelines.database import DatabaseUrl

    transform.parse(DatabaseUrl("parse", "unused", "127.0.0.1", 5432, "parse"))
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "PYTHONPATH": str(ROOT),
        }
        baseline_file = Path(home) / "empty_dag.py"
        baseline_file.write_text(_BASELINE_DAG)
        dag = [parse_seconds(ROOT / "dags" / "spotify_elt.py", env) for _ in range(args.repeats)]
        baseline = [parse_seconds(baseline_file, env) for _ in range(args.repeats)]
    print(f"spotify_elt parse: median {statistics.median(dag):.3f}s (min {min(dag):.3f}s) over {args.repeats} runs")
    print(f"baseline (empty DAG): median {statistics.median(baseline):.3f}s (min {min(baseline):.3f}s)")


if __name__ == "__main__":
    main()
