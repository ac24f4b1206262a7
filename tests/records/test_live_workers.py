"""With PostgreSQL, two workers (two feeds with their bridges) share their live calls: a call on
one worker, its transcript and its red flag appear on the other's console feed; a worker that
starts while the call is going on is told about it as it stands; a worker that stops beating (a
crash) loses its calls from the others' feeds (the timing itself: test_live_heartbeat.py)."""

from __future__ import annotations

import asyncio

import pytest

from records.live import LiveFeed
from records.live_pg import PostgresLiveBridge, _fit
from tests.records.simulate import triage_call

pytestmark = pytest.mark.postgres


async def _until(predicate, timeout: float = 60.0) -> None:  # an event wait: generous on a loaded machine
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _listen(bridge: PostgresLiveBridge, started: list[PostgresLiveBridge]) -> None:
    """Start a worker's bridge (stopped by the test's `finally`) and wait until it listens."""
    bridge.start(asyncio.get_running_loop())
    started.append(bridge)
    assert await asyncio.to_thread(bridge.listening.wait, 30)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_live_calls_are_shared_between_workers(database):
    feed_a, feed_b = LiveFeed(), LiveFeed()
    a, b = PostgresLiveBridge(database, feed_a), PostgresLiveBridge(database, feed_b)
    started: list[PostgresLiveBridge] = []
    try:
        for bridge in (a, b):
            await _listen(bridge, started)
        viewer_a, viewer_b = feed_a.subscribe(), feed_b.subscribe()
        events = triage_call("worker-a-call")
        for event in events[:-1]:
            feed_a.apply(event)  # the call runs on worker A
        seen: list[str] = []
        await _until(lambda: "red_flag" in _types(viewer_b, seen))
        call = feed_b.calls["worker-a-call"]
        assert len(call.turns) == 5 and call.red_flags == ["chest_pain_radiating"]
        assert call.disposition == "emergency_ambulance"
        feed_a.apply(events[-1])
        await _until(lambda: "worker-a-call" not in feed_b.calls)
        await asyncio.sleep(0.3)
        local = [m["type"] for m in _drain(viewer_a)]
        assert local.count("turn") == 5, "a worker does not hear its own messages twice"
    finally:
        for bridge in started:
            await asyncio.to_thread(bridge.stop)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_worker_that_starts_mid_call_is_told_of_the_calls_already_going_on(database):
    """Worker A carries a call; B already listens; C starts (a restarted worker) half-way through."""
    feed_a, feed_b, feed_c = LiveFeed(), LiveFeed(), LiveFeed()
    a, b, c = (PostgresLiveBridge(database, f) for f in (feed_a, feed_b, feed_c))
    started: list[PostgresLiveBridge] = []
    try:
        for bridge in (a, b):
            await _listen(bridge, started)
        viewer_b = feed_b.subscribe()
        events = triage_call("going-on")
        for event in events[:-1]:
            feed_a.apply(event)
        await _until(lambda: "red_flag" in _types(viewer_b, []))
        before_c = [m["type"] for m in _drain(viewer_b)]

        await _listen(c, started)  # the restarted worker: nothing it could hear about this call is still to come
        await _until(lambda: "going-on" in feed_c.calls)
        call = feed_c.calls["going-on"]
        assert (call.language, call.channel, call.state) == ("en", "websocket", "listening")
        assert [t["text"] for t in call.turns] == [t["text"] for t in feed_a.calls["going-on"].turns]
        assert len(call.turns) == 5 and call.red_flags == ["chest_pain_radiating"]
        assert call.disposition == "emergency_ambulance"
        assert feed_c.local_calls() == [] and [x.call_id for x in feed_a.local_calls()] == ["going-on"]

        feed_a.apply(events[-1])  # and it hears the end like everyone else
        await _until(lambda: "going-on" not in feed_c.calls and "going-on" not in feed_b.calls)
        # the answer went to C alone: B, which knew the call, saw only the call's own messages
        assert before_c == [] and [m["type"] for m in _drain(viewer_b)] == ["call_ended"]
    finally:
        for bridge in started:
            await asyncio.to_thread(bridge.stop)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_crashed_workers_call_leaves_the_other_workers_feed_through_the_missed_heartbeat(database):
    feed_a, feed_b = LiveFeed(), LiveFeed(worker_lost_s=1.0)
    a = PostgresLiveBridge(database, feed_a, heartbeat_s=0.2)
    b = PostgresLiveBridge(database, feed_b, heartbeat_s=0.2, expire_every_s=0.1)
    started: list[PostgresLiveBridge] = []
    try:
        for bridge in (a, b):
            await _listen(bridge, started)
        viewer_b = feed_b.subscribe()
        events = triage_call("on-a")
        for event in events[:3]:
            feed_a.apply(event)
        await _until(lambda: "on-a" in feed_b.calls)
        await _until(lambda: a.worker in feed_b._beating)  # B has heard A beat
        await asyncio.to_thread(a.stop)  # A falls silent without ending its call, as under kill -9
        started.remove(a)
        await _until(lambda: "on-a" not in feed_b.calls)
        ended = [m for m in _drain(viewer_b) if m["type"] == "call_ended"]
        assert ended == [{"type": "call_ended", "call_id": "on-a", "reason": "worker_lost"}]
    finally:
        for bridge in started:
            await asyncio.to_thread(bridge.stop)


def _drain(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def _types(q, seen):
    seen.extend(m["type"] for m in _drain(q))
    return seen


def test_long_messages_are_shortened_to_fit_notify():
    message = {"w": "x", "m": {"type": "turn", "call_id": "c", "turn": {"text": "痛" * 5000}}}
    payload = _fit(message)
    assert payload is not None and len(payload.encode()) <= 7900
