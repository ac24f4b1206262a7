"""The measured latency budget of this worker: recent voice-to-voice latency, how long model work
waits for a free inference thread (the ASR queue), and event-loop lag. The hub admits a new call only
while these leave room (issue 10 #9: on 2 cores, 4 calls at once already gave p95 2.6 s).

Figures are kept for a sliding window (`window_s`) on an injected clock, so the logic is tested on a
virtual clock; a figure is judged by its p95 once the window holds `min_samples` of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    voice_to_voice_p95_s: float = 1.5  # the product's latency promise
    queue_wait_p95_s: float = 0.5  # model work waiting for a free inference thread
    loop_lag_p95_s: float = 0.2  # the event loop late to wake (audio pacing suffers)
    window_s: float = 60.0
    min_samples: int = 3


class _Series:
    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=4096)  # (when, seconds)

    def add(self, when: float, value: float) -> None:
        self.samples.append((when, value))

    def p95(self, since: float, min_samples: int) -> float | None:
        while self.samples and self.samples[0][0] < since:
            self.samples.popleft()
        if len(self.samples) < min_samples:
            return None
        values = sorted(v for _, v in self.samples)
        return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


class LatencyBudget:
    def __init__(self, limits: BudgetLimits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or BudgetLimits()
        self._clock = clock
        self._v2v = _Series()
        self._queue = _Series()
        self._lag = _Series()

    def voice_to_voice(self, seconds: float) -> None:
        self._v2v.add(self._clock(), seconds)

    def queue_wait(self, seconds: float) -> None:
        self._queue.add(self._clock(), seconds)

    def loop_lag(self, seconds: float) -> None:
        self._lag.add(self._clock(), seconds)

    def figures(self) -> dict[str, float | None]:
        since = self._clock() - self.limits.window_s
        n = self.limits.min_samples
        return {"voice_to_voice_p95_s": self._v2v.p95(since, n), "queue_wait_p95_s": self._queue.p95(since, n),
                "loop_lag_p95_s": self._lag.p95(since, n)}

    def broken(self) -> str | None:
        """Why the budget leaves no room for another call, or None when it does."""
        figures = self.figures()
        limits = self.limits
        for name, limit in (("voice_to_voice_p95_s", limits.voice_to_voice_p95_s),
                            ("queue_wait_p95_s", limits.queue_wait_p95_s),
                            ("loop_lag_p95_s", limits.loop_lag_p95_s)):
            value = figures[name]
            if value is not None and value > limit:
                return f"{name.removesuffix('_s').replace('_', ' ')} {value:.2f} s over {limit:.2f} s"
        return None


class MeasuredExecutor(ThreadPoolExecutor):
    """The inference thread pool, reporting how long each job waited for a thread."""

    def __init__(self, budget: LatencyBudget, max_workers: int, thread_name_prefix: str = "infer") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._budget = budget

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        queued = time.monotonic()

        def timed() -> Any:
            self._budget.queue_wait(time.monotonic() - queued)
            return fn(*args, **kwargs)

        return super().submit(timed)


async def watch_loop_lag(budget: LatencyBudget, interval_s: float = 0.25) -> None:
    """Forever: how late the loop wakes from a short sleep (run as a task; cancel to stop)."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(interval_s)
        budget.loop_lag(max(0.0, time.monotonic() - before - interval_s))


def latency_budget(settings: Any) -> LatencyBudget:
    """The budget configured by `CARECALL_BUDGET_*`."""
    return LatencyBudget(BudgetLimits(
        voice_to_voice_p95_s=settings.budget_voice_to_voice_p95_s, queue_wait_p95_s=settings.budget_queue_wait_p95_s,
        loop_lag_p95_s=settings.budget_loop_lag_p95_s, window_s=settings.budget_window_s))
