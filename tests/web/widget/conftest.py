"""Fixtures for the widget's tests: aioice pinned to loopback (it leaves 127.0.0.1 out on its own),
and an echo hub standing in for the call loop where the test is about the transport itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from voice.events import CallerAudio, CallerHangup, CallInfo, Dtmf, StateChanged
from voice.hub import CallHub


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class _EchoCall:
    def __init__(self, hub: EchoHub, info: CallInfo, transport: Any) -> None:
        self.hub, self.info, self.transport = hub, info, transport

    async def run(self) -> dict[str, Any]:
        info, transport = self.info, self.transport
        seen: dict[str, Any] = {"info": info, "frames": 0, "dtmf": [], "hangup": None}
        self.hub.runs.append(seen)
        try:
            await transport.send_event(StateChanged(info.call_id, "listening"))
            while True:
                event = await transport.receive()
                if isinstance(event, CallerAudio):
                    seen["frames"] += 1
                    await transport.send_audio(event.audio)
                elif isinstance(event, Dtmf):
                    seen["dtmf"].append(event.digit)
                elif isinstance(event, CallerHangup):
                    seen["hangup"] = event.reason
                    return {}
        except asyncio.CancelledError:
            seen["hangup"] = "cancelled"
            raise

    def cancel(self, reason: str) -> None:
        pass


class EchoHub(CallHub):
    """The real `voice.hub.CallHub` (lines reserved before answering) whose calls echo the caller's
    audio back and report what they saw."""

    def __init__(self, capacity: int = 8) -> None:
        super().__init__(None, lambda *, info, transport, engines, publish: _EchoCall(self, info, transport),  # type: ignore[arg-type]
                         capacity)
        self.runs: list[dict[str, Any]] = []
        self._n = 0

    @property
    def capacity(self) -> int:  # type: ignore[override]
        return self._max_calls

    @capacity.setter
    def capacity(self, n: int) -> None:
        self._max_calls = n

    def new_call_id(self) -> str:  # type: ignore[override]
        self._n += 1
        return f"call{self._n:04d}" + "0" * 24


@pytest.fixture
def echo_hub() -> EchoHub:
    return EchoHub()
