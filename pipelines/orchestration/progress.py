"""What `make run` shows while the DAG runs, and what its summary reports.

- **Task progress** comes from Airflow's metadata database, which `airflow dags test` keeps up to date: the run's
  task instances are read every second and each task is shown when it starts and when it ends, with its state
  and duration. Nothing depends on task names, so per-model tasks, `TestBehavior.BUILD` and Cosmos' watcher mode
  (one producer running `dbt build`) are all shown as they are.
- **dbt's results** come from the run's log: dbt writes one line per node (`3 of 12 OK created sql view model
  staging.x`, `5 of 40 PASS unique_x`) whichever Cosmos task ran it, so models and tests are counted the same
  way for every task shape; a node run twice (an Airflow retry) counts with its last result.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# States after which a task instance does not run again in this DAG run.
FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
NOT_RUN = frozenset({"skipped", "upstream_failed", "removed"})  # usually decided without running the task
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# dbt's per-node result line; `WARN 3`/`FAIL 3` carry the number of failing rows.
_DBT_NODE = re.compile(
    r"\b\d+ of \d+ (?P<status>OK created|ERROR creating|PASS|WARN|FAIL|ERROR|SKIP)(?: \d+)? (?P<node>.+?)\s*\.*\s*\["
)


@dataclass(frozen=True)
class TaskInstance:
    """One row of Airflow's `task_instance` table, as far as progress needs it."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    max_tries: int
    start: datetime | None
    end: datetime | None
    label: str | None = None  # a mapped instance's rendered map index: the account a load task reads

    @property
    def name(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.label or self.map_index}]"

    @property
    def seconds(self) -> float | None:
        return (self.end - self.start).total_seconds() if self.start and self.end else None


class MetadataDatabase:
    """A read-only look at Airflow's metadata database, through the connection string Airflow is configured with."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            # Read-only, and wait briefly rather than fail while `airflow dags test` holds the write lock.
            parsed = parsed.set(database=f"file:{parsed.database}", query={"mode": "ro", "uri": "true"})
            connect_args = {"timeout": 5}
        self._engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)

    def _rows(self, statement: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return list(conn.execute(text(statement), params))

    def newest_run(self, dag_id: str) -> int:
        """The id of the DAG's newest run so far (0 when it never ran): the next run has a larger one."""
        rows = self._rows("select max(id) from dag_run where dag_id = :dag_id", dag_id=dag_id)
        return rows[0][0] or 0

    def run_after(self, dag_id: str, run_pk: int) -> tuple[str, str] | None:
        """(run_id, state) of the DAG's first run created after the run with id `run_pk`; None before it exists."""
        rows = self._rows(
            "select run_id, state from dag_run where dag_id = :dag_id and id > :run_pk order by id limit 1",
            dag_id=dag_id,
            run_pk=run_pk,
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        rows = self._rows(
            "select task_id, map_index, state, try_number, max_tries, start_date, end_date, rendered_map_index"
            " from task_instance"
            " where dag_id = :dag_id and run_id = :run_id order by start_date, task_id, map_index",
            dag_id=dag_id,
            run_id=run_id,
        )
        return [
            TaskInstance(row[0], row[1], row[2], row[3] or 0, row[4] or 0, _utc(row[5]), _utc(row[6]), row[7])
            for row in rows
        ]

    def xcom_values(self, dag_id: str, run_id: str, key: str, task_id: str | None = None) -> list[Any]:
        """The run's XCom values under `key` (every task's, or `task_id`'s), decoded from JSON."""
        rows = self._rows(
            "select value from xcom where dag_id = :dag_id and run_id = :run_id and key = :key"
            " and (cast(:task_id as varchar) is null or task_id = :task_id) order by map_index",
            dag_id=dag_id,
            run_id=run_id,
            key=key,
            task_id=task_id,
        )
        return [_json(row[0]) for row in rows]

    def close(self) -> None:
        self._engine.dispose()


def _utc(value: datetime | str | None) -> datetime | None:
    """A timestamp as SQLite (text) or PostgreSQL (datetime) returns it, as an aware UTC datetime."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def plays_loaded(xcom: Callable[[str], list[Any]]) -> int | None:
    """Plays the run's load task(s) reported, from their summaries (`plays_loaded`); None if none reported.

    `xcom(key)` returns the run's XCom values under `key`: the summary's own key when the task pushed its dict's
    items separately (multiple outputs), else the whole dict under `return_value`.
    """
    counts = [value for value in xcom("plays_loaded") if isinstance(value, int)]
    if not counts:
        summaries = [value for value in xcom("return_value") if isinstance(value, dict)]
        counts = [value["plays_loaded"] for value in summaries if isinstance(value.get("plays_loaded"), int)]
    return sum(counts) if counts else None


class ProgressLines:
    """Turns successive snapshots of a run's task instances into lines: each task's start, then its end.

    Lines read `[mm:ss] done/total  started  task` and `[mm:ss] done/total  success  task (12.3 s)`; the clock
    counts from `started_at` (the start of `make run`) and uses the times Airflow recorded, so a task that started
    and ended between two snapshots still shows when it did. Tasks that end without starting (skipped, or not
    run because an upstream task failed) are counted, not listed: `not_run()`; so is a task first seen already
    skipped, which Airflow stamps with a start and an end time without running it.
    """

    def __init__(self, emit: Callable[[str], None], started_at: datetime) -> None:
        self.emit = emit
        self.started_at = started_at
        self._started: set[tuple[str, int]] = set()  # (task name, try) shown as started
        self._ended: set[tuple[str, int]] = set()
        self._not_run: dict[str, str] = {}
        self._finished: dict[str, str] = {}
        self._total = 0

    def update(self, task_instances: Iterable[TaskInstance]) -> None:
        snapshot = list(task_instances)
        self._total = max(self._total, len(snapshot))
        for ti in snapshot:
            attempt = (ti.name, ti.try_number)
            ended = ti.state in FINISHED or ti.state == "up_for_retry"
            # Airflow stamps a start on a task it skips or gives up on; only one seen running has really started.
            if ti.start is None or (ti.state in NOT_RUN and attempt not in self._started):
                if ti.state in FINISHED:
                    self._not_run[ti.name] = ti.state or ""
                    self._finished[ti.name] = ti.state or ""
                continue
            if attempt not in self._started and (ti.state == "running" or ended):
                self._started.add(attempt)
                self._line(ti.start, "started", ti.name)
            if ended and attempt not in self._ended:
                self._ended.add(attempt)
                if ti.state in FINISHED:
                    self._finished[ti.name] = ti.state or ""
                self._line(ti.end or datetime.now(UTC), *self._outcome(ti))

    def _outcome(self, ti: TaskInstance) -> tuple[str, str]:
        took = f" ({ti.seconds:.1f} s)" if ti.seconds is not None else ""
        if ti.state == "up_for_retry":
            return "failed", f"{ti.name}{took}, try {ti.try_number} of {ti.max_tries + 1}: Airflow retries it"
        return ("FAILED" if ti.state == "failed" else ti.state or "ended"), f"{ti.name}{took}"

    def _line(self, at: datetime, verb: str, what: str) -> None:
        seconds = max(0, int((at - self.started_at).total_seconds()))
        progress = f"{len(self._finished)}/{self._total}" if self._total else ""
        self.emit(f"[{seconds // 60:02d}:{seconds % 60:02d}] {progress:>7}  {verb:<8} {what}")

    def not_run(self) -> Counter[str]:
        """How many tasks ended without running, by state (`skipped`, `upstream_failed`)."""
        return Counter(self._not_run.values())

    def states(self) -> Counter[str]:
        """How many tasks ended in each state."""
        return Counter(self._finished.values())

    def failed(self) -> list[str]:
        return [name for name, state in self._finished.items() if state == "failed"]


@dataclass
class DbtResults:
    """What dbt built and tested in a run, from its per-node result lines; the last result of a node counts."""

    models: dict[str, str] = field(default_factory=dict)  # "schema.model" -> ok / error / skip
    tests: dict[str, str] = field(default_factory=dict)  # test (or unit test) name -> pass / warn / fail / error / skip

    @classmethod
    def from_log(cls, path: Path) -> DbtResults:
        with path.open(encoding="utf-8", errors="replace") as lines:
            return cls.from_lines(lines)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> DbtResults:
        results = cls()
        for line in lines:
            match = _DBT_NODE.search(_ANSI.sub("", line))
            if match is None:
                continue
            status, node = match.group("status"), match.group("node").split()
            if "freshness" in node:  # a source's freshness: neither a model nor a test
                continue
            if status in ("OK created", "ERROR creating"):
                results.models[node[-1]] = "ok" if status == "OK created" else "error"
            elif status == "SKIP" and node[0] == "relation":
                results.models[node[-1]] = "skip"
            else:
                results.tests[node[-1]] = status.lower()
        return results

    def models_in(self, schema: str, status: str = "ok") -> int:
        return sum(1 for name, result in self.models.items() if name.startswith(f"{schema}.") and result == status)

    def tests_with(self, status: str) -> int:
        return sum(1 for result in self.tests.values() if result == status)
