"""The hub's admission (issue 10 #9, issue 13): lines reserved atomically before answering and given
back when unused, the measured latency budget (virtual clock), readiness reasons, and draining that
honours its time limit."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tests.conftest import ManualClock
from voice.budget import BudgetLimits, LatencyBudget, MeasuredExecutor
from voice.events import CallInfo, TurnMetrics, TurnRecorded
from voice.hub import CallHub, CallsBusy


class FakeCall:
    """Ends when told to (`finish`) or when cancelled (as draining does)."""

    def __init__(self, info: CallInfo) -> None:
        self.info = info
        self.done = asyncio.Event()
        self.cancelled_with: str | None = None

    async def run(self) -> dict[str, Any]:
        await self.done.wait()
        return {"ended": self.cancelled_with or "completed"}

    def cancel(self, reason: str) -> None:
        self.cancelled_with = reason
        self.done.set()


def make_hub(capacity: int = 2, clock: ManualClock | None = None, budget: LatencyBudget | None = None,
             ) -> tuple[CallHub, list[FakeCall]]:
    calls: list[FakeCall] = []

    def factory(*, info: CallInfo, transport: Any, engines: Any, publish: Any) -> FakeCall:
        calls.append(FakeCall(info))
        return calls[-1]

    clock = clock or ManualClock()
    hub = CallHub(None, factory, capacity, budget=budget or LatencyBudget(clock=clock), clock=clock)  # type: ignore[arg-type]
    return hub, calls


def info(n: int = 1) -> CallInfo:
    return CallInfo(call_id=f"c{n}", language="en", channel="sip")


async def test_reserve_takes_lines_atomically_and_refuses_at_capacity() -> None:
    hub, _ = make_hub(capacity=2)
    a, b = hub.reserve("sip"), hub.reserve("websocket")
    with pytest.raises(CallsBusy, match="at capacity"):
        hub.reserve("sip")
    state = hub.readiness()
    assert (state.ready, state.active, state.capacity, state.draining) == (False, 2, 2, False)
    a.release()
    a.release()  # idempotent
    assert hub.readiness().ready
    with hub.reserve("sip"):  # released on leaving the block, as it was never run
        assert not hub.has_capacity()
    assert hub.has_capacity()
    b.release()
    assert hub.readiness().active == 0


async def test_an_unused_ticket_expires_and_cannot_run_afterwards() -> None:
    clock = ManualClock()
    hub, _ = make_hub(capacity=1, clock=clock)
    ticket = hub.reserve("sip")
    assert not hub.has_capacity()
    clock.t += 31  # longer than a line may be held without a call
    assert hub.has_capacity() and ticket.released
    with pytest.raises(CallsBusy, match="released"):
        await hub.run(ticket, info(), object())  # type: ignore[arg-type]


async def test_run_holds_the_line_until_the_call_ends() -> None:
    hub, calls = make_hub(capacity=1)
    ticket = hub.reserve("sip")
    task = asyncio.create_task(hub.run(ticket, info(), object()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert list(hub.active) == ["c1"] and hub.readiness().active == 1
    with pytest.raises(CallsBusy):
        hub.reserve("sip")
    calls[0].done.set()
    assert await task == {"ended": "completed"}
    assert hub.has_capacity() and ticket.released
    with pytest.raises(CallsBusy):  # a ticket runs one call only
        await hub.run(ticket, info(2), object())  # type: ignore[arg-type]


async def test_the_older_run_form_reserves_its_own_line() -> None:
    hub, calls = make_hub(capacity=1)
    task = asyncio.create_task(hub.run(info(), object()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    with pytest.raises(CallsBusy):
        await hub.run(info(2), object())  # type: ignore[arg-type]
    calls[0].done.set()
    await task


async def test_a_broken_voice_to_voice_budget_refuses_a_second_call_until_it_recovers() -> None:
    clock = ManualClock()
    hub, _ = make_hub(capacity=4, clock=clock, budget=LatencyBudget(BudgetLimits(window_s=60), clock=clock))
    first = hub.reserve("sip")
    for ms in (2100, 2600, 2400):  # three slow turns: p95 over 1.5 s
        await hub.publish(TurnRecorded("c1", turn(ms)))
    state = hub.readiness()
    assert not state.ready and state.reason.startswith("latency budget: voice to voice p95 2.60 s")
    with pytest.raises(CallsBusy, match="latency budget"):
        hub.reserve("websocket")
    first.release()
    assert hub.readiness().ready  # an idle worker always takes a call: it must be able to measure again
    hub.reserve("sip")
    clock.t += 61  # the slow turns leave the window
    assert hub.readiness().ready and hub.reserve("sip")


def turn(v2v_ms: float):  # type: ignore[no-untyped-def]
    from voice.events import Turn

    return Turn(index=1, speaker="bot", text="ok", start_s=0, end_s=1, metrics=TurnMetrics(voice_to_voice_ms=v2v_ms))


async def test_queue_wait_is_measured_by_the_inference_executor() -> None:
    budget = LatencyBudget(BudgetLimits(queue_wait_p95_s=0.05, min_samples=2))
    executor = MeasuredExecutor(budget, max_workers=1)
    gate = threading.Event()
    try:
        blocker = executor.submit(gate.wait)
        queued = [executor.submit(lambda: None) for _ in range(3)]
        await asyncio.sleep(0.2)  # the queued jobs wait behind the blocker
        gate.set()
        for f in [blocker, *queued]:
            f.result(5)
    finally:
        executor.shutdown()
    figures = budget.figures()
    assert figures["queue_wait_p95_s"] is not None and figures["queue_wait_p95_s"] >= 0.15
    assert budget.broken() is not None and "queue wait" in budget.broken()  # type: ignore[operator]


async def test_loop_lag_over_the_limit_breaks_the_budget() -> None:
    clock = ManualClock()
    budget = LatencyBudget(clock=clock)
    for lag in (0.01, 0.5, 0.6, 0.7):
        budget.loop_lag(lag)
    assert "loop lag" in (budget.broken() or "")


async def test_draining_refuses_new_calls_lets_running_ones_finish_and_ends_the_rest_at_the_limit() -> None:
    hub, calls = make_hub(capacity=3)
    quick = asyncio.create_task(hub.run(hub.reserve("sip"), info(1), object()))  # type: ignore[arg-type]
    slow = asyncio.create_task(hub.run(hub.reserve("sip"), info(2), object()))  # type: ignore[arg-type]
    pending = hub.reserve("websocket")  # reserved, never answered
    await asyncio.sleep(0)
    drain = asyncio.create_task(hub.drain(0.3))
    await asyncio.sleep(0)
    state = hub.readiness()
    assert (state.ready, state.reason, state.draining) == (False, "draining", True)
    assert pending.released  # its caller gets busy, not a call that will be cut
    with pytest.raises(CallsBusy, match="draining"):
        hub.reserve("sip")
    calls[0].done.set()  # one call finishes on its own within the limit
    report = await asyncio.wait_for(drain, 5)
    assert (report.finished, report.ended) == (1, 1)
    assert 0.3 <= report.seconds < 2  # the limit was honoured
    assert calls[0].cancelled_with is None and calls[1].cancelled_with is not None
    assert "nurse" in calls[1].cancelled_with
    await quick
    assert await slow == {"ended": calls[1].cancelled_with}
    assert hub.active == {}


async def test_drain_with_no_calls_returns_at_once() -> None:
    hub, _ = make_hub()
    report = await asyncio.wait_for(hub.drain(30), 1)
    assert (report.finished, report.ended) == (0, 0)
