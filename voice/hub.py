"""Every call of this process: admission (a worker refuses calls it cannot serve in time), the
shared engines, the observers that follow all calls, and draining on shutdown.

Admission is "take the line, then answer": an entry point calls `reserve()` before it answers
(SIP 200 OK, WebSocket `started`, WebRTC answer) and gets a `Ticket` or `CallsBusy`; `run(ticket,
info, transport)` runs the call on that line. A ticket that is never run is released by
`ticket.release()` (or its `with` block), and in any case when it expires, so a line cannot leak.

    ticket = hub.reserve("sip")          # raises CallsBusy(reason): answer 486 / busy
    with ticket:                         # released on exit unless run() took it
        ...negotiate, answer...
        await hub.run(ticket, info, transport)

`readiness()` says whether a new call would be admitted, and why not (capacity, the measured
latency budget, draining), for the balancers' `/healthz/ready`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voice.budget import LatencyBudget
from voice.conversation import DialogueFactory
from voice.events import CallEvent, CallInfo, TurnRecorded
from voice.ports import CallObserver, Recognizer, Synthesizer, Transport

log = logging.getLogger("carecall.hub")

TICKET_HOLD_S = 30.0  # a line taken but not used within this long is given back


class CallsBusy(RuntimeError):
    """This worker cannot take the call (at capacity, latency budget broken, draining); the caller
    should get a clear busy signal, not a slow bot. `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Engines:
    """Models loaded once per process and shared by all calls."""

    recognizer: Recognizer
    synthesizers: dict[str, Synthesizer]  # by language: "zh", "en"
    dialogue: DialogueFactory


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str  # "ok", or why a new call would be refused
    active: int  # calls running plus lines reserved
    capacity: int
    draining: bool


@dataclass(frozen=True, slots=True)
class DrainReport:
    finished: int  # calls that ended on their own within the limit
    ended: int  # calls still running at the limit, told and ended by the worker
    seconds: float


class Endable(Protocol):
    """What draining needs from a running call."""

    def cancel(self, reason: str) -> None: ...


@dataclass(eq=False)
class Ticket:
    """One line of this worker, taken for one call before it is answered."""

    id: int
    channel: str
    expires_at: float
    _release: Callable[[Ticket], None] = field(repr=False)
    used: bool = False
    released: bool = False

    def release(self) -> None:
        """Give the line back (idempotent; no-op once the call ran on it)."""
        if not self.released:
            self.released = True
            self._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.used:
            self.release()


class CallHub:
    def __init__(self, engines: Engines, call_factory: Callable[..., Any], max_calls: int, *,
                 budget: LatencyBudget | None = None, clock: Callable[[], float] = time.monotonic,
                 ticket_hold_s: float = TICKET_HOLD_S) -> None:
        self.engines = engines
        self._call_factory = call_factory  # builds a voice.call.Call; injected to keep settings out
        self._max_calls = max_calls  # 0: refuse every call
        self._observers: list[CallObserver] = []
        self.active: dict[str, Any] = {}  # running calls by call id
        self.budget = budget or LatencyBudget(clock=clock)
        self._clock = clock
        self._hold_s = ticket_hold_s
        self._tickets: dict[int, Ticket] = {}  # reserved, not yet running
        self._ids = itertools.count(1)
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    # --- observers ---------------------------------------------------------------------------
    def add_observer(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    @staticmethod
    def new_call_id() -> str:
        return uuid.uuid4().hex

    async def publish(self, event: CallEvent) -> bool:
        """Give an event to every observer; one failing observer never harms the call or the others.
        False when an observer could not confirm that it stored the event (see CallObserver)."""
        stored = True
        if isinstance(event, TurnRecorded) and event.turn.metrics is not None:
            v2v = event.turn.metrics.voice_to_voice_ms
            if v2v is not None:
                self.budget.voice_to_voice(v2v / 1000)
        for observer in list(self._observers):
            try:
                if await observer.on_event(event) is False:
                    stored = False
            except Exception:  # an observer's bug must not end a patient's call
                log.exception("observer %s failed on %s", type(observer).__name__, type(event).__name__)
                stored = False
        return stored

    # --- admission ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._max_calls

    @property
    def draining(self) -> bool:
        return self._draining

    def _expire_tickets(self) -> None:
        now = self._clock()
        for ticket in [t for t in self._tickets.values() if t.expires_at <= now]:
            log.warning("a %s line was reserved but not used within %.0f s; released", ticket.channel, self._hold_s)
            ticket.release()

    def _in_use(self) -> int:
        return len(self.active) + len(self._tickets)

    def readiness(self) -> Readiness:
        """Would a new call be admitted now, and if not, why."""
        self._expire_tickets()
        in_use = self._in_use()
        if self._draining:
            reason = "draining"
        elif in_use >= self._max_calls:
            reason = f"at capacity ({in_use} of {self._max_calls} lines)"
        else:
            # The budget only refuses a worker that already carries calls: an idle one must be
            # able to take one, or it could never measure its way back.
            broken = self.budget.broken() if in_use else None
            reason = f"latency budget: {broken}" if broken else "ok"
        return Readiness(reason == "ok", reason, in_use, self._max_calls, self._draining)

    def has_capacity(self) -> bool:
        return self.readiness().ready

    def reserve(self, channel: str = "") -> Ticket:
        """Take a line for one call, atomically (no await inside). Raises `CallsBusy`."""
        state = self.readiness()
        if not state.ready:
            raise CallsBusy(state.reason)
        ticket = Ticket(next(self._ids), channel, self._clock() + self._hold_s, self._give_back)
        self._tickets[ticket.id] = ticket
        self._idle.clear()
        return ticket

    def _give_back(self, ticket: Ticket) -> None:
        self._tickets.pop(ticket.id, None)
        self._update_idle()

    def _update_idle(self) -> None:
        if not self.active and not self._tickets:
            self._idle.set()

    async def run(self, ticket: Ticket | CallInfo, info: CallInfo | Transport, transport: Transport | None = None,
                  ) -> dict[str, Any]:
        """Run one call on a reserved line to its end and return its structured result.

        `run(info, transport)` (no ticket) is the older form: it reserves the line itself."""
        if isinstance(ticket, CallInfo):  # legacy call form: run(info, transport)
            transport, info = info, ticket  # type: ignore[assignment]
            ticket = self.reserve(info.channel)
        assert isinstance(info, CallInfo) and transport is not None
        if ticket.released or ticket.used:
            raise CallsBusy("the reserved line was already released")
        ticket.used = True
        self._tickets.pop(ticket.id, None)
        call = self._call_factory(info=info, transport=transport, engines=self.engines, publish=self.publish)
        self.active[info.call_id] = call
        try:
            return await call.run()
        finally:
            self.active.pop(info.call_id, None)
            ticket.released = True
            self._update_idle()

    # --- draining ----------------------------------------------------------------------------
    def begin_drain(self) -> None:
        """No new calls from now on; running calls go on."""
        if not self._draining:
            self._draining = True
            log.info("draining: refusing new calls, %d running", len(self.active))

    async def drain(self, timeout_s: float = 5.0, *, end_grace_s: float = 5.0,
                    reason: str = "worker shutting down; a nurse will call you back") -> DrainReport:
        """Stop admitting, let running calls finish for up to `timeout_s`, then tell and end the
        rest (their records are closed by the call itself) and wait up to `end_grace_s` for that."""
        self.begin_drain()
        started = time.monotonic()  # waiting for calls happens in real time, whatever the clock
        for ticket in list(self._tickets.values()):
            ticket.release()  # lines reserved but not yet answered: their callers get busy
        before = len(self.active)
        if self.active:
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
            except TimeoutError:
                pass
        left: list[Endable] = list(self.active.values())
        for call in left:
            call.cancel(reason)
        if left:
            log.warning("drain limit %.1f s reached: ending %d call(s)", timeout_s, len(left))
            try:
                await asyncio.wait_for(self._idle.wait(), end_grace_s)
            except TimeoutError:
                log.error("%d call(s) did not end within %.0f s of being told", len(self.active), end_grace_s)
        return DrainReport(before - len(left), len(left), time.monotonic() - started)
