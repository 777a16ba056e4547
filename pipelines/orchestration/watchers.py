"""Cosmos' watcher tasks, started and ended in Airflow's triggerer instead of on a worker, all at once.

In `ExecutionMode.WATCHER` one producer task runs `dbt build`, and every model and test keeps its own task that
waits for that node's result. Cosmos runs each of those tasks on a worker twice: once to start it and defer to
the triggerer, once to resume it when its node is done. Each start is a new task process that imports Airflow,
Cosmos and dbt and parses the DAG file: about 3.5 CPU-seconds, for a task that only reads one XCom. With ~55
watchers per run, that start-up, not dbt, was most of an hourly run (bench/RESULTS.md).

Here the watchers use Airflow's `start_from_trigger`: the scheduler hands them straight to the triggerer, and the
trigger ends the task itself (`TaskSuccessEvent` / `TaskSkippedEvent` / `TaskFailedEvent`), so the first try of a
watcher never occupies a worker.

They also start together, when the run starts (trigger rule `always`), instead of each waiting for the watchers
upstream of it: walking the graph's dozen levels one scheduler loop and one triggerer pick-up at a time took
about 3 s a level, most of a run's time after the build had ended. The edges stay, so the graph in the UI is
dbt's lineage, and the gating stays with dbt: `dbt build` never runs a node whose parents failed, and its watcher
then fails (Cosmos reports that skip as a failure). A failed watcher is retried by Airflow as usual; its retry
first waits for the dbt tasks upstream of it to succeed (the trigger rule no longer does), then resumes on a worker,
where Cosmos runs dbt for that one node (its own fallback): only what failed runs again, in dbt's order.

The producer, for its part, pushes each node's result and nothing else, from a thread of its own
(`push_results_only`): Cosmos' callback, pushing every node's progress, event and compiled SQL from dbt's threads,
made its build take several times the CLI's.

This builds on Cosmos internals (`cosmos.operators._watcher`: the trigger, the XCom keys, the tests' aggregation,
`safe_xcom_push`; the producer's `_dbt_runner_callbacks`, its `DbtLocalBaseOperator.run_dbt_runner` and
`_StdoutFilter`, and its task instance's `_cosmos_xcom_persist_incrementally`; the producer's class is swapped
for a subclass, as Cosmos takes no producer class) and the Task SDK's `RuntimeTaskInstance.get_task_states` (what
Cosmos' own trigger uses for the producer's state): checked against astronomer-cosmos 1.15.1 and Airflow 3.3.2.
Nothing else in the project imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.sdk import TaskGroup
from airflow.task.trigger_rule import TriggerRule
from airflow.triggers.base import StartTriggerArgs, TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent
from asgiref.sync import sync_to_async
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.aggregation import (
    accumulate_test_result,
    get_aggregated_test_status,
    get_tests_status_xcom_key,
)
from cosmos.operators._watcher.base import BaseConsumerSensor
from cosmos.operators._watcher.state import (
    DbtNodeStatus,
    DbtTestStatus,
    get_status_xcom_key,
    is_dbt_node_status_skipped,
    is_dbt_node_status_success,
    is_dbt_node_status_terminal,
    is_producer_task_terminated,
    safe_xcom_push,
)
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger
from cosmos.operators.local import DbtLocalBaseOperator
from cosmos.operators.watcher import DbtProducerWatcherOperator, _StdoutFilter

TRIGGER_PATH = f"{__name__}.WatcherTaskTrigger"
# Until `dbt build` runs (the loads come first) nothing can have finished: look less often.
WAITING_FOR_BUILD_SECONDS = 2.0
# States in which a task will not run again in this run unless someone clears it.
SUCCEEDED = "success"
SKIPPED = "skipped"
NEVER_SUCCEEDING = frozenset({"failed", "upstream_failed", "removed"})
# Every watcher of a run asks for the same producer's state: one triggerer process (one event loop) runs them all,
# so they share one read per second instead of sending one request each (~60 per run).
PRODUCER_STATE_SECONDS = 1.0
_producer_reads: dict[tuple[str, str, str], tuple[float, asyncio.Future]] = {}
# A node has no result before the nodes it reads do (dbt's order), so a watcher reads its own result only once the
# watchers upstream of it have theirs: about ten watchers of a run poll at a time, not all sixty, and a watcher
# looks as soon as the last of them has ended. Those may run in another triggerer (several can serve one
# deployment), so a watcher that has heard nothing for this long looks anyway.
UPSTREAM_SILENCE_SECONDS = 10.0


class _RunBoard:
    """The watcher tasks of one DAG run, in this triggerer process, whose node has a result."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.changed = asyncio.Event()
        self.touched = time.monotonic()

    def mark_ended(self, task_id: str) -> None:
        self.ended.add(task_id)
        self.touched = time.monotonic()
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, task_ids: list[str], timeout: float) -> None:
        """Until every task in `task_ids` has ended here, or `timeout` seconds have passed without all of them."""
        deadline = time.monotonic() + timeout
        while not self.ended.issuperset(task_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return


_boards: dict[tuple[str, str], _RunBoard] = {}


def _board(dag_id: str, run_id: str) -> _RunBoard:
    board = _boards.get((dag_id, run_id))
    if board is None:
        for key in [key for key, old in _boards.items() if time.monotonic() - old.touched > 3600]:
            del _boards[key]
        board = _boards[(dag_id, run_id)] = _RunBoard()
    return board


class WatcherTaskTrigger(WatcherTrigger):
    """Cosmos' watcher trigger, for a task started in the triggerer: it ends its task instead of resuming it.

    Started from the triggerer, the trigger's kwargs are fixed when the DAG is parsed, so the run it watches
    comes from the task instance the triggerer gives it."""

    def __init__(
        self,
        *,
        upstream_task_ids: list[str] | None = None,
        upstream_watcher_ids: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # the tasks upstream of the watcher in its dbt group (the watchers of the nodes it reads): a retry waits
        # for them (not for the loads before the group, which end before any first try can fail)
        self.upstream_task_ids = sorted(upstream_task_ids or [])
        # those of them that are watchers: a first try looks for its result once they have theirs
        self.upstream_watcher_ids = sorted(upstream_watcher_ids or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_PATH, {
            **super().serialize()[1],
            "upstream_task_ids": self.upstream_task_ids,
            "upstream_watcher_ids": self.upstream_watcher_ids,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = self.task_instance
        self.run_id, self.map_index = ti.run_id, ti.map_index
        if ti.try_number > 1:
            # A retry, or a clear from the UI.
            yield await self._retry()
        else:
            yield await self._first_try()

    async def _first_try(self) -> TriggerEvent:
        """This node's result in the producer's `dbt build`, however long the loads before the build take."""
        board = _board(self.dag_id, self.run_id)
        try:
            while True:
                await board.wait_for(self.upstream_watcher_ids, UPSTREAM_SILENCE_SECONDS)
                if (event := await self._result()) is not None:
                    return event
        finally:
            # however it ended, the watchers downstream of this one look for theirs now
            board.mark_ended(self.task_id)

    async def _result(self) -> TriggerEvent | None:
        """How this watcher ends, if the build has told; else None, after a pause before the next look."""
        # the producer's state first: its last XCom is pushed before it ends, so a status read after it is final
        producer = await self._shared_producer_state()
        status = await self._node_status()
        if is_dbt_node_status_terminal(status):
            return self._ending(status)
        if producer in NEVER_SUCCEEDING:
            return self._failed("the dbt build task ended %s before this node's result", producer)
        if producer == SKIPPED:
            # Cosmos' producer skips its own retry: resume on a worker, which runs dbt for this node alone
            return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
        if producer == SUCCEEDED:
            # the build left this node out (an ephemeral model, say): nothing to wait for
            return TaskSuccessEvent()
        await asyncio.sleep(self.poke_interval if producer == "running" else WAITING_FOR_BUILD_SECONDS)
        return None

    async def _retry(self) -> TriggerEvent:
        """Wait for the tasks upstream of this one, then for the build to end; then resume on a worker (where
        Cosmos runs dbt for this node alone) unless the build got this node right meanwhile."""
        upstream = [task for task in self.upstream_task_ids if task != self.producer_task_id]
        while True:
            states = await self._task_states(upstream)
            failed = sorted(task for task in upstream if states.get(task) in NEVER_SUCCEEDING)
            if failed:
                return self._failed("not run: upstream %s did not succeed", ", ".join(failed))
            if any(states.get(task) == SKIPPED for task in upstream):
                return TaskSkippedEvent()
            if all(states.get(task) == SUCCEEDED for task in upstream):
                break
            await asyncio.sleep(self.poke_interval)
        while True:
            producer = await self._shared_producer_state()
            if producer == "upstream_failed":
                return self._failed("not run: the dbt build task did not run (%s)", producer)
            if is_producer_task_terminated(producer):
                return TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
            status = await self._node_status()
            if is_dbt_node_status_success(status):
                return TaskSuccessEvent()
            await asyncio.sleep(self.poke_interval)

    async def _node_status(self) -> str | None:
        """This node's status in the build (for a tests watcher: that of its model's tests). Cosmos' own read also
        fetches a model's compiled SQL, which our producer no longer pushes (`_ResultPublisher`)."""
        if self.is_test_sensor:
            return await self.get_xcom_val(get_tests_status_xcom_key(self.model_unique_id))
        return await self._get_node_status()

    async def _shared_producer_state(self) -> str | None:
        """The producer's state as read at most PRODUCER_STATE_SECONDS ago, by this trigger or another of the run.

        It is always read before the caller's next read of its node's status, so "the producer had ended when the
        status was read" still means the status is final."""
        key = (self.dag_id, self.run_id, self.producer_task_id)
        now = time.monotonic()
        read = _producer_reads.get(key)
        if read is None or now - read[0] >= PRODUCER_STATE_SECONDS:
            for stale in [k for k, (at, _) in _producer_reads.items() if now - at > 60]:
                del _producer_reads[stale]
            read = (now, asyncio.ensure_future(self._get_producer_task_status()))
            _producer_reads[key] = read
        return await read[1]

    async def _task_states(self, task_ids: list[str]) -> dict[str, str | None]:
        if not task_ids:
            return {}
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=self.dag_id, task_ids=task_ids, run_ids=[self.run_id]
        )
        return {
            task: (str(state) if state is not None else None) for task, state in states.get(self.run_id, {}).items()
        }

    def _ending(self, status: str) -> TriggerEvent:
        if is_dbt_node_status_success(status):
            return TaskSuccessEvent()
        if is_dbt_node_status_skipped(status):
            return TaskSkippedEvent()
        # The trigger's log (in the task's log) says which node failed; the producer's log says why.
        return self._failed("%s; see the log of %s", status, self.producer_task_id)

    def _failed(self, why: str, *args: Any) -> TriggerEvent:
        self.log.error("dbt %s %s: " + why, "tests of" if self.is_test_sensor else "node", self.model_unique_id, *args)
        return TaskFailedEvent()


# What the producer's `dbt build` tells the watchers, per node: its status, or for a model's tests the status of
# all of them once they have all ended. Cosmos' own callback also converts every dbt event to JSON and pushes each
# node's progress events, its NodeFinished event and a model's compiled SQL: about 200 round trips to the API
# server a build, each holding up the dbt thread that fired it, made the producer's build take 2-5 times the CLI's
# (bench/RESULTS.md). No watcher of ours reads them: its trigger ends the task itself, so no compiled SQL would
# reach the task either.
UPSTREAM_FAILURE_EVENTS = frozenset({"SkippingDetails", "LogSkipBecauseError"})
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class _ResultPublisher:
    """The producer's dbt callback: logs dbt's lines, and hands each node's result to `push` on a thread of its
    own, so dbt's threads never wait for the API server. Leaving the `with` block waits for the last push: the
    producer ends only after its last result is in XCom, which the watchers rely on."""

    def __init__(
        self, push: Callable[[str, Any], None], tests_per_model: dict[str, list[str]], log: logging.Logger
    ) -> None:
        self._push = push
        self._tests_per_model = tests_per_model
        self._test_results: dict[str, dict[str, str]] = {}
        self._skipped_for_upstream: set[str] = set()
        self._tests_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._pusher = threading.Thread(target=self._push_queued, name="dbt-results-to-xcom", daemon=True)
        self._log = log
        # raised after the build: dbt would turn an exception in a callback into a failed node
        self.errors: list[BaseException] = []

    def __enter__(self) -> _ResultPublisher:
        self._pusher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._pusher.join()

    def on_event(self, event: Any) -> None:
        """dbt's callback, on dbt's threads: cheap for the many debug events, which it only looks at."""
        try:
            info = event.info
            if info.level != "debug":
                self._log.log(LOG_LEVELS.get(info.level, logging.INFO), "%s", info.msg)
            if info.name == "NodeFinished":
                self._finished(event.data.node_info)
            elif info.name in UPSTREAM_FAILURE_EVENTS and (node := getattr(event.data, "node_info", None)):
                # fired before the node's NodeFinished, on the same thread
                self._skipped_for_upstream.add(node.unique_id)
        except Exception as error:
            self._log.exception("could not pass on dbt's %s event", event.info.name)
            self.errors.append(error)

    def _finished(self, node: Any) -> None:
        status = node.node_status
        if is_dbt_node_status_skipped(status) and node.unique_id in self._skipped_for_upstream:
            # skipped because a parent failed: its task fails (and can be retried), as with Cosmos' own callback
            status = DbtNodeStatus.FAILED.value
        if not is_dbt_node_status_terminal(status):
            return
        if node.resource_type != "test" or not self._tests_per_model:
            self._queue.put((get_status_xcom_key(node.unique_id), {"status": status, "outlet_uris": []}))
            return
        with self._tests_lock:
            models = accumulate_test_result(node.unique_id, status, self._tests_per_model, self._test_results)
            ended = [(m, get_aggregated_test_status(m, self._tests_per_model, self._test_results)) for m in models]
        if len(models) > 1:
            # A test of several models (a relationships test) has a task of its own, which reads its result under
            # this key, as a model's tests task reads theirs; Cosmos never pushes it, so that task waited for the
            # whole build to end.
            ended.append(
                (node.unique_id, DbtTestStatus.PASS if is_dbt_node_status_success(status) else DbtTestStatus.FAIL)
            )
        for model, aggregated in ended:
            if aggregated is not None:
                self._queue.put((get_tests_status_xcom_key(model), aggregated))

    def _push_queued(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._push(*item)
            except Exception as error:
                self._log.exception("could not push %s to XCom", item[0])
                self.errors.append(error)


class ResultsOnlyProducer(DbtProducerWatcherOperator):
    """Cosmos' producer (`dbt source freshness`, then one `dbt build`), pushing only the XComs its watchers read."""

    def run_dbt_runner(self, command: list[str], env: dict[str, str], cwd: str, **kwargs: Any) -> Any:
        context = kwargs.get("context")
        if context is None or context.get("_check_source_freshness"):
            return super().run_dbt_runner(command, env, cwd, **kwargs)  # no results to push
        ti = context["ti"]
        # Cosmos also rewrites its backup of every XCom so far into an Airflow Variable on each push (another
        # round trip, and quadratic). Its failure and retry callbacks still write the backup, so a retried
        # producer restores what its watchers had not read yet; only a killed one does not, and their retries
        # then run their nodes on a worker.
        ti._cosmos_xcom_persist_incrementally = False
        publisher = _ResultPublisher(
            lambda key, value: safe_xcom_push(task_instance=ti, key=key, value=value), self.tests_per_model, self.log
        )
        callbacks = self._dbt_runner_callbacks
        self._dbt_runner_callbacks = [*(callbacks or []), publisher.on_event]
        try:
            # dbt prints its JSON log lines to stdout too: the publisher logged their text already
            with publisher, contextlib.redirect_stdout(_StdoutFilter()):
                # past Cosmos' producer, whose own run_dbt_runner would add its callback
                result = DbtLocalBaseOperator.run_dbt_runner(self, command, env, cwd, **kwargs)
        finally:
            self._dbt_runner_callbacks = callbacks
        if publisher.errors:
            raise publisher.errors[0]
        return result


def push_results_only(group: TaskGroup) -> None:
    """Make the producer of `group` push its nodes' results, not their progress, to XCom."""
    for task in group.iter_tasks():
        if type(task) is DbtProducerWatcherOperator:
            # Cosmos builds the producer itself and takes no class for it; this subclass adds no state
            task.__class__ = ResultsOnlyProducer


def start_watchers_in_triggerer(group: TaskGroup) -> None:
    """Make every deferrable Cosmos watcher in `group` start when the run does, and (on its first try) start and
    end in the triggerer."""
    watchers = [task for task in group.iter_tasks() if isinstance(task, BaseConsumerSensor) and task.deferrable]
    watcher_ids = {task.task_id for task in watchers}
    group_ids = {task.task_id for task in group.iter_tasks()}
    for task in watchers:
        trigger = WatcherTaskTrigger(
            model_unique_id=task.model_unique_id,
            producer_task_id=task.producer_task_id,
            dag_id=task.dag_id,
            # the run is only known when the task starts: WatcherTaskTrigger.run takes it from there
            run_id="",
            map_index=-1,
            poke_interval=task.poke_interval,
            is_test_sensor=task.is_test_sensor,
            upstream_task_ids=sorted(task.upstream_task_ids & group_ids),
            upstream_watcher_ids=sorted(task.upstream_task_ids & watcher_ids),
        )
        task.trigger_rule = TriggerRule.ALWAYS
        task.start_from_trigger = True
        task.start_trigger_args = StartTriggerArgs(
            # the triggerer rebuilds the trigger from the same class path and kwargs a deferral would store
            trigger_cls=TRIGGER_PATH,
            trigger_kwargs=trigger.serialize()[1],
            next_method="execute_complete",
            timeout=task.execution_timeout,
        )
