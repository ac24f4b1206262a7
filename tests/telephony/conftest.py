"""Shared pieces for the telephony tests: free ports, a uvicorn server in its own thread (so the
server's pacing never shares an event loop with the simulated caller), and a tiny CallHub-like
consumer that stands in for the call loop where a test is about the transport alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import uvicorn

from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup, CallInfo, Dtmf
from voice.hub import CallHub


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws_max_size=64 * 1024, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class CallRecord:
    info: CallInfo
    transport: Any
    audio: list[Pcm] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    hangup: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def caller_audio(self) -> np.ndarray:
        return np.concatenate([a.samples for a in self.audio]) if self.audio else np.zeros(0, np.int16)


Behaviour = Callable[[CallRecord], Awaitable[None]]


class _EchoCall:
    """One call driven by a test behaviour instead of the call loop (`cancel` ends it, as draining does)."""

    def __init__(self, hub: EchoHub, info: CallInfo, transport: Any) -> None:
        self.hub, self.rec = hub, CallRecord(info, transport)
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> dict[str, Any]:
        self.hub.calls.append(self.rec)
        self.hub._changed.set()
        self._task = asyncio.ensure_future(self.hub.behaviour(self.rec))
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self.rec.done.set()
        return {}

    def cancel(self, reason: str) -> None:
        self.rec.notes["ended_by_worker"] = reason
        if self._task is not None:
            self._task.cancel()


class EchoHub(CallHub):
    """The real `voice.hub.CallHub` (admission, tickets, draining) with the call loop replaced by
    `behaviour` (default: echo the caller back in 200 ms pieces until hang-up), for transport tests."""

    def __init__(self, behaviour: Behaviour | None = None, max_calls: int = 8) -> None:
        super().__init__(None, self._make_call, max_calls)  # type: ignore[arg-type]  # no engines needed
        self.behaviour = behaviour or echo_behaviour
        self.calls: list[CallRecord] = []
        self._n = 0
        self._changed = asyncio.Event()

    async def wait_started(self, n: int, timeout: float = 10) -> None:
        """Until `n` calls have started on this hub (an event, not a poll)."""
        async with asyncio.timeout(timeout):
            while len(self.calls) < n:
                self._changed.clear()
                await self._changed.wait()

    async def wait_idle(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._idle.wait(), timeout)

    def _make_call(self, *, info: CallInfo, transport: Any, engines: Any, publish: Any) -> _EchoCall:
        return _EchoCall(self, info, transport)

    @property
    def max_calls(self) -> int:
        return self._max_calls

    @max_calls.setter
    def max_calls(self, n: int) -> None:
        self._max_calls = n

    def new_call_id(self) -> str:  # type: ignore[override]  # readable ids in test output
        self._n += 1
        return f"test{self._n:04d}"

    def _finished(self, n: int) -> bool:
        return len(self.calls) >= n and all(c.done.is_set() for c in self.calls[:n])

    def _not_finished(self) -> AssertionError:
        return AssertionError(f"{len(self.calls)} calls, done: {[c.done.is_set() for c in self.calls]}")

    def wait_calls(self, n: int, timeout: float = 60) -> list[CallRecord]:
        """Until the first `n` calls have ended, for a hub served on another thread (ServerThread).
        Where the calls run on this thread's event loop, `await until_calls(n)`: this would block it."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            raise AssertionError("wait_calls would block this event loop, which runs the calls: await until_calls()")
        deadline = time.monotonic() + timeout
        while not self._finished(n):
            if time.monotonic() > deadline:
                raise self._not_finished()
            time.sleep(0.05)
        return self.calls[:n]

    async def until_calls(self, n: int, timeout: float = 60) -> list[CallRecord]:
        """Until the first `n` calls have ended, where they run on this event loop (SipEndpoint in the test)."""
        deadline = time.monotonic() + timeout
        while not self._finished(n):
            if time.monotonic() > deadline:
                raise self._not_finished()
            await asyncio.sleep(0.02)
        return self.calls[:n]


async def next_event(rec: CallRecord) -> Any:
    ev = await rec.transport.receive()
    if isinstance(ev, CallerAudio):
        rec.audio.append(ev.audio)
    elif isinstance(ev, Dtmf):
        rec.digits.append(ev.digit)
    elif isinstance(ev, CallerHangup):
        rec.hangup = ev.reason
    return ev


async def echo_behaviour(rec: CallRecord) -> None:
    t = rec.transport
    t.mark_turn()
    pending: list[Pcm] = []
    while True:
        ev = await next_event(rec)
        if isinstance(ev, CallerHangup):
            return
        if isinstance(ev, CallerAudio):
            pending.append(ev.audio)
            if sum(len(p) for p in pending) >= t.input_rate // 5:
                await t.send_audio(Pcm.concat(pending, t.input_rate))
                pending = []


def tone(freq: float, seconds: float, rate: int, amp: float = 0.4) -> Pcm:
    n = round(seconds * rate)
    return Pcm.from_float(amp * np.sin(2 * np.pi * freq * np.arange(n) / rate), rate)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


@pytest.fixture
def run_in_thread() -> Iterator[Callable[[Awaitable[Any]], Any]]:
    """Runs a coroutine on a fresh loop in a thread (for clients that must not share the test loop)."""
    threads: list[threading.Thread] = []

    def run(coro: Awaitable[Any]) -> Any:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = asyncio.run(coro)  # type: ignore[arg-type]
            except BaseException as exc:  # surfaced to the test
                box["error"] = exc

        th = threading.Thread(target=target, daemon=True)
        threads.append(th)
        th.start()
        th.join(120)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    yield run
    for th in threads:
        with contextlib.suppress(Exception):
            th.join(1)
