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


class EchoHub:
    """Just enough of `voice.hub.CallHub` for transport tests: `run(info, transport)` drives one
    call with `behaviour` (default: echo the caller back in 200 ms pieces until hang-up)."""

    def __init__(self, behaviour: Behaviour | None = None, max_calls: int = 8) -> None:
        self.behaviour = behaviour or echo_behaviour
        self.max_calls = max_calls
        self.calls: list[CallRecord] = []
        self.active = 0
        self._n = 0

    def has_capacity(self) -> bool:
        return self.active < self.max_calls

    def new_call_id(self) -> str:
        self._n += 1
        return f"test{self._n:04d}"

    async def run(self, info: CallInfo, transport: Any) -> dict[str, Any]:
        rec = CallRecord(info, transport)
        self.calls.append(rec)
        self.active += 1
        try:
            await self.behaviour(rec)
        finally:
            self.active -= 1
            rec.done.set()
        return {}

    def wait_calls(self, n: int, timeout: float = 30) -> list[CallRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.calls) >= n and all(c.done.is_set() for c in self.calls[:n]):
                return self.calls[:n]
            time.sleep(0.05)
        raise AssertionError(f"{len(self.calls)} calls, done: {[c.done.is_set() for c in self.calls]}")


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
