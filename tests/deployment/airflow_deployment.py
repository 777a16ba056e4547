"""A real Airflow deployment for tests and benchmarks: its own home, metadata database and processes.

It starts what a user runs on a server (`scheduler`, `dag-processor`, `api-server`, `triggerer`, and Celery
workers for the CeleryExecutor), talks to it only through the REST API, as a user would, and stops everything it
started. Nothing here replaces a part of Airflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database
from pipelines.orchestration import runner as airflow_runner

AIRFLOW = str(Path(sys.executable).parent / "airflow")
ADMIN = "admin"
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
FINISHED = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowDeployment:
    """One Airflow installation under `home`, with its metadata in a fresh database on `admin_db`'s server."""

    home: Path
    admin_db: DatabaseUrl
    pipeline_db: DatabaseUrl
    executor: str = "LocalExecutor"
    settings: dict[str, str] = field(default_factory=dict)
    metadata_dbname: str = field(default_factory=lambda: f"airflow_{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    _token: str | None = None

    _metadata: DatabaseUrl | None = None

    @property
    def metadata_url(self) -> str:
        db = self._metadata or self.admin_db
        return f"postgresql+psycopg2://{db.user}:{db.password}@{db.host}:{db.port}/{self.metadata_dbname}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What every process of this deployment shares: the same database, secrets and API address."""
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.password}))
        return {
            **airflow_runner.airflow_env(self.pipeline_db, self.home),
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # Every process signs and checks the same task tokens.
            "AIRFLOW__API_AUTH__JWT_SECRET": "test-jwt-secret-" + self.metadata_dbname,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Working directories of its own, as docs/deploy.md advises: deployments on one host share nothing.
            "SPOTIFY_ELT_HOME": str(self.home / "state"),
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.home / "cosmos"),
            **self.settings,
        }

    def _run(self, *args: str) -> None:
        result = subprocess.run([AIRFLOW, *args], env=self.env(), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def run_pipelines(self, *args: str) -> None:
        """`python -m pipelines <args>` with this deployment's environment, as a deploy script would run it."""
        result = subprocess.run(
            [sys.executable, "-m", "pipelines", *args], env=self.env(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"pipelines {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def migrate(self) -> None:
        """`airflow db migrate`, then the pool the load needs (the deploy steps docs/deploy.md asks for)."""
        from pipelines.orchestration import pool_command

        self.home.mkdir(parents=True, exist_ok=True)
        self._metadata = ensure_role_and_database(self.admin_db, "airflow_test", self.password, self.metadata_dbname)
        self._run("db", "migrate")
        self._run(*pool_command()[1:])

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start `airflow <args>` as its own process group, logging to `<home>/logs/<name>.log`."""
        log_dir = self.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [AIRFLOW, *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def start_components(self) -> None:
        for component in COMPONENTS:
            self.start(component, component)
        self._wait_for_api()

    def start_celery_worker(self, hostname: str, queues: str = "default", concurrency: int = 2) -> subprocess.Popen:
        return self.start(
            f"worker-{hostname}",
            "celery",
            "worker",
            "--celery-hostname",
            f"{hostname}@%h",
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--skip-serve-logs",
        )

    def kill(self, name: str) -> None:
        """SIGKILL a component and every process under it, as a machine or container dying would.

        Its process group is not enough: Airflow runs each task in a process group of its own."""
        import psutil

        root = psutil.Process(self.processes[name].pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.processes[name].wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def close(self) -> None:
        """Stop every process and drop the metadata database."""
        self.stop()
        if self._metadata is not None:
            drop_database(self.admin_db, self.metadata_dbname)
            self._metadata = None

    # --- the REST API, as a user drives it -------------------------------------------------------------------

    def _wait_for_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting up
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the api-server did not answer within {timeout:.0f} s")

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None and not name.startswith("worker-"):
                raise RuntimeError(f"airflow {name} exited with {process.returncode}: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def token(self) -> str:
        if self._token is None:
            response = requests.post(
                f"{self.api_url}/auth/token", json={"username": ADMIN, "password": self.password}, timeout=10
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method,
            f"{self.api_url}/api/v2/{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has parsed and serialized `dag_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.api("GET", f"dags/{dag_id}/details")
                return
            except requests.HTTPError as error:
                if error.response.status_code != 404:
                    raise
            time.sleep(1)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout:.0f} s: {self.log_tail('dag-processor')}")

    def trigger(self, dag_id: str) -> str:
        self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run_state(dag_id, run_id)
            if state in FINISHED:
                return state
            time.sleep(1)
        raise TimeoutError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s")

    def raw_plays(self) -> int:
        """Plays stored in the pipeline database's `raw.recently_played`: what the loads have written so far."""
        conn = self.pipeline_db.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("select count(*) from raw.recently_played")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> list[dict[str, Any]]:
        """Every try of a task instance (of one mapped instance, given its `map_index`), oldest first."""
        mapped = "" if map_index is None else f"/{map_index}"
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{mapped}/tries")[
            "task_instances"
        ]
