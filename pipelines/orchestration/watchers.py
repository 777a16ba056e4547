"""Cosmos' watcher tasks, started and ended in Airflow's triggerer instead of on a worker.

In `ExecutionMode.WATCHER` one producer task runs `dbt build`, and every model and test keeps its own task that
waits for that node's result. Cosmos runs each of those tasks on a worker twice: once to start it and defer to
the triggerer, once to resume it when its node is done. Each start is a new task process that imports Airflow,
Cosmos and dbt and parses the DAG file: about 3.5 CPU-seconds, for a task that only reads one XCom. With ~55
watchers per run, that start-up, not dbt, was most of an hourly run (bench/RESULTS.md).

Here the watchers use Airflow's `start_from_trigger`: the scheduler hands them straight to the triggerer, and the
trigger ends the task itself (`TaskSuccessEvent` / `TaskSkippedEvent` / `TaskFailedEvent`), so the first try of a
watcher never occupies a worker. A failed watcher is retried by Airflow as usual; its retry resumes on a worker,
where Cosmos runs dbt for that one node (its own fallback), so only what failed is run again.

This builds on Cosmos internals (`cosmos.operators._watcher`): checked against astronomer-cosmos 1.15.1 and
Airflow 3.3.2. Nothing else in the project imports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import TaskGroup
from airflow.triggers.base import StartTriggerArgs, TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent
from cosmos.listeners.dag_run_listener import EventStatus
from cosmos.operators._watcher.base import BaseConsumerSensor
from cosmos.operators._watcher.state import is_dbt_node_status_success, is_producer_task_terminated
from cosmos.operators._watcher.triggerer import WatcherEventReason, WatcherTrigger

TRIGGER_PATH = f"{__name__}.WatcherTaskTrigger"


class WatcherTaskTrigger(WatcherTrigger):
    """Cosmos' watcher trigger, for a task started in the triggerer: it ends its task instead of resuming it.

    Started from the triggerer, the trigger's kwargs are fixed when the DAG is parsed, so the run it watches
    comes from the task instance the triggerer gives it."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_PATH, super().serialize()[1]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti = self.task_instance
        self.run_id, self.map_index = ti.run_id, ti.map_index
        if ti.try_number > 1:
            # A retry, or a clear from the UI: once `dbt build` has ended for good (a failed producer skips its own
            # retry), resume on a worker, where Cosmos runs dbt for this node alone (the event it handles when the
            # producer was skipped). Until then, a node the build still gets right needs nothing more.
            while not is_producer_task_terminated(await self._get_producer_task_status()):
                status, _ = await self._parse_dbt_node_status_and_compiled_sql()
                if is_dbt_node_status_success(status):
                    yield TaskSuccessEvent()
                    return
                await asyncio.sleep(self.poke_interval)
            yield TriggerEvent({"status": EventStatus.FAILED, "reason": WatcherEventReason.PRODUCER_SKIPPED})
            return
        async for event in super().run():
            yield self._ending(event.payload)
            return

    def _ending(self, payload: dict[str, Any]) -> TriggerEvent:
        status = payload.get("status")
        if status == EventStatus.SKIPPED:
            return TaskSkippedEvent()
        if status == EventStatus.FAILED:
            # The trigger's log (in the task's log) says which node failed; the producer's log says why.
            self.log.error(
                "dbt %s %s: %s; see the log of %s",
                "tests of" if self.is_test_sensor else "node",
                self.model_unique_id,
                payload.get("reason"),
                self.producer_task_id,
            )
            return TaskFailedEvent()
        return TaskSuccessEvent()


def start_watchers_in_triggerer(group: TaskGroup) -> None:
    """Make every deferrable Cosmos watcher in `group` start (and, on its first try, end) in the triggerer."""
    for task in group.iter_tasks():
        if not (isinstance(task, BaseConsumerSensor) and task.deferrable):
            continue
        trigger = WatcherTaskTrigger(
            model_unique_id=task.model_unique_id,
            producer_task_id=task.producer_task_id,
            dag_id=task.dag_id,
            # the run is only known when the task starts: WatcherTaskTrigger.run takes it from there
            run_id="",
            map_index=-1,
            poke_interval=task.poke_interval,
            is_test_sensor=task.is_test_sensor,
        )
        task.start_from_trigger = True
        task.start_trigger_args = StartTriggerArgs(
            # the triggerer rebuilds the trigger from the same class path and kwargs a deferral would store
            trigger_cls=TRIGGER_PATH,
            trigger_kwargs=trigger.serialize()[1],
            next_method="execute_complete",
            timeout=task.execution_timeout,
        )
