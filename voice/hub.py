"""Every call of this process: admission (a worker refuses calls it cannot serve in time), the
shared engines, and the observers that follow all calls."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voice.conversation import DialogueFactory
from voice.events import CallEvent, CallInfo
from voice.ports import CallObserver, Recognizer, Synthesizer, Transport

log = logging.getLogger("carecall.hub")


class CallsBusy(RuntimeError):
    """This worker is at capacity; the caller should get a busy signal, not a slow bot."""


@dataclass
class Engines:
    """Models loaded once per process and shared by all calls."""

    recognizer: Recognizer
    synthesizers: dict[str, Synthesizer]  # by language: "zh", "en"
    dialogue: DialogueFactory


class CallHub:
    def __init__(self, engines: Engines, call_factory: Callable[..., Any], max_calls: int) -> None:
        self.engines = engines
        self._call_factory = call_factory  # builds a voice.call.Call; injected to keep settings out
        self._max_calls = max_calls
        self._observers: list[CallObserver] = []
        self.active: dict[str, Any] = {}

    def add_observer(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    @staticmethod
    def new_call_id() -> str:
        return uuid.uuid4().hex

    def has_capacity(self) -> bool:
        return len(self.active) < self._max_calls

    async def publish(self, event: CallEvent) -> None:
        """Give an event to every observer; one failing observer never harms the call or the others."""
        for observer in list(self._observers):
            try:
                await observer.on_event(event)
            except Exception:  # an observer's bug must not end a patient's call
                log.exception("observer %s failed on %s", type(observer).__name__, type(event).__name__)

    async def run(self, info: CallInfo, transport: Transport) -> dict[str, Any]:
        """Run one call to its end and return its structured result."""
        if not self.has_capacity():
            raise CallsBusy(f"{len(self.active)} calls in progress, limit {self._max_calls}")
        call = self._call_factory(info=info, transport=transport, engines=self.engines, publish=self.publish)
        self.active[info.call_id] = call
        try:
            return await call.run()
        finally:
            self.active.pop(info.call_id, None)

    async def drain(self, timeout: float = 5.0) -> None:
        """On shutdown: hang up every call so each one's record is closed properly."""
        calls = list(self.active.values())
        for call in calls:
            call.cancel("server shutting down")
        if calls:
            await asyncio.sleep(0)
