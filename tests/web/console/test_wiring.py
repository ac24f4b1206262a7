"""server.py's wiring of the records and console: the lifespan opens the database, hooks the
CallRecorder to the call hub, mounts /console, and flushes at shutdown (no models needed)."""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx

from records.db import open_database
from records.recorder import CallRecorder
from records.repository import get_call
from settings import Settings
from tests.records.simulate import quiet_call, triage_call


class FakeHub:
    def __init__(self) -> None:
        self.observers = []
        self.active = {}

    def add_observer(self, observer) -> None:
        self.observers.append(observer)


async def test_create_app_records_every_call_of_the_hub_and_serves_the_console(tmp_path):
    from server import create_app

    hub = FakeHub()

    @asynccontextmanager
    async def runtime(settings):
        yield SimpleNamespace(hub=hub)

    data_dir = tmp_path / "data"
    old = data_dir / "recordings" / "old-call.wav"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 90 * 86400,) * 2)
    app = create_app(Settings(data_dir=data_dir, recording_retention_days=30), runtime_factory=runtime)
    async with app.router.lifespan_context(app):
        assert [type(o) for o in hub.observers] == [CallRecorder]
        assert not old.exists(), "recordings past retention are purged at start-up"
        for event in triage_call("wired-1") + quiet_call("wired-2", "self_care"):
            await hub.observers[0].on_event(event)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/console/login")).status_code == 200
            assert (await client.get("/console/", follow_redirects=False)).status_code == 303
        services = app.state.records
        assert services.purge_task is not None and not services.purge_task.done()
    assert services.purge_task.cancelled()
    db = open_database(f"sqlite:///{data_dir / 'carecall.db'}")
    with db.session() as s:  # everything published before shutdown was stored
        assert len(get_call(s, "wired-1").turns) == 5 and get_call(s, "wired-2").status == "ended"
    db.dispose()
