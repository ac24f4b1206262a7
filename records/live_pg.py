"""The live view across workers: with PostgreSQL, each worker's live-call messages go out on a
NOTIFY channel and every other worker's feed applies them, so a nurse's console shows every call
in progress whichever worker it is connected to. (SQLite means one process: nothing to share.)

A worker that starts (or reconnects) while calls are going on elsewhere asks for them: once it
listens it sends a sync request, and every other worker answers, to it alone, with each of its own
calls as it stands (a `call_started` carrying the state, turns and red flags so far). Without that a
restarted worker's console would miss the calls already in progress until they next said something,
and then show them without their beginning.

Each bridge also beats: a small `{"w": <its id>, "beat": true}` every `heartbeat_s` (Settings
.live_heartbeat_s, 5 s), from its NOTIFY thread. Every other feed notes the time it last heard each
worker (any message counts) and, once a worker that beat has been silent for `worker_lost_s` (20 s),
drops its calls with `call_ended` / `worker_lost` (records/live.py `LiveFeed.expire`, run every second
on the event loop). Without it, a `kill -9`ed worker's calls stayed in every console for the 15-minute
idle bound. The sender id is the bridge's own, new at each start, so a restarted worker's beats cannot
keep its dead predecessor's calls alive. A worker heard again after it was declared lost (a cut network,
not a crash) is asked for its calls as they stand, like a worker that has just started.

Both directions run on their own threads with their own connections; the event loop only hands
messages over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from typing import Any

from sqlalchemy.engine import make_url

from records.db import Database
from records.live import HEARTBEAT_S, LiveFeed

log = logging.getLogger("carecall.records.live")

CHANNEL = "carecall_live"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
MAX_TEXT = 1500


def _conninfo(database: Database) -> str:
    url = make_url(database.url)
    if url.drivername.startswith("postgres"):
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _fit(message: dict[str, Any]) -> str | None:
    """The message as a NOTIFY payload, shortened if a long utterance would not fit."""
    payload = json.dumps(message, ensure_ascii=False)
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    envelope = json.loads(payload)
    m = envelope.get("m") or {}
    for holder in (m, m.get("turn") or {}):
        if isinstance(holder.get("text"), str):
            holder["text"] = holder["text"][:MAX_TEXT] + "…"
    if isinstance(m.get("call"), dict):
        m["call"]["turns"] = []
    payload = json.dumps(envelope, ensure_ascii=False)
    return payload if len(payload.encode()) <= MAX_PAYLOAD else None


class PostgresLiveBridge:
    def __init__(self, database: Database, feed: LiveFeed, heartbeat_s: float = HEARTBEAT_S,
                 expire_every_s: float = 1.0) -> None:
        self.database = database
        self.feed = feed
        self.worker = uuid.uuid4().hex[:12]  # this process's sender id on the channel (not settings.worker_id)
        self.heartbeat_s = heartbeat_s
        self.expire_every_s = expire_every_s
        self._out: queue.Queue[str | None] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = threading.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.feed.forward = self._send
        for target, name in ((self._listen, "live-listen"), (self._notify, "live-notify")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        loop.call_soon_threadsafe(self._expire)

    def _expire(self) -> None:
        """On the event loop, every `expire_every_s`: lost workers' calls leave the view."""
        if self._stop.is_set() or self._loop is None or self._loop.is_closed():
            return
        try:
            self.feed.expire()
        finally:
            self._loop.call_later(self.expire_every_s, self._expire)

    def stop(self) -> None:
        self.feed.forward = None
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(None)
        for t in self._threads:
            t.join(timeout=5)

    # --- out: this worker's calls ------------------------------------------------------------
    def _send(self, message: dict[str, Any], to: str | None = None) -> None:
        envelope: dict[str, Any] = {"w": self.worker, "m": message}
        if to is not None:
            envelope["to"] = to
        payload = _fit(envelope)
        if payload is not None:
            self._put(payload)

    def _put(self, payload: str) -> None:
        try:
            self._out.put_nowait(payload)
        except queue.Full:  # the database is far behind; the local view is unaffected
            log.warning("live feed: dropping a message for other workers")

    def _answer_sync(self, requester: str) -> None:
        """On the event loop: this worker's calls as they stand, for a worker that just started listening."""
        for call in self.feed.local_calls():
            self._send({"type": "call_started", "call": call.as_dict()}, to=requester)

    def _notify(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self.database), autocommit=True) as conn:
                    beat = json.dumps({"w": self.worker, "beat": True})
                    next_beat = time.monotonic()  # at once: the others learn that this worker beats
                    while True:
                        now = time.monotonic()
                        if now >= next_beat:
                            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, beat))
                            next_beat = now + self.heartbeat_s
                        try:
                            payload = self._out.get(timeout=max(0.0, next_beat - now))
                        except queue.Empty:
                            continue
                        if payload is None:
                            return
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except Exception:
                log.warning("live feed: NOTIFY connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    # --- in: other workers' calls ------------------------------------------------------------
    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self.database), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._put(json.dumps({"w": self.worker, "sync": True}))  # what is going on already
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._receive(note.payload)
            except Exception:
                log.warning("live feed: LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def _receive(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("w"), str) or data["w"] == self.worker:
            return
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._apply, data["w"], data)

    def _apply(self, sender: str, data: dict[str, Any]) -> None:
        """On the event loop: one envelope from another worker (a message to a third one still says it is alive)."""
        if self.feed.heard(sender, beat=data.get("beat") is True):  # back after it was declared lost
            self._put(json.dumps({"w": self.worker, "sync": True, "to": sender}))
        if data.get("to", self.worker) != self.worker:
            return
        if data.get("sync") is True:
            self._answer_sync(sender)
        elif isinstance(data.get("m"), dict):
            self.feed.apply_message(data["m"], sender=sender)
