"""Wiring the records and the console into the server: `install` (at app creation) adds the
/console routes; `start` (in the lifespan) opens the database, starts the CallRecorder, hooks it
to the call hub and purges old recordings; `ConsoleServices.aclose` (after the hub drained) flushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from records.db import Database, open_database
from records.live import LiveFeed
from records.live_pg import PostgresLiveBridge
from records.login_failures import SharedFailureCounts
from records.recorder import CallRecorder, close_interrupted_calls
from records.recordings import private_recordings_dir, purge_recordings, recordings_dir
from settings import Settings
from web.console.auth import LoginThrottle, SessionSigner, load_or_create_secret

log = logging.getLogger("carecall.console")
PURGE_INTERVAL_S = 24 * 3600
MAINTENANCE_INTERVAL_S = 300
STALE_CALL_S = 1800  # no turn for 30 min: no worker runs this call any more


@dataclass
class ConsoleServices:
    settings: Settings
    database: Database
    recorder: CallRecorder
    signer: SessionSigner
    throttle: LoginThrottle = field(default_factory=LoginThrottle)  # counts before argon2 (#7); see login_throttle
    own_database: bool = True
    purge_task: asyncio.Task[None] | None = None
    live_bridge: PostgresLiveBridge | None = None  # PostgreSQL: live calls of every worker

    @property
    def feed(self) -> LiveFeed:
        return self.recorder.feed

    async def maintain(self, interval_s: float = MAINTENANCE_INTERVAL_S) -> None:
        """Every few minutes: close calls a dead worker left open (PostgreSQL); once a day: purge
        recordings past retention (both also run at start-up, in open_services)."""
        last_purge = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(
                    close_interrupted_calls, self.database, recordings_dir(self.settings.data_dir),
                    idle_s=STALE_CALL_S,
                )  # fmt: skip
                if asyncio.get_running_loop().time() - last_purge >= PURGE_INTERVAL_S:
                    last_purge = asyncio.get_running_loop().time()
                    await asyncio.to_thread(
                        purge_recordings, self.database, self.settings.data_dir,
                        self.settings.recording_retention_days,
                    )  # fmt: skip
            except Exception:
                log.exception("records maintenance failed; will retry")

    async def aclose(self) -> None:
        if self.purge_task is not None:
            self.purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.purge_task
        if self.live_bridge is not None:
            await asyncio.to_thread(self.live_bridge.stop)
        await self.recorder.aclose()
        if self.own_database:
            self.database.dispose()


def login_throttle(database: Database) -> LoginThrottle:
    """With PostgreSQL the failure counts are shared by every worker (issue 13); one SQLite worker counts
    in memory, which keeps a guessing flood's writes off the single-writer file the calls are recorded in."""
    if database.dialect == "postgresql":
        return LoginThrottle(counts=SharedFailureCounts(database))
    return LoginThrottle()


def open_services(settings: Settings, database: Database | None = None) -> ConsoleServices:
    """Blocking: open and migrate the database, close calls a stopped server left open, purge."""
    own = database is None
    database = database or open_database(settings.resolved_database_url)
    private_recordings_dir(settings.data_dir)  # 0700: recordings are health data
    closed = close_interrupted_calls(database, recordings_dir(settings.data_dir))
    closed += close_interrupted_calls(database, recordings_dir(settings.data_dir), idle_s=STALE_CALL_S)
    if closed:
        log.warning("%d calls were cut off by a server stop; their finished turns are kept", closed)
    purge_recordings(database, settings.data_dir, settings.recording_retention_days)
    secret = load_or_create_secret(settings.secret_key.get_secret_value(), settings.data_dir)
    return ConsoleServices(
        settings=settings,
        database=database,
        recorder=CallRecorder(database, LiveFeed(worker=settings.worker_id, worker_lost_s=settings.live_worker_lost_s)),
        signer=SessionSigner(secret),
        throttle=login_throttle(database),
        own_database=own,
    )


def install(app: FastAPI, settings: Settings) -> None:
    """At app creation: mount the console's routes at /console (they find their services at
    `app.state.records` once `start` ran; before that they answer 503)."""
    from web.console.routes import build_router

    app.include_router(build_router(), prefix="/console")


async def start(app: FastAPI, settings: Settings, database: Database | None = None) -> ConsoleServices:
    """In the lifespan, after the call hub exists: records on, recorder following every call."""
    services = await asyncio.to_thread(open_services, settings, database)
    services.purge_task = asyncio.create_task(services.maintain(), name="records-maintenance")
    if services.database.dialect == "postgresql":
        services.live_bridge = PostgresLiveBridge(services.database, services.feed, settings.live_heartbeat_s)
        services.live_bridge.start(asyncio.get_running_loop())
    app.state.records = services
    hub: Any = getattr(app.state, "hub", None)
    if hub is not None:
        hub.add_observer(services.recorder)
    return services
