"""Loading several listeners: each account on its own, none blocking the others, every play once.

Real PostgreSQL, real dlt, and the loopback sample server serving five listeners of one app; nothing is mocked.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.load import per_account as account_loads
from pipelines.spotify import settings
from pipelines.spotify.token_store import AccountStore, TokenCipher
from tests.conftest import listeners_with_accounts, query
from tests.spotify.test_accounts import KEY, spotify_app  # noqa: F401 (a fixture, used by every test)

RECENTLY_PLAYED = "/v1/me/player/recently-played"
NOW = datetime.now(UTC)


@pytest.fixture
def store(database_url) -> AccountStore:
    return AccountStore(database_url, cipher=TokenCipher([KEY], "the test key"))


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch, spotify_app):  # noqa: F811 (the app's settings in the environment, for every test)
    # real waits between retries, only shorter: a persistent outage gives up in a second, not half a minute
    monkeypatch.setattr(settings, "BACKOFF_BASE_SECONDS", 0.05)


def accounts_of(server, store, names, plays_each=12):
    return listeners_with_accounts(
        server, store, names, plays_each=plays_each, ending=NOW, authorised_at=NOW - timedelta(days=10)
    )


def plays_by_user(database) -> dict[str, tuple[int, int]]:
    """(rows, distinct plays) per user in raw.recently_played: equal when no play is stored twice."""
    rows = query(
        database,
        "select user_id, count(*), count(distinct played_at) from raw.recently_played group by 1 order by 1",
    )
    return {user: (count, distinct) for user, count, distinct in rows}


def test_one_failing_account_never_holds_the_others_and_each_play_lands_once(
    database_url,
    spotify_server,
    store,
    tmp_path,
):
    names = ["ana", "ben", "cy", "dee", "eve"]
    listeners = accounts_of(spotify_server, store, names)
    listeners["ben"].revoke_refresh_token()  # invalid_grant
    rotated = listeners["cy"].rotate_refresh_token()
    listeners["dee"].enqueue_rate_limit(RECENTLY_PLAYED, retry_after=1, quota=True, times=2)
    listeners["dee"].enqueue_fault(RECENTLY_PLAYED, 502, times=2)
    listeners["eve"].enqueue_fault(RECENTLY_PLAYED, 503, times=settings.MAX_ATTEMPTS)  # an outage outlasting retries

    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert {name: outcome.status for name, outcome in outcomes.items()} == {
        "ana": "loaded",
        "ben": "needs_auth",
        "cy": "loaded",
        "dee": "loaded",
        "eve": "failed",
    }
    assert "Fix: python -m pipelines auth --account ben" in outcomes["ben"].line()
    assert "503" in outcomes["eve"].message
    assert plays_by_user(database_url) == {f"{name}-id": (12, 12) for name in ("ana", "cy", "dee")}
    assert store.get("ben").status == "needs_auth"
    assert store.refresh_token("cy") == rotated  # saved before it was used again
    assert store.get("ana").last_load_at is not None and store.get("eve").last_load_at is None

    # The next round: ben is not asked again (no hammering), eve's outage is over, cy refreshes with the new token.
    token_requests = len([r for r in listeners["ben"].requests if r.path.endswith("/api/token")])
    for name in names:
        listeners[name].add_plays(_newer_plays(3))
    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert outcomes["ben"].status == "needs_auth" and "not loaded" in outcomes["ben"].message
    assert len([r for r in listeners["ben"].requests if r.path.endswith("/api/token")]) == token_requests
    assert {name: outcomes[name].plays_loaded for name in ("ana", "cy", "dee", "eve")} == {
        "ana": 3,
        "cy": 3,
        "dee": 3,
        "eve": 15,
    }

    # ben authorises again (as `accounts add` or `auth --account` store it): he catches up, every play once.
    store.add("ben", listeners["ben"].reauthorize(), user_id="ben-id", client_id="test-client-id", authorised_at=NOW)
    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert outcomes["ben"].status == "loaded" and outcomes["ben"].plays_loaded == 15
    assert all(outcome.status == "loaded" for outcome in outcomes.values())
    assert plays_by_user(database_url) == {f"{name}-id": (15, 15) for name in names}


def _newer_plays(count: int):
    from pipelines.sample_server import demo_history

    return demo_history(datetime.now(UTC) + timedelta(minutes=30), count=count)


def test_accounts_loading_at_once_into_a_fresh_database_never_collide(
    database_url,
    spotify_server,
    store,
    tmp_path,
):
    """As the DAG's mapped loads do: every account's pipeline at the same moment, the raw tables not there yet."""
    names = [f"listener-{n}" for n in range(4)]
    accounts_of(spotify_server, store, names, plays_each=30)
    outcomes: dict[str, account_loads.AccountOutcome] = {}
    start = threading.Barrier(len(names))

    def load(name: str) -> None:
        start.wait()
        outcomes[name] = account_loads.load_account(database_url, name, pipelines_dir=tmp_path / name)

    threads = [threading.Thread(target=load, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert {name: outcome.status for name, outcome in outcomes.items()} == dict.fromkeys(names, "loaded")
    assert plays_by_user(database_url) == {f"{name}-id": (30, 30) for name in names}
    # each account keeps its own cursor in its own dlt pipeline
    pipelines = query(database_url, "select distinct pipeline_name from raw._dlt_pipeline_state order by 1")
    assert [row[0] for row in pipelines] == [f"spotify_recently_played__{name}" for name in names]


def test_a_paused_account_is_skipped_and_a_run_says_so(
    database_url,
    spotify_server,
    store,
    tmp_path,
):
    accounts_of(spotify_server, store, ["ana", "ben"])
    store.set_status("ben", "paused", "on holiday")

    outcomes = {o.account: o for o in account_loads.load_accounts(database_url, pipelines_dir=tmp_path / "dlt")}

    assert outcomes["ben"].status == "skipped" and not outcomes["ben"].failed
    assert "accounts resume ben" in outcomes["ben"].line()
    assert plays_by_user(database_url) == {"ana-id": (12, 12)}


def test_a_token_expiring_within_30_days_is_warned_about_with_the_command(
    database_url,
    spotify_server,
    store,
):
    accounts_of(spotify_server, store, ["ana"])
    store.add("ana", store.refresh_token("ana"), user_id="ana-id", client_id="test-client-id", authorised_at=NOW)
    assert account_loads.expiry_lines(database_url, store=store, now=NOW) == []

    lines = account_loads.expiry_lines(database_url, store=store, now=NOW + timedelta(days=165))

    assert len(lines) == 1 and "ana" in lines[0] and "auth --account ana" in lines[0]
