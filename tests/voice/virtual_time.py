"""An asyncio event loop on virtual time: whenever every task waits on a timer, the loop jumps to
the next one instead of sleeping. Timing logic (pacing, endpointing, silence, max call length) runs
exactly as in production, in milliseconds of wall time, and the same on a loaded or an idle machine.

    run_virtual(main())          # a plain (sync) test runs its coroutine on virtual time

Only for code that does no real I/O and no threads (the fakes in fakes.py): a real socket or an
executor would see time jump. `loop.time()` starts at 1000.0.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            if not ready and timeout is None:
                raise RuntimeError("virtual time: every task waits for I/O that will never come (deadlock)")
            return ready
        assert self.loop is not None
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(coro: Coroutine[Any, Any, T], *, limit_s: float = 3600.0) -> T:
    """Run `coro` to its end on a fresh virtual-time loop; fail if it needs more than `limit_s`
    of virtual time (a hang becomes a failure, not a stuck test)."""
    loop = VirtualTimeLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(asyncio.wait_for(coro, limit_s))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
