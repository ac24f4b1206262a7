"""Decodes from concurrent calls, gathered into batches that share one encoder pass.

No waiting window: a request that finds the engine idle runs at once, alone. Requests that arrive
while a batch runs wait for it and then go together (finals before partials), so under load the
cores run one batched pass instead of several passes that oversubscribe them and queue anyway. A
request cancelled before its batch starts (a stale speculative decode) is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(order=True)
class _Pending(Generic[Req, Res]):
    priority: int
    seq: int
    request: Req = field(compare=False)
    future: asyncio.Future[Res] = field(compare=False)


class DecodeBatcher(Generic[Req, Res]):
    def __init__(self, run: Callable[[list[Req]], list[Res]], executor: Executor, *,
                 max_batch: int = 4, max_inflight: int = 1) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self._run = run
        self._executor = executor
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[_Pending[Req, Res]] = []
        self._running: set[asyncio.Future[None]] = set()
        self._inflight = 0
        self._seq = itertools.count()
        self.batches: list[int] = []  # sizes of the batches run (for benches and tests)

    async def submit(self, request: Req, *, priority: int = 0) -> Res:
        """Lower `priority` runs first (finals 0, partials 1)."""
        loop = asyncio.get_running_loop()
        item: _Pending[Req, Res] = _Pending(priority, next(self._seq), request, loop.create_future())
        item.future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "unretrieved"
        self._queue.append(item)
        self._pump()
        try:
            return await asyncio.shield(item.future)
        except asyncio.CancelledError:
            if item in self._queue:
                self._queue.remove(item)
            raise

    def _pump(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            self._queue.sort()
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self._inflight += 1
            self.batches.append(len(batch))
            task = asyncio.ensure_future(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Pending[Req, Res]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run, [p.request for p in batch])
        except Exception as exc:  # one bad decode fails its batch's requests, never the engine
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        else:
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
        finally:
            self._inflight -= 1
            self._pump()
