"""A console app over a real records database (SQLite and PostgreSQL through `database`), with an
admin, a nurse, and calls recorded through the real CallRecorder."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from records import repository
from records.recorder import CallRecorder
from settings import Settings
from tests.records.simulate import quiet_call, triage_call, write_stereo_wav
from web.console import ConsoleServices, install, open_services

USERS = {"admin": ("ada", "admin-pass-1"), "nurse": ("nina", "nurse-pass-1")}
XSS_CALL = "c0ffee00xss"
CAMPAIGN = "cardio-dec"  # the campaign of the seeded follow-up call "quiet-followup"
XSS_PATIENT = '<img src=x onerror="alert(3)">Wang Fang'
CAMPAIGN_CSV = f"""name,phone,language,discharge_date,department,template
"{XSS_PATIENT.replace('"', '""')}",+86 138 0000 0001,zh,2026-11-20,cardiology,
Li Lei,13800000002,en,2026-11-21,cardiology,
Zhao Min,+8613800000003,zh,,cardiology,
Sun Li,+8613800000004,zh,,cardiology,
Chen Jie,+8613800000005,en,,cardiology,
"""


@dataclass
class Console:
    app: FastAPI
    settings: Settings
    services: ConsoleServices
    data_dir: Path
    user_ids: dict[str, int]

    def client(self, role: str | None = None, **kw) -> TestClient:
        client = TestClient(self.app, **kw)
        if role is not None:
            login(client, *USERS[role])
        return client


def login(client: TestClient, username: str, password: str, next_url: str = "/console/") -> None:
    page = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/console/login",
        data={"username": username, "password": password, "login_token": token, "next": next_url},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(client: TestClient, path: str = "/console/") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def seed(database, data_dir: Path) -> dict[str, int]:
    recorder = CallRecorder(database)
    wav = write_stereo_wav(data_dir / "recordings" / f"{XSS_CALL}.wav")
    now = time.time()
    calls = [
        triage_call(XSS_CALL, started_at=now - 120, recording=str(wav)),
        quiet_call("quiet-consult", "consultation", started_at=now - 60),
        quiet_call("quiet-followup", "self_care", started_at=now - 30, mode="followup", campaign="cardio-dec"),
    ]
    for events in calls:
        for event in events:
            recorder.write(event)  # the recorder's own synchronous write path
    ids = {}
    with database.session() as s:
        for role, (name, password) in USERS.items():
            ids[role] = repository.create_user(s, name, password, role).id
    seed_campaign(database)
    return ids


def seed_campaign(database) -> None:
    """Campaign "cardio-dec" (max 2 attempts) through telephony/campaigns.py's own functions:
    Wang Fang (XSS name): no answer, then completed → the call "quiet-followup";
    Li Lei: busy once, due for a retry; Zhao Min: completed → the red-flag call XSS_CALL (escalated);
    Sun Li: failed twice (attempts used up); Chen Jie: not called yet."""
    from telephony.campaigns import Contact, create_campaign, finish_attempt, import_csv, start_attempt

    with database.session() as s:
        campaign = create_campaign(s, "Cardiology December", id=CAMPAIGN, max_attempts=2, retry_backoff_s=1800)
        report = import_csv(s, campaign, CAMPAIGN_CSV)
        assert report.imported == 5 and not report.skipped
        contacts = {c.name: c for c in s.query(Contact).filter_by(campaign_id=CAMPAIGN)}
        for name, outcomes in {
            XSS_PATIENT: [("no-answer", None), ("completed", "quiet-followup")],
            "Li Lei": [("busy", None)],
            "Zhao Min": [("completed", XSS_CALL)],
            "Sun Li": [("failed", None), ("failed", None)],
        }.items():
            for outcome, call_id in outcomes:
                attempt = start_attempt(s, contacts[name], "sip", "seed")
                finish_attempt(s, attempt, outcome, call_id=call_id, sip_status=486 if outcome == "busy" else None)


@pytest.fixture
def console(database, tmp_path) -> Console:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, secret_key="test-secret-key", recording_retention_days=30)
    user_ids = seed(database, data_dir)
    app = FastAPI()
    install(app, settings)
    services = open_services(settings, database)
    app.state.records = services
    return Console(app, settings, services, data_dir, user_ids)


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """argon2 with test-sized costs: the hashing is the same code, just quicker."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(repository, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
