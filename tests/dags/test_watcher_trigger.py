"""The watchers' trigger decides from task states and the build's results: its decisions, on scripted states.

The real trigger runs in the deployment tests (tests/deployment); here each case scripts what the Task SDK would
answer, so the rare paths (an upstream that failed for good, a build that never ran) are pinned down too."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

from pipelines.orchestration import watchers

PRODUCER = "transform.dbt_producer_watcher"


@pytest.fixture(autouse=True)
def every_read_answered(monkeypatch):
    # each scripted answer is one read: no sharing of the producer's state between reads (see the last test)
    monkeypatch.setattr(watchers, "PRODUCER_STATE_SECONDS", 0)
    monkeypatch.setattr(watchers, "_producer_reads", {})
    monkeypatch.setattr(watchers, "_boards", {})


class ScriptedTrigger(watchers.WatcherTaskTrigger):
    """The trigger with its three reads answered from scripts (one answer per read; the last one repeats)."""

    def __init__(
        self, try_number: int, producer: list, statuses: list, upstream: list[dict], task_id: str = "plays", **kwargs
    ) -> None:
        super().__init__(
            model_unique_id="model.spotify_history.plays",
            producer_task_id=PRODUCER,
            dag_id="spotify_elt",
            run_id="",
            map_index=-1,
            poke_interval=0,
            **kwargs,
        )
        self.task_instance = SimpleNamespace(try_number=try_number, run_id="run-1", map_index=-1, task_id=task_id)
        self.scripts = {"producer": producer, "status": statuses, "upstream": upstream}
        self.reads = {name: 0 for name in self.scripts}

    def _next(self, name: str):
        script = self.scripts[name]
        answer = script[min(self.reads[name], len(script) - 1)]
        self.reads[name] += 1
        return answer

    async def _get_producer_task_status(self):
        return self._next("producer")

    async def _node_status(self):
        return self._next("status")

    async def _task_states(self, task_ids):
        return {task: state for task, state in self._next("upstream").items() if task in task_ids}


async def events_of(trigger: ScriptedTrigger) -> list:
    return [event async for event in trigger.run()]


def events(trigger: ScriptedTrigger) -> list:
    return asyncio.run(events_of(trigger))


def test_a_first_try_waits_for_the_build_and_ends_with_its_nodes_result():
    trigger = ScriptedTrigger(
        1, producer=[None, "queued", "running"], statuses=[None, None, None, "success"], upstream=[{}]
    )
    assert [type(event) for event in events(trigger)] == [TaskSuccessEvent]
    assert trigger.reads["status"] == 4


def test_a_first_try_fails_on_a_failed_node_and_skips_on_a_skipped_one():
    assert [type(e) for e in events(ScriptedTrigger(1, ["running"], ["error"], [{}]))] == [TaskFailedEvent]
    assert [type(e) for e in events(ScriptedTrigger(1, ["running"], ["skipped"], [{}]))] == [TaskSkippedEvent]


def test_a_first_try_fails_when_the_build_never_runs():
    # the producer ended without running (upstream_failed): it never reports this node
    trigger = ScriptedTrigger(1, producer=[None, "upstream_failed"], statuses=[None], upstream=[{}])
    assert [type(event) for event in events(trigger)] == [TaskFailedEvent]


def test_a_retry_waits_for_its_upstream_tasks_then_hands_over_to_a_worker():
    upstream = ["transform.stg_spotify__plays.test", "transform.stg_spotify__tracks.test"]
    trigger = ScriptedTrigger(
        2,
        producer=["skipped"],
        statuses=[None],
        upstream=[
            {"transform.stg_spotify__plays.test": "up_for_retry", "transform.stg_spotify__tracks.test": "success"},
            {"transform.stg_spotify__plays.test": "running", "transform.stg_spotify__tracks.test": "success"},
            {"transform.stg_spotify__plays.test": "success", "transform.stg_spotify__tracks.test": "success"},
        ],
        upstream_task_ids=upstream,
    )
    [event] = events(trigger)
    # resumed on a worker, where Cosmos runs dbt for this node alone; only after the upstream succeeded
    assert event.payload == {"status": "failed", "reason": "producer_skipped"}
    assert trigger.reads["upstream"] == 3


def test_a_retry_never_runs_when_an_upstream_task_failed_for_good():
    trigger = ScriptedTrigger(
        2,
        producer=["skipped"],
        statuses=[None],
        upstream=[{"transform.stg_spotify__plays.test": "failed"}],
        upstream_task_ids=["transform.stg_spotify__plays.test"],
    )
    assert [type(event) for event in events(trigger)] == [TaskFailedEvent]
    assert trigger.reads["producer"] == 0


def test_a_retry_ends_green_when_the_build_still_gets_its_node_right():
    trigger = ScriptedTrigger(2, producer=["running"], statuses=[None, "success"], upstream=[{}])
    assert [type(event) for event in events(trigger)] == [TaskSuccessEvent]


def test_the_watchers_of_a_run_share_one_read_of_the_producers_state(monkeypatch):
    monkeypatch.setattr(watchers, "PRODUCER_STATE_SECONDS", 60)
    reads = []

    class Counted(ScriptedTrigger):
        async def _get_producer_task_status(self):
            reads.append(self.model_unique_id)
            await asyncio.sleep(0.01)
            return "success"

    async def many():
        triggers = [Counted(1, ["success"], [None], [{}]) for _ in range(20)]
        return await asyncio.gather(*(trigger._shared_producer_state() for trigger in triggers))

    assert asyncio.run(many()) == ["success"] * 20
    assert len(reads) == 1


def test_a_watcher_looks_for_its_result_once_the_watchers_upstream_of_it_have_theirs():
    looked = []

    class Logged(ScriptedTrigger):
        async def _node_status(self):
            looked.append(self.task_id)
            return await super()._node_status()

    staging = Logged(1, ["running"], [None, None, "success"], [{}], task_id="transform.stg_spotify__plays.test")
    plays = Logged(
        1, ["running"], ["success"], [{}], task_id="transform.plays.run", upstream_watcher_ids=[staging.task_id]
    )

    async def both():
        return await asyncio.gather(*(events_of(trigger) for trigger in (plays, staging)))

    assert [[type(event) for event in run] for run in asyncio.run(both())] == [[TaskSuccessEvent]] * 2
    # `plays` read nothing while its upstream watcher had no result, and read at once when it had
    assert looked == [staging.task_id] * 3 + [plays.task_id]


def test_a_watcher_whose_upstream_is_silent_looks_anyway(monkeypatch):
    # its upstream watchers may run in another triggerer, whose results this one never hears of
    monkeypatch.setattr(watchers, "UPSTREAM_SILENCE_SECONDS", 0.05)
    trigger = ScriptedTrigger(1, ["running"], ["success"], [{}], upstream_watcher_ids=["transform.elsewhere.test"])
    assert [type(event) for event in events(trigger)] == [TaskSuccessEvent]
