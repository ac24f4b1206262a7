"""Outbound campaigns: CSV import with phone validation, call windows, retries with backoff and a
maximum of attempts, claims that never hand one patient to two workers (SQLite and PostgreSQL),
dialling through SIP (SIPp answers) and through a carrier REST Calls API (a local fake that
follows Twilio's documented API: Basic auth, form fields, signed status callbacks)."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from settings import Settings
from telephony.campaigns import (
    Attempt,
    CampaignRunner,
    CarrierDialer,
    Contact,
    DialOutcome,
    SipDialer,
    claim_due,
    create_campaign,
    import_csv,
    in_window,
    next_allowed,
    normalise_phone,
    retry_at,
)
from telephony.lines import PhoneLines
from telephony.sip.endpoint import SipConfig, SipEndpoint
from telephony.twilio_webhooks import twilio_signature
from tests.telephony.conftest import EchoHub, ServerThread, free_port, tone
from tests.telephony.peers import HAVE_SIPP, run_sipp, scenario, ulaw_file, until_listening

SHANGHAI_NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


def test_phone_numbers_are_normalised_to_e164_or_refused() -> None:
    assert normalise_phone("+86 138-0000-1234") == "+8613800001234"
    assert normalise_phone("13800001234") == "+8613800001234"
    assert normalise_phone("0044 20 7946 0958") == "+442079460958"
    for bad in ("", "12345", "+0123456789", "phone", "+86138000012345678", "1380000123a"):
        assert normalise_phone(bad) is None, bad


CSV = """name,phone,language,discharge_date,department,template
Wang Fang,+86 138 0000 0001,zh,2026-11-20,cardiology,discharge_followup
Li Lei,13800000002,en,2026-11-21,orthopaedics,
No Phone,not-a-number,zh,,,
Dup,+8613800000001,zh,,,
Bad Lang,+8613800000005,fr,,,
Bad Date,+8613800000006,zh,20/11/2026,,
,+8613800000007,zh,,,
"""


def test_csv_import_keeps_valid_rows_and_says_why_others_were_skipped(database, caplog) -> None:
    caplog.set_level(logging.INFO, logger="carecall.telephony")
    with database.session() as session:
        c = create_campaign(session, "discharge week 47")
        report = import_csv(session, c, CSV, now=SHANGHAI_NOON)
        contacts = session.scalars(select(Contact).order_by(Contact.id)).all()
        assert [(x.name, x.phone, x.language) for x in contacts] == [
            ("Wang Fang", "+8613800000001", "zh"), ("Li Lei", "+8613800000002", "en")]
        assert contacts[0].department == "cardiology" and str(contacts[0].discharge_date) == "2026-11-20"
    assert report.imported == 2
    assert [r for _, r in report.skipped] == [
        "invalid phone number (not E.164)", "duplicate phone number in this campaign",
        "language must be zh or en, not 'fr'", "discharge_date is not YYYY-MM-DD", "no name"]
    assert "13800000" not in caplog.text  # no numbers in the logs


def test_call_windows_are_local_time_and_retries_back_off() -> None:
    from telephony.campaigns import Campaign

    c = Campaign(id="w", name="w", timezone="Asia/Shanghai", window_start="09:00", window_end="20:00",
                 retry_backoff_s=1800, max_attempts=3)
    assert in_window(c, SHANGHAI_NOON)
    night = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    assert not in_window(c, night)
    opening = next_allowed(c, night).astimezone(ZoneInfo("Asia/Shanghai"))
    assert (opening.day, opening.hour, opening.minute) == (26, 9, 0)
    assert retry_at(c, 1, SHANGHAI_NOON) - SHANGHAI_NOON == timedelta(minutes=30)
    assert retry_at(c, 3, SHANGHAI_NOON) - SHANGHAI_NOON == timedelta(hours=2)
    late = datetime(2026, 11, 25, 11, 50, tzinfo=UTC)  # 19:50: a retry lands after closing → next morning
    assert retry_at(c, 1, late).astimezone(ZoneInfo("Asia/Shanghai")).hour == 9


def test_concurrent_workers_never_claim_the_same_patient(database) -> None:
    with database.session() as session:
        c = create_campaign(session, "claims")
        rows = "\n".join(f"P{i},+86139{i:08d},zh" for i in range(40))
        assert import_csv(session, c, "name,phone,language\n" + rows, now=SHANGHAI_NOON).imported == 40
    claimed: list[list[int]] = [[] for _ in range(4)]

    def worker(n: int) -> None:
        while ids := claim_due(database.engine, f"w{n}", now=SHANGHAI_NOON + timedelta(seconds=1), limit=3):
            claimed[n].extend(ids)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [i for ids in claimed for i in ids]
    assert len(every) == 40 and len(set(every)) == 40
    with database.session() as session:
        assert {x.status for x in session.scalars(select(Contact))} == {"dialling"}
    # nothing due is handed out before its time
    assert claim_due(database.engine, "late", now=SHANGHAI_NOON - timedelta(hours=1)) == []


class ScriptedDialer:
    channel = "sip"

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    async def dial(self, contact, campaign, attempt) -> DialOutcome:
        self.calls.append(contact.phone)
        return DialOutcome(self.outcomes.pop(0), sip_status=486)


async def test_retries_with_backoff_until_done_or_out_of_attempts(database) -> None:
    with database.session() as session:
        c = create_campaign(session, "retries", max_attempts=3, retry_backoff_s=600)
        import_csv(session, c, "name,phone\nA,+8613900000001\nB,+8613900000002\n", now=SHANGHAI_NOON)
    a_then_b = ScriptedDialer(["busy", "no-answer", "no-answer", "completed", "machine"])
    runner = CampaignRunner(database.engine, {"sip": a_then_b}, concurrency=1)
    t = SHANGHAI_NOON
    assert await runner.run_once(now=t) == 1  # A: busy
    assert await runner.run_once(now=t) == 1  # B: no answer
    assert await runner.run_once(now=t) == 0  # both wait for their retry
    t += timedelta(minutes=11)
    assert await runner.run_once(now=t) == 1  # A again: no answer (2nd attempt)
    assert await runner.run_once(now=t) == 1  # B again: completed
    t += timedelta(minutes=21)
    assert await runner.run_once(now=t) == 1  # A: machine (3rd and last attempt)
    t += timedelta(hours=2)
    assert await runner.run_once(now=t) == 0
    with database.session() as session:
        contacts = {x.name: x for x in session.scalars(select(Contact))}
        assert (contacts["A"].status, contacts["A"].attempts, contacts["A"].last_outcome) == ("exhausted", 3, "machine")
        assert (contacts["B"].status, contacts["B"].attempts) == ("done", 2)
        outcomes = [(a.contact_id, a.number, a.outcome) for a in session.scalars(select(Attempt).order_by(Attempt.id))]
    assert [o for _, _, o in outcomes] == ["busy", "no-answer", "no-answer", "completed", "machine"]


@pytest.mark.sip
@pytest.mark.skipif(not HAVE_SIPP, reason="needs sipp")
async def test_sip_campaign_call_answered_by_sipp(database, tmp_path: Path) -> None:
    sip_port = free_port(socket.SOCK_DGRAM)
    hub = EchoHub()
    ep = SipEndpoint(SipConfig(port=0, rtp_ports=(36000, 36099), trunk=f"127.0.0.1:{sip_port}"), get_hub=lambda: hub)
    await ep.start()
    with database.session() as session:
        c = create_campaign(session, "sip follow-up", timezone="UTC", window_start="00:00", window_end="23:59")
        import_csv(session, c, "name,phone,language,department\nZhang Wei,+8613900001111,zh,cardiology\n")
    sc = scenario("uas_answer.xml", tmp_path, speech=str(ulaw_file(tone(700, 1.0, 8000).samples, tmp_path / "s.ulaw")),
                  talk_ms="2500")
    try:
        sipp = asyncio.create_task(run_sipp(None, sc, sip_port=sip_port, media_port=27600, timeout=20))
        await until_listening(sip_port)
        runner = CampaignRunner(database.engine, {"sip": SipDialer(ep)})
        assert await runner.run_once() == 1
        run = await sipp
    finally:
        await ep.stop()
    assert run.ok, run.output[-1500:]
    (rec,) = await hub.until_calls(1)
    assert rec.info.mode == "followup" and rec.info.language == "zh"
    assert rec.info.params["patient"] == "Zhang Wei" and rec.info.params["department"] == "cardiology"
    with database.session() as session:
        (attempt,) = session.scalars(select(Attempt)).all()
        assert attempt.outcome == "completed" and attempt.call_id == rec.info.call_id
        assert session.scalars(select(Contact)).one().status == "done"


# --- a carrier that follows Twilio's documented Calls API ------------------------------------
class FakeCarrier:
    """POST /2010-04-01/Accounts/{sid}/Calls.json with Basic auth and form fields To, From, Url,
    StatusCallback → 201 {"sid"}; then, like the carrier, requests Url (signed) when the callee
    answers, and posts signed status callbacks. What each number does is scripted."""

    def __init__(self, sid: str, token: str, script: dict[str, tuple[str, str]]) -> None:
        self.sid, self.token, self.script = sid, token, script  # To → (CallStatus, AnsweredBy)
        self.created: list[dict[str, list[str]]] = []
        self.twiml: dict[str, str] = {}
        self.rejected_auth = 0
        self.app = FastAPI()
        self.app.post("/2010-04-01/Accounts/{account}/Calls.json")(self.create)
        self._tasks: set[asyncio.Task] = set()

    async def create(self, account: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        good = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if account != self.sid or auth != good:
            self.rejected_auth += 1
            return Response('{"code": 20003, "message": "Authenticate"}', status_code=401)
        form = await request.form()
        fields = {k: form.getlist(k) for k in form}
        for required in ("To", "From", "Url"):
            if not fields.get(required):
                return Response(f'{{"code": 21201, "message": "No {required}"}}', status_code=400)
        self.created.append(fields)
        call_sid = "CA" + uuid.uuid4().hex
        task = asyncio.create_task(self._progress(call_sid, fields))
        self._tasks.add(task)
        return Response(f'{{"sid": "{call_sid}", "status": "queued"}}', status_code=201,
                        media_type="application/json")

    async def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        sig = twilio_signature(self.token, url, params)
        async with httpx.AsyncClient() as client:
            return await client.post(url, data=params, headers={"X-Twilio-Signature": sig})

    async def _progress(self, call_sid: str, fields: dict[str, list[str]]) -> None:
        to = fields["To"][0]
        status, answered_by = self.script[to]
        base = {"CallSid": call_sid, "AccountSid": self.sid, "From": fields["From"][0], "To": to}
        callback = fields.get("StatusCallback", [""])[0]
        await self._post(callback, {**base, "CallStatus": "ringing"})
        if status == "completed":
            r = await self._post(fields["Url"][0], {**base, "CallStatus": "in-progress", "AnsweredBy": answered_by})
            self.twiml[to] = r.text
        await self._post(callback, {**base, "CallStatus": status, "AnsweredBy": answered_by, "CallDuration": "12"})


async def test_carrier_campaign_through_the_rest_calls_api(database, db_url: str) -> None:
    token, sid = "carrier-token", "AC" + "1" * 32
    script = {"+8613900000001": ("completed", "human"), "+8613900000002": ("busy", ""),
              "+8613900000003": ("completed", "machine_start")}
    carrier = FakeCarrier(sid, token, script)
    port = free_port()
    settings = Settings(database_url=db_url, twilio_auth_token=token, public_base_url=f"http://127.0.0.1:{port}")
    app = FastAPI()
    app.state.hub = EchoHub()
    lines = PhoneLines(settings)
    app.include_router(lines.router)
    with database.session() as session:
        c = create_campaign(session, "carrier follow-up", channel="carrier", timezone="UTC",
                            window_start="00:00", window_end="23:59")
        import_csv(session, c, "name,phone,language\n" + "\n".join(f"P{i},{n},en" for i, n in enumerate(script)))
    with ServerThread(carrier.app) as fake, ServerThread(app, port=port):
        dialer = CarrierDialer(api_base=fake.http, account_sid=sid, auth_token=token, from_number="+861010000000",
                               public_base_url=settings.public_base_url)
        runner = CampaignRunner(database.engine, {"carrier": dialer}, concurrency=3)
        assert await runner.run_once() == 3
        wrong = CarrierDialer(api_base=fake.http, account_sid=sid, auth_token="wrong", from_number="+861010000000",
                              public_base_url=settings.public_base_url)
        denied = await wrong.dial(Contact(phone="+8613900000009", language="en"), c, Attempt(id=999))
        for _ in range(100):
            with Session(database.engine) as session:
                if all(a.outcome != "pending" for a in session.scalars(select(Attempt))):
                    break
            await asyncio.sleep(0.1)
        await lines.aclose()
    assert denied.outcome == "failed" and carrier.rejected_auth == 1
    created = {f["To"][0]: f for f in carrier.created}
    assert set(created) == set(script)
    first = created["+8613900000001"]
    assert first["From"] == ["+861010000000"] and "/telephony/twilio/voice?" in first["Url"][0]
    assert "mode=followup" in first["Url"][0] and "/telephony/twilio/status?attempt=" in first["StatusCallback"][0]
    assert set(first["StatusCallbackEvent"]) == {"initiated", "ringing", "answered", "completed"}
    stream = ET.fromstring(carrier.twiml["+8613900000001"]).find("Connect/Stream")
    assert stream is not None and stream.get("url") == f"ws://127.0.0.1:{port}/telephony/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["mode"] == "followup" and params["language"] == "en" and params["campaign"] == c.id
    assert ET.fromstring(carrier.twiml["+8613900000003"]).find("Hangup") is not None  # a machine answered
    with Session(database.engine) as session:
        by_phone = {session.get(Contact, a.contact_id).phone: a for a in session.scalars(select(Attempt))}
        assert {p: a.outcome for p, a in by_phone.items()} == {
            "+8613900000001": "completed", "+8613900000002": "busy", "+8613900000003": "machine"}
        assert all(a.carrier_sid and a.carrier_sid.startswith("CA") for a in by_phone.values())
        statuses = {x.phone: x.status for x in session.scalars(select(Contact))}
    assert statuses == {"+8613900000001": "done", "+8613900000002": "due", "+8613900000003": "due"}
