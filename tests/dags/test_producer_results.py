"""What the DAG's dbt producer tells its watchers: each node's result, pushed off dbt's threads.

The events are dbt's own (the protobuf messages its callbacks receive); `push` records what would go to XCom. The
producer itself runs in the deployment tests (tests/deployment), whose watchers end on these results."""

from __future__ import annotations

import logging
import threading

from dbt.adapters.events.types import SQLQuery
from dbt.events.types import LogStartLine, NodeExecuting, NodeFinished, NodeStart, SkippingDetails
from dbt_common.events.base_types import EventLevel, msg_from_base_event

from pipelines.orchestration import watchers

PLAYS = "model.spotify_history.plays"
TRACKS = "model.spotify_history.tracks"
PLAYS_TESTS = ["test.spotify_history.unique_plays_play_id", "test.spotify_history.not_null_plays_played_at"]
# a relationships test between two marts belongs to both
BOTH = "test.spotify_history.relationships_plays_track_id__track_id__ref_tracks_"
TESTS_PER_MODEL = {PLAYS: [*PLAYS_TESTS, BOTH], TRACKS: [BOTH]}


def node(unique_id: str, status: str) -> dict:
    return {"unique_id": unique_id, "node_status": status, "resource_type": unique_id.split(".")[0]}


def finished(unique_id: str, status: str):
    return msg_from_base_event(
        NodeFinished(node_info=node(unique_id, status), run_result={"status": status}), level=EventLevel.DEBUG
    )


def progress(unique_id: str) -> list:
    info = node(unique_id, "started")
    return [
        msg_from_base_event(NodeStart(node_info=info), level=EventLevel.DEBUG),
        msg_from_base_event(NodeExecuting(node_info=info), level=EventLevel.DEBUG),
        msg_from_base_event(SQLQuery(conn_name="plays", sql="select 1", node_info=info), level=EventLevel.DEBUG),
    ]


def skipped_for_a_failed_parent(unique_id: str):
    return msg_from_base_event(
        SkippingDetails(
            node_info=node(unique_id, "skipped"), resource_type="model", schema="analytics", node_name="x", index=1
        )
    )


def publish(events: list, push=None) -> tuple[list, watchers._ResultPublisher]:
    pushed: list = []
    publisher = watchers._ResultPublisher(
        push or (lambda key, value: pushed.append((key, value))), TESTS_PER_MODEL, logging.getLogger("producer")
    )
    with publisher:
        for event in events:
            publisher.on_event(event)
    return pushed, publisher


def test_each_model_pushes_its_status_and_its_tests_one_status_once_all_have_ended():
    pushed, publisher = publish(
        [
            *progress(PLAYS),
            finished(PLAYS, "success"),
            *progress(PLAYS_TESTS[0]),
            finished(PLAYS_TESTS[0], "pass"),
            finished(PLAYS_TESTS[1], "warn"),
            finished(TRACKS, "success"),
            finished(BOTH, "fail"),
        ]
    )
    # the keys the watchers read (Cosmos' names); no progress, no events, no compiled SQL
    assert pushed == [
        ("model__spotify_history__plays_status", {"status": "success", "outlet_uris": []}),
        ("model__spotify_history__tracks_status", {"status": "success", "outlet_uris": []}),
        ("model__spotify_history__plays_tests_status", "fail"),
        ("model__spotify_history__tracks_tests_status", "fail"),
        # and its own: Cosmos gives a test of two models a task of its own, which reads this key
        ("test__spotify_history__relationships_plays_track_id__track_id__ref_tracks__tests_status", "fail"),
    ]
    assert publisher.errors == []


def test_a_node_skipped_because_a_parent_failed_fails_and_one_skipped_otherwise_is_skipped():
    pushed, _ = publish(
        [
            finished(PLAYS, "error"),
            skipped_for_a_failed_parent(TRACKS),
            finished(TRACKS, "skipped"),
            finished("model.spotify_history.artists", "skipped"),
        ]
    )
    assert [(key, value["status"]) for key, value in pushed] == [
        ("model__spotify_history__plays_status", "error"),
        # its watcher fails, so Airflow can retry it once the parent is mended
        ("model__spotify_history__tracks_status", "failed"),
        ("model__spotify_history__artists_status", "skipped"),
    ]


def test_dbt_never_waits_for_a_push_and_the_producer_ends_only_after_the_last_one():
    release = threading.Event()
    pushed: list = []

    def slow_push(key, value):
        release.wait(timeout=10)
        pushed.append((key, threading.current_thread().name))

    publisher = watchers._ResultPublisher(slow_push, TESTS_PER_MODEL, logging.getLogger("producer"))
    with publisher:
        publisher.on_event(finished(PLAYS, "success"))
        publisher.on_event(finished(TRACKS, "success"))
        # both handled on dbt's thread while the first push is still held
        assert pushed == []
        release.set()
    assert [key for key, _ in pushed] == [
        "model__spotify_history__plays_status",
        "model__spotify_history__tracks_status",
    ]
    assert {thread for _, thread in pushed} == {"dbt-results-to-xcom"}


def test_a_failed_push_is_kept_for_the_producer_to_raise_and_the_others_still_go():
    pushed: list = []

    def push(key, value):
        if "plays" in key:
            raise ConnectionError("the API server went away")
        pushed.append(key)

    _, publisher = publish([finished(PLAYS, "success"), finished(TRACKS, "success")], push=push)
    assert pushed == ["model__spotify_history__tracks_status"]
    assert [type(error) for error in publisher.errors] == [ConnectionError]


def test_dbt_lines_worth_reading_reach_the_producers_log_and_debug_events_do_not(caplog):
    caplog.set_level(logging.DEBUG, logger="producer")
    start = msg_from_base_event(LogStartLine(description="sql table model analytics.plays", index=1, total=2))
    publish([start, *progress(PLAYS), finished(PLAYS, "success")])
    assert "START sql table model analytics.plays" in start.info.msg
    assert [record.getMessage() for record in caplog.records if record.name == "producer"] == [start.info.msg]
