"""The one clock of a call: transports pace audio on it, the call loop times turns and silences on it.

Production uses the event loop's clock (`time.monotonic()` on every platform CPython supports). Tests
run the loop on virtual time (tests/voice/fakes.py), so the same code is timed without waiting: the
clock is injected, never read from `time` directly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Wait for `event` at most `timeout` seconds (None: for ever); True if it was set."""
        ...


class LoopClock:
    """The running event loop's time; outside a loop, `time.monotonic()` (the same scale)."""

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return event.is_set()
        return True


LOOP_CLOCK = LoopClock()
