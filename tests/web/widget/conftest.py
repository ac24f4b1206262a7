"""Fixtures for the widget's tests: aioice pinned to loopback (it leaves 127.0.0.1 out on its own),
and an echo hub standing in for the call loop where the test is about the transport itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from voice.events import CallerAudio, CallerHangup, CallInfo, Dtmf, StateChanged


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class EchoHub:
    """A hub whose calls echo the caller's audio back and report what they saw."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self.active: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []
        self._n = 0

    def has_capacity(self) -> bool:
        return len(self.active) < self.capacity

    def new_call_id(self) -> str:
        self._n += 1
        return f"call{self._n:04d}" + "0" * 24

    async def run(self, info: CallInfo, transport: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {"info": info, "frames": 0, "dtmf": [], "hangup": None}
        self.runs.append(seen)
        self.active[info.call_id] = transport
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
        finally:
            self.active.pop(info.call_id, None)


@pytest.fixture
def echo_hub() -> EchoHub:
    return EchoHub()
