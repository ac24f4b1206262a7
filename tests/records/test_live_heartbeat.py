"""Other workers' calls in the live view, on a virtual clock (records/live.py `LiveFeed.expire`): a
worker that stops beating (kill -9) loses its calls at once to every viewer, with `call_ended` /
`worker_lost`; one that keeps beating keeps its quiet calls (until the 15-minute backstop); a
restarted worker's beat brings nothing back. No database, no sleeps."""

from __future__ import annotations

import json
from typing import Any

from records.live import HEARTBEAT_S, REMOTE_IDLE_S, WORKER_LOST_S, LiveFeed
from records.live_pg import PostgresLiveBridge
from tests.conftest import ManualClock
from tests.records.simulate import triage_call


def remote_call(feed: LiveFeed, sender: str, call_id: str, worker: str = "w1") -> None:
    call = {"call_id": call_id, "language": "en", "channel": "websocket", "started_at": 1.0, "worker": worker}
    feed.apply_message({"type": "call_started", "call": call}, sender=sender)
    feed.apply_message({"type": "state", "call_id": call_id, "state": "listening"}, sender=sender)


def drain(queue: Any) -> list[dict[str, Any]]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def beat_for(feed: LiveFeed, clock: ManualClock, seconds: float, *senders: str) -> None:
    """`seconds` of virtual time, each sender beating every HEARTBEAT_S, expiry run every second."""
    end = clock.t + seconds
    next_beat = clock.t
    while clock.t < end:
        if clock.t >= next_beat:
            for sender in senders:
                feed.heard(sender, beat=True)
            next_beat += HEARTBEAT_S
        clock.t += 1.0
        feed.expire()


async def test_a_silent_workers_calls_leave_the_view_with_call_ended_to_every_viewer() -> None:
    clock = ManualClock()
    feed = LiveFeed(worker="w0", clock=clock)
    for event in triage_call("here")[:-1]:
        feed.apply(event)  # this worker's own call: never expired by another's silence
    feed.heard("a1", beat=True)
    feed.heard("b2", beat=True)
    remote_call(feed, "a1", "on-a")
    remote_call(feed, "a1", "also-on-a")
    remote_call(feed, "b2", "on-b", worker="w2")
    viewers = [feed.subscribe(), feed.subscribe()]

    beat_for(feed, clock, WORKER_LOST_S - 2, "a1", "b2")
    assert set(feed.calls) == {"here", "on-a", "also-on-a", "on-b"}
    beat_for(feed, clock, WORKER_LOST_S + 2, "b2")  # a1 killed: no beat, no message
    assert set(feed.calls) == {"here", "on-b"}
    assert {c["call_id"] for c in feed.snapshot()} == {"here", "on-b"}
    for viewer in viewers:
        assert drain(viewer) == [{"type": "call_ended", "call_id": "on-a", "reason": "worker_lost"},
                                 {"type": "call_ended", "call_id": "also-on-a", "reason": "worker_lost"}]
    assert [c.call_id for c in feed.local_calls()] == ["here"]


async def test_a_worker_that_keeps_beating_keeps_its_quiet_calls_until_the_backstop() -> None:
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    feed.heard("a1", beat=True)
    remote_call(feed, "a1", "quiet")
    viewer = feed.subscribe()
    beat_for(feed, clock, 600, "a1")  # ten minutes of a caller on hold: only beats
    assert "quiet" in feed.calls and drain(viewer) == []
    feed.apply_message({"type": "partial", "call_id": "quiet", "text": "still here"}, sender="a1")
    beat_for(feed, clock, REMOTE_IDLE_S - 10, "a1")
    assert "quiet" in feed.calls
    beat_for(feed, clock, 20, "a1")  # alive, but no news of this call for the idle bound: a call never ended
    assert "quiet" not in feed.calls
    assert drain(viewer)[-1] == {"type": "call_ended", "call_id": "quiet", "reason": "no_news"}


async def test_any_message_counts_as_a_sign_of_life() -> None:
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    feed.heard("a1", beat=True)
    remote_call(feed, "a1", "talking")
    for _ in range(10):  # its beats are lost, its call's messages are not
        clock.t += WORKER_LOST_S / 2
        feed.apply_message({"type": "partial", "call_id": "talking", "text": "and then"}, sender="a1")
        feed.expire()
    assert "talking" in feed.calls


async def test_a_beat_from_a_restarted_worker_brings_nothing_back() -> None:
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    feed.heard("old", beat=True)
    remote_call(feed, "old", "cut-off")
    clock.t += WORKER_LOST_S + 1
    assert feed.expire() == ["cut-off"]
    viewer = feed.subscribe()
    assert feed.heard("new", beat=True) is False  # the worker restarted: a new sender id
    beat_for(feed, clock, 60, "new")
    assert feed.calls == {} and feed.snapshot() == [] and drain(viewer) == []
    assert feed.heard("old", beat=True) is True  # the old id heard again (a network cut): it is to be asked,
    feed.expire()
    assert feed.calls == {} and drain(viewer) == []  # but its beat alone brings no call back


async def test_a_worker_that_never_beat_is_not_declared_lost() -> None:
    """A worker of the previous release (no heartbeat) during a rolling upgrade: only the backstop."""
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    remote_call(feed, "older", "on-hold")
    clock.t += REMOTE_IDLE_S - 1
    assert feed.expire() == [] and "on-hold" in feed.calls
    clock.t += 2
    assert feed.expire() == ["on-hold"]


async def test_the_feed_forgets_senders_gone_long_ago() -> None:
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    for i in range(50):  # fifty restarts, each a new sender that beat and died
        feed.heard(f"w{i}", beat=True)
        clock.t += WORKER_LOST_S + 1
        feed.expire()
    clock.t += REMOTE_IDLE_S + 1
    feed.expire()
    assert feed._heard == {} and feed._lost == {} and feed._beating == set()


async def test_the_bridge_asks_a_worker_heard_again_after_it_was_declared_lost_for_its_calls() -> None:
    """A cut network, not a crash: the worker is back and only it knows which of its calls still go on."""
    clock = ManualClock()
    feed = LiveFeed(clock=clock)
    bridge = PostgresLiveBridge(database=None, feed=feed)  # type: ignore[arg-type]  # no threads started
    bridge._apply("a1", {"w": "a1", "beat": True})
    bridge._apply("a1", {"w": "a1", "m": {"type": "call_started", "call": {"call_id": "c1", "worker": "w1"}}})
    assert bridge._out.empty() and feed.owner("c1") == "w1"
    clock.t += WORKER_LOST_S + 1
    assert feed.expire() == ["c1"]
    bridge._apply("a1", {"w": "a1", "beat": True})
    assert json.loads(bridge._out.get_nowait()) == {"w": bridge.worker, "sync": True, "to": "a1"}
    bridge._apply("a1", {"w": "a1", "to": bridge.worker,
                         "m": {"type": "call_started", "call": {"call_id": "c1", "worker": "w1"}}})
    assert feed.owner("c1") == "w1"  # its answer: the call as it stands
    bridge._apply("a1", {"w": "a1", "beat": True})
    assert bridge._out.empty(), "asked once"
