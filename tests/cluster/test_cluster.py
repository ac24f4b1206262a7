"""Issue 13 on real components, loopback only: three `carecall serve` workers (real models) on one
PostgreSQL, behind nginx (TLS, self-signed) and Kamailio's dispatcher, started by `web.cluster` from
the shipped configs in deploy/ (the same as `carecall cluster up 3`).

- WebSocket calls through nginx and SIP calls (SIPp) through Kamailio spread over all three workers,
  every call recorded once in the shared database; with every line taken, nginx gets a 503 from each
  worker before any work and the caller a clear 503 (nothing half-answered), and calls succeed again
  once nginx's passive health (fail_timeout) takes the workers back;
- a widget token used on worker A is refused on worker B;
- WebRTC calls from Chromium: page, token and offer through nginx, ICE and media straight to the
  worker that answered the offer; spread over the workers, heard, each recorded once;
- the issue's tally: at least 12 calls of the three kinds together, carried by all three workers
  (each call's worker known from its own evidence), every one recorded exactly once;
- the console on any worker shows all: a nurse signed in on each worker directly and through nginx
  sees every call of the cluster in the queue, a call still open on worker A in the live list of
  every worker (LISTEN/NOTIFY) with its transcript so far, opens the page, transcript and recording of
  a call another worker carried (an audit row for each), and one session is valid on every worker
  (shared secret, shared session version: signing out on one ends it on all);
- takeover from another worker's console: a call carried by worker 1 is named so in every live list;
  worker 0 refuses to take it over (409 naming the owner); a nurse in Chromium signed in through nginx
  takes it over (nginx routes `?worker=w1` to worker 1), she and the caller hear each other, she hands
  back, with the reviews and audit rows; a takeover meant for a killed worker is nginx's 502;
- SIGTERM one worker mid-call: its call goes on until the drain limit, is then told and ended with a
  complete record, the worker exits 0, and new calls (both balancers) go to the others;
- kill -9 another mid-call: new calls still succeed, and its call leaves the surviving workers' live
  lists within seconds (the heartbeat, records/live_pg.py), not after the 15-minute idle bound;
- the killed worker started again while a call goes on elsewhere: its console's live list shows that
  call with its transcript so far (records/live_pg.py asks the others), and starting did not close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from bench.harness import RELAXED_BUDGET
from records.db import open_database
from records.models import AuditEvent, Call, Review, Turn
from tests.conftest import poll
from tests.telephony.conftest import tone
from tests.telephony.peers import HAVE_SIPP, run_sipp, scenario, ulaw_file
from tests.telephony.test_sip import media_port
from tests.web.conftest import patient
from tests.web.console.test_takeover_browser import INBOUND_ENERGY, KEEP_PCS
from tests.web.widget.browser import CHROMIUM, FLAGS, chromium, hospital_page, start_call, wait_for
from tests.web.widget.speech import mic_wav
from voice.audio import Pcm
from voice.resample import resample
from web.cluster import Cluster, Worker

pytestmark = [pytest.mark.models, pytest.mark.sip, pytest.mark.postgres,
              pytest.mark.skipif(not HAVE_SIPP, reason="needs sipp"), pytest.mark.timeout(900)]
SIPP_DIR = Path(__file__).parent / "sipp"
DRAIN_S = 4.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.plan(tmp_path_factory.mktemp("cluster"), 3, worker_env={
        "CARECALL_CALL_TOKEN_REQUIRED": "true",
        "CARECALL_DRAIN_TIMEOUT_S": str(DRAIN_S),
        "CARECALL_MAX_CONCURRENT_CALLS": "2",
        "CARECALL_ASR_THREADS": "1",
        # the tests' callers listen without speaking while calls are held (and a worker restarts): on a
        # loaded machine that outlasts the default 8 s × 2 reprompts, and the bot would hang up first
        "CARECALL_SILENCE_REPROMPT_S": "600",
        # Readiness here turns on capacity and drain (what these tests check); a broken latency budget
        # (loop lag, ASR queue) has its own tests. Two suites on 2 cores break it, and the workers then
        # flapped not-ready and refused calls the spreading tests needed (seen with two `make test` at once).
        **RELAXED_BUDGET,
    })
    c.start()
    try:
        yield c
    finally:
        c.stop()


@dataclass(frozen=True)
class Made:
    """One call the module made, and the worker that carried it (by that worker's own evidence)."""

    channel: str  # websocket | webrtc | sip, as recorded
    call_id: str
    worker: int


@pytest.fixture(scope="module")
def made() -> list[Made]:
    """Every call the module's tests made, in order (the issue's tally is counted from it)."""
    return []


def tls(c: Cluster) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(c.run_dir / "tls.crt"))


async def token(c: Cluster, base: str | None = None, lang: str = "en") -> str:
    async with httpx.AsyncClient(verify=tls(c)) as client:
        r = await client.post(f"{base or c.https_url}/widget/token", json={"lang": lang})
        r.raise_for_status()
        return r.json()["token"]


async def owner(c: Cluster) -> int | None:
    """The worker running the one open call (each worker's readiness counts its calls)."""
    async with httpx.AsyncClient() as client:
        for w in c.workers:
            if w.process is None or w.process.poll() is not None:
                continue
            r = await client.get(f"{w.base_url}/healthz/ready")
            if r.json().get("active"):
                return w.index
    return None


async def active_per_worker(c: Cluster) -> list[int]:
    async with httpx.AsyncClient() as client:
        return [(await client.get(f"{w.base_url}/healthz/ready")).json().get("active", 0) for w in c.workers]


async def until_active(c: Cluster, total: int) -> list[int]:
    """Each worker's open calls, once they add up to `total` (an ended call's line is given back just
    after its `ended`)."""
    async with asyncio.timeout(30):
        while sum(counts := await active_per_worker(c)) != total:
            await asyncio.sleep(0.1)
    return counts


async def open_tracked(c: Cluster, made: list[Made], open_now: int):  # type: ignore[no-untyped-def]
    """`open_call` through nginx while `open_now` calls are open, tallied with the worker whose line
    count went up (nothing else opens calls meanwhile)."""
    before = await until_active(c, open_now)
    ws, started = await open_call(c)
    if ws is not None:
        after = await until_active(c, open_now + 1)
        [worker] = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a == b + 1]
        made.append(Made("websocket", started["call_id"], worker))
    return ws, started


async def open_call(c: Cluster, url: str | None = None, tok: str | None = None):  # type: ignore[no-untyped-def]
    """A /ws/call started (through nginx by default) and its greeting heard."""
    url = url or c.https_url.replace("https", "wss") + "/ws/call"
    ws = await websockets.connect(url, ssl=tls(c) if url.startswith("wss") else None, max_size=2**22)
    await ws.send(json.dumps({"type": "start", "language": "en", "sample_rate": 16000,
                              "token": tok or await token(c)}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if first.get("type") != "started":
        await ws.close()
        return None, first
    async with asyncio.timeout(60):
        while not isinstance(await ws.recv(), bytes):  # the greeting's first audio
            pass
    return ws, first


async def end_call(ws) -> dict:  # type: ignore[no-untyped-def]
    await ws.send(json.dumps({"type": "end"}))
    return await until_ended(ws)


async def until_ended(ws, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            try:
                msg = await ws.recv()
            except websockets.ConnectionClosed:
                return {"type": "closed"}
            if isinstance(msg, str) and json.loads(msg).get("type") == "ended":
                return json.loads(msg)


async def sip_call(c: Cluster, tmp: Path, talk_ms: int = 1500) -> bool:
    speech = ulaw_file(tone(440, 1.0, 8000).samples, tmp / "s.ulaw")
    sc = scenario("uac_call.xml", tmp, speech=str(speech), talk_ms=str(talk_ms))
    run = await run_sipp(f"127.0.0.1:{c.sip_port}", sc, sip_port=free_udp(), media_port=media_port(),
                         keys={"lang": "en"}, timeout=40)
    return run.ok


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sip_answered(c: Cluster) -> dict[str, int]:
    """Call id -> the worker whose log says it answered that SIP call (telephony/sip/inbound.py)."""
    return {call_id: w.index for w in c.workers if w.log_path
            for call_id in re.findall(r"call=(\S+) SIP call answered", w.log_path.read_text(errors="replace"))}


def sip_answers(c: Cluster) -> list[int]:
    """SIP calls answered, per worker."""
    owners = list(sip_answered(c).values())
    return [owners.count(w.index) for w in c.workers]


def tally_sip(c: Cluster, made: list[Made]) -> None:
    known = {m.call_id for m in made}
    made.extend(Made("sip", call_id, worker) for call_id, worker in sip_answered(c).items() if call_id not in known)


def records(c: Cluster) -> list[Call]:
    db = open_database(c.database_url)
    try:
        with db.session() as s:
            calls = list(s.scalars(select(Call)))
            s.expunge_all()
            return calls
    finally:
        db.dispose()


@pytest.fixture
def sipp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import tests.telephony.peers as peers

    monkeypatch.setattr(peers, "SIPP_DIR", SIPP_DIR)  # the cluster scenario honours Record-Route
    return tmp_path


async def test_calls_over_websocket_and_sip_spread_over_all_workers_each_recorded_once(
        cluster: Cluster, sipp_dir: Path, made: list[Made]) -> None:
    async def hold(n: int) -> list:  # type: ignore[type-arg]
        held: list = []  # type: ignore[type-arg]
        for _ in range(n):
            ws, started = await open_tracked(cluster, made, len(held))
            assert ws is not None, started
            held.append(ws)
        return held

    async def end_all(held: list) -> None:  # type: ignore[type-arg]
        for ws in held:
            assert (await end_call(ws))["type"] == "ended"
            await ws.close()

    await end_all(await hold(3))  # warm-up round
    held = await hold(3)  # three calls at once: least_conn gives each its own worker
    assert await active_per_worker(cluster) == [1, 1, 1]
    await end_all(held)
    for _ in range(6):
        assert await sip_call(cluster, sipp_dir)
    tally_sip(cluster, made)
    assert all(n >= 1 for n in sip_answers(cluster)), sip_answers(cluster)  # Kamailio used every worker

    held = await hold(6)  # every line of the cluster (2 per worker)
    assert await active_per_worker(cluster) == [2, 2, 2]
    with pytest.raises(websockets.exceptions.InvalidStatus) as full:  # each worker said 503 before any work
        await open_call(cluster)
    assert full.value.response.status_code == 503
    await end_all(held)
    # nginx took the full workers out for fail_timeout (passive health): calls succeed again after it
    async with asyncio.timeout(30):
        while True:
            try:
                await end_all(await hold(1))
                break
            except websockets.exceptions.InvalidStatus:
                await asyncio.sleep(0.5)
    def ended() -> list[Call]:  # the recorder writes a call's end on its own thread, just after `ended`
        rows = records(cluster)
        return rows if len(rows) >= len(made) and all(r.status == "ended" for r in rows) else []

    rows = await asyncio.to_thread(poll, ended, 30, "every call's record ended")
    # every call recorded once, in one database, and nothing else recorded
    assert sorted((r.id, r.channel) for r in rows) == sorted((m.call_id, m.channel) for m in made)
    assert Counter(m.channel for m in made) == {"websocket": 3 + 3 + 6 + 1, "sip": 6}


async def test_a_token_used_on_worker_a_is_refused_on_worker_b(cluster: Cluster, made: list[Made]) -> None:
    a, b = cluster.workers[0], cluster.workers[1]
    tok = await token(cluster, a.base_url)
    ws, started = await open_call(cluster, f"ws://127.0.0.1:{a.http_port}/ws/call", tok)
    assert ws is not None, started
    made.append(Made("websocket", started["call_id"], a.index))  # worker A's own address
    again, refused = await open_call(cluster, f"ws://127.0.0.1:{b.http_port}/ws/call", tok)
    assert again is None and refused["code"] == "unauthorised", refused
    await end_call(ws)
    await ws.close()


# The widget's selected ICE pair, read in the page: where the browser's media actually goes.
SELECTED_PAIR_JS = """async () => {
  const pc = document.querySelector('carecall-widget').carecall.call.pc;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) return null;
  const remote = stats.get(pair.remoteCandidateId);
  return { address: remote.address || remote.ip, port: remote.port, bytesReceived: pair.bytesReceived };
}"""


def udp_ports_of(pid: int) -> set[int]:
    """The UDP ports of the sockets process `pid` holds (its fds' inodes looked up in /proc/net/udp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def webrtc_answerer(c: Cluster, call_id: str) -> list[int]:
    """The workers whose log says they answered this call's offer (web/widget/service.py)."""
    line = f"call {call_id[:8]}: webrtc offer answered"
    return [w.index for w in c.workers if w.log_path and line in w.log_path.read_text(errors="replace")]


@pytest.mark.browser
def test_webrtc_calls_from_chromium_through_nginx_go_straight_to_the_answering_worker(
        cluster: Cluster, tmp_path: Path, made: list[Made]) -> None:
    """Three WebRTC calls from Chromium held at once: page, token and offer through nginx (TLS), ICE
    and media straight to the worker that answered the offer; the calls land on more than one
    worker, each is heard (the bot's greeting reaches the browser) and recorded exactly once."""
    wav = mic_wav(tmp_path, 90.0)  # a caller who listens: silence (no synthesis), longer than the test holds
    offers = []
    # Playwright for this test only: its sync API keeps a loop running in this thread while it lives,
    # and the module's asyncio tests that follow need the thread's loop free
    with sync_playwright() as pw, chromium(pw, wav) as browser:
        pages = []
        for _ in range(3):
            page = hospital_page(browser, cluster.https_url, transport="webrtc", rtc_timeout_ms=30_000,
                                 ignore_https_errors=True)
            with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/widget/rtc/offer"),
                                      timeout=60_000) as offer:
                start_call(page)
            assert offer.value.url == f"{cluster.https_url}/widget/rtc/offer"  # signalling through nginx
            assert offer.value.status == 200, offer.value.text()
            offers.append(offer.value.json()["call_id"])
            wait_for(page, "w.stats.transport === 'webrtc'", 60, "the WebRTC connection")
            wait_for(page, "w.level() > 0.01 || t.levels.some(l => l[1] > 0.01)", 120, "the bot's greeting heard")
            pages.append(page)

        # all three held: each on one worker, per its log and per the workers' own call counts
        owners = []
        for call_id in offers:
            answered = webrtc_answerer(cluster, call_id)
            assert len(answered) == 1, (call_id, answered)
            owners.append(answered[0])
        assert len(set(owners)) > 1, owners  # spread: nginx sent the offers to more than one worker
        active = [httpx.get(f"{w.base_url}/healthz/ready").json().get("active", 0) for w in cluster.workers]
        assert active == [owners.count(w.index) for w in cluster.workers], (active, owners)

        # media straight to the answering worker: the browser's selected pair ends at a UDP socket of
        # that worker's own process (nginx carries no UDP at all)
        for page, owner_index in zip(pages, owners, strict=True):
            # the greeting goes on playing: wait until well over a second of it came over the pair
            pair = poll(lambda page=page: (p := page.evaluate(SELECTED_PAIR_JS)) and p["bytesReceived"] > 10_000
                         and p, 60, "the bot's audio over the selected pair")  # fmt: skip
            assert pair["address"] == "127.0.0.1", pair
            worker = cluster.workers[owner_index]
            assert worker.process is not None
            assert pair["port"] in udp_ports_of(worker.process.pid), (pair, owner_index)
            poll(lambda page=page: page.evaluate("document.querySelector('carecall-widget').carecall.rtcStats()")[
                "inbound"]["bytesReceived"] > 10_000, 60, "the widget's inbound audio")  # fmt: skip

        for page in pages:
            page.get_by_role("button", name="End call").click()
        for page in pages:
            wait_for(page, "w.state === 'ended' && !w.call", 30, "the call ended in the widget")

    def ended() -> list[Call]:
        rows = [r for r in records(cluster) if r.channel == "webrtc"]
        return rows if len(rows) == len(offers) and all(r.status == "ended" for r in rows) else []

    rows = poll(ended, 60, "the WebRTC calls' records ended")
    assert sorted(r.id for r in rows) == sorted(offers)  # every call recorded once, no other WebRTC record
    made.extend(Made("webrtc", call_id, worker) for call_id, worker in zip(offers, owners, strict=True))
    # the lines are free again (the next test finds a worker's call by its count)
    poll(lambda: all(httpx.get(f"{w.base_url}/healthz/ready").json().get("active", 0) == 0
                      for w in cluster.workers), 30, "the workers' lines released")
    offer_lines = (cluster.log_dir / "nginx-access.log").read_text().count('"POST /widget/rtc/offer HTTP/1.1" 200')
    assert offer_lines == len(offers)  # each offer went through nginx once


def test_twelve_calls_over_websocket_webrtc_and_sip_spread_over_all_three_workers_each_recorded_once(
        cluster: Cluster, made: list[Made]) -> None:
    """The issue's first test, counted: the calls the tests above made through the cluster."""
    kinds = Counter(m.channel for m in made)
    if not kinds["webrtc"]:
        pytest.skip("the WebRTC calls come from the browser test, which did not run")
    per_worker = {w.index: Counter(m.channel for m in made if m.worker == w.index) for w in cluster.workers}
    assert len(made) >= 12 and set(kinds) == {"websocket", "webrtc", "sip"}, kinds
    assert all(sum(n.values()) for n in per_worker.values()), per_worker  # every worker carried calls
    assert all(len({m.worker for m in made if m.channel == kind}) > 1 for kind in kinds), per_worker
    rows = records(cluster)
    assert len(rows) == len({r.id for r in rows})  # one row per call id
    assert sorted((r.id, r.channel) for r in rows) == sorted((m.call_id, m.channel) for m in made)
    assert all(r.status == "ended" for r in rows)


NURSE = ("nina", "nurse-pass-1")
CONSOLE_SESSION = "carecall_console"


@pytest.fixture(scope="module")
def nurse(cluster: Cluster) -> str:
    """A console account on the cluster's database, made the way an administrator makes one (the CLI)."""
    done = subprocess.run([sys.executable, "-m", "cli", "user", "add", "--password-stdin", NURSE[0]],
                          input=NURSE[1] + "\n", env=cluster.env_for(cluster.workers[0]),
                          cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return NURSE[0]


def consoles(c: Cluster) -> dict[str, str]:
    """Each worker's own address (no balancer in between) and nginx's."""
    return {**{f"worker {w.index}": w.base_url for w in c.workers}, "nginx": c.https_url}


def sign_in(c: Cluster, base: str) -> str:
    """The nurse signs in on the login form at `base`; her session cookie."""
    with httpx.Client(base_url=base, verify=tls(c)) as client:
        form = client.get("/console/login")
        field = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert field, form.text
        r = client.post("/console/login", data={"username": NURSE[0], "password": NURSE[1],
                                                "login_token": field.group(1), "next": "/console/"})
        assert r.status_code == 303 and r.headers["location"] == "/console/", (base, r.status_code, r.text)
        if base.startswith("https"):  # nginx passed X-Forwarded-Proto: the worker knows it is TLS
            assert "secure" in r.headers["set-cookie"].lower(), r.headers["set-cookie"]
        return r.cookies[CONSOLE_SESSION]


def console_get(c: Cluster, base: str, session: str, path: str) -> httpx.Response:
    # the cookie by hand: one from nginx is Secure, and a worker's own address is plain HTTP
    return httpx.get(f"{base}{path}", headers={"Cookie": f"{CONSOLE_SESSION}={session}"}, verify=tls(c),
                     follow_redirects=False, timeout=30)


def queue_ids(c: Cluster, base: str, session: str) -> set[str]:
    r = console_get(c, base, session, "/console/")
    assert r.status_code == 200, (base, r.status_code)
    return set(re.findall(r'href="/console/calls/([^"/?#]+)"', r.text))


def live_calls(c: Cluster, base: str, session: str) -> dict[str, dict[str, Any]]:
    """The live list's snapshot (the SSE stream's first event, `once=1`), by call id."""
    r = console_get(c, base, session, "/console/live/events?once=1")
    assert r.status_code == 200, (base, r.status_code)
    [data] = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert data["type"] == "snapshot"
    return {call["call_id"]: call for call in data["calls"]}


def views(c: Cluster, call_id: str, action: str = "view_call") -> int:
    """Audit rows of the nurse opening this call's page (or playing its recording)."""
    db = open_database(c.database_url)
    try:
        with db.session() as s:
            return len(list(s.scalars(select(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.call_id == call_id, AuditEvent.username == NURSE[0]))))
    finally:
        db.dispose()


def turns_of(c: Cluster, call_id: str) -> list[Turn]:
    db = open_database(c.database_url)
    try:
        with db.session() as s:
            rows = list(s.scalars(select(Turn).where(Turn.call_id == call_id).order_by(Turn.idx)))
            s.expunge_all()
            return rows
    finally:
        db.dispose()


async def until_transcript(ws, timeout: float = 60) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The next finished turn (the client hears of it only once it is stored: issue 10 #6)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.recv()
            if isinstance(msg, str) and (data := json.loads(msg)).get("type") == "transcript":
                return dict(data)


async def test_the_console_on_any_worker_shows_every_call_live_or_ended(cluster: Cluster, made: list[Made],
                                                                         nurse: str) -> None:
    a, b = cluster.workers[0], cluster.workers[1]
    # call L stays open on worker A; call E is carried by worker B and ended; both straight to the worker
    live_ws, live = await open_call(cluster, f"ws://127.0.0.1:{a.http_port}/ws/call", await token(cluster, a.base_url))
    assert live_ws is not None, live
    made.append(Made("websocket", live["call_id"], a.index))
    done_ws, done = await open_call(cluster, f"ws://127.0.0.1:{b.http_port}/ws/call", await token(cluster, b.base_url))
    assert done_ws is not None, done
    made.append(Made("websocket", done["call_id"], b.index))
    greeting, _ = await asyncio.gather(until_transcript(live_ws), until_transcript(done_ws))  # both greetings stored
    listening = asyncio.create_task(until_ended(live_ws, timeout=600))  # L's audio is read while the nurse looks
    assert (await end_call(done_ws))["type"] == "ended"
    await done_ws.close()
    try:
        await asyncio.to_thread(check_consoles, cluster, made, live["call_id"], greeting, done["call_id"])
    finally:
        await live_ws.send(json.dumps({"type": "end"}))
        assert (await listening)["type"] == "ended"
        await live_ws.close()
    # the end of L reaches every worker's live list too
    session = await asyncio.to_thread(sign_in, cluster, cluster.https_url)
    for name, base in consoles(cluster).items():
        await asyncio.to_thread(poll, lambda base=base: live["call_id"] not in live_calls(cluster, base, session), 30,
                                f"call L gone from the live list on {name}")  # fmt: skip


def check_consoles(c: Cluster, made: list[Made], live_id: str, greeting: dict[str, Any], done_id: str) -> None:
    """What the nurse sees on each console while L is open on worker 0 and E (worker 1) has ended."""
    sessions = {name: sign_in(c, base) for name, base in consoles(c).items()}  # signed in on each one

    # one session, every worker: the secret key and the session version are shared
    for got_on, session in sessions.items():
        for name, base in consoles(c).items():
            r = console_get(c, base, session, "/console/")
            assert r.status_code == 200, (f"session from {got_on} on {name}", r.status_code, r.headers)

    recorded = {r.id for r in records(c)}
    assert {m.call_id for m in made} <= recorded
    carried = {m.call_id: m.worker for m in made}
    for name, base in consoles(c).items():
        session = sessions[name]
        # the review queue: every call of the cluster, whichever worker carried it, L among them
        shown = queue_ids(c, base, session)
        assert recorded <= shown, (name, sorted(recorded - shown))
        # the live list: L, open on worker 0, with its greeting as worker 0 recorded it, and not E
        def settled(base: str = base, session: str = session) -> dict[str, dict[str, Any]] | None:
            calls = live_calls(c, base, session)
            heard = [t["text"] for t in calls.get(live_id, {}).get("turns", [])]
            return calls if greeting["text"] in heard and done_id not in calls else None

        calls = poll(settled, 30, f"call L with its greeting, and not E, in the live list on {name}")
        assert calls[live_id]["channel"] == "websocket" and calls[live_id]["language"] == "en", calls[live_id]
        # a call another worker carried: its page and transcript open here, and the view is audited
        for call_id in (live_id, done_id):
            if name == f"worker {carried[call_id]}":
                continue
            before, stored = views(c, call_id), turns_of(c, call_id)  # L may add turns after this
            page = console_get(c, base, session, f"/console/calls/{call_id}")
            assert page.status_code == 200, (name, call_id, page.status_code)
            text = unescape(page.text)
            assert stored and [t.text for t in stored if t.text not in text] == [], (name, call_id)
            assert ("in progress" in text) == (call_id == live_id), (name, call_id)
            assert views(c, call_id) == before + 1, (name, call_id)
        # E's recording, written by worker 1 into the shared recordings folder, plays here too
        if name != f"worker {carried[done_id]}":
            before = views(c, done_id, "play_recording")
            audio = console_get(c, base, session, f"/console/calls/{done_id}/audio")
            assert audio.status_code == 200 and audio.content[:4] == b"RIFF", (name, audio.status_code)
            assert views(c, done_id, "play_recording") == before + 1, name

    # signing out on one worker ends the nurse's sessions on all of them (the version is in the database)
    first = sessions["worker 0"]
    queue = console_get(c, c.workers[2].base_url, first, "/console/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', queue.text)
    assert csrf
    out = httpx.post(f"{c.workers[2].base_url}/console/logout", data={"csrf_token": csrf.group(1)},
                     headers={"Cookie": f"{CONSOLE_SESSION}={first}"}, follow_redirects=False)
    assert out.status_code == 303, out.text
    for got_on, session in sessions.items():
        for name, base in consoles(c).items():
            r = console_get(c, base, session, "/console/")
            assert r.status_code == 303 and "/console/login" in r.headers["location"], (got_on, name, r.status_code)


class Line:
    """The caller's side of a /ws/call: speech sent in real time, in a loop, and the loudness of
    every audio frame received (when it came), so what the caller heard can be told apart in time."""

    def __init__(self, ws, speech: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.speech = speech
        self.heard: list[tuple[float, float]] = []  # (monotonic time, rms) of each audio frame

    async def talk(self) -> None:
        step = 320  # 20 ms at 16 kHz
        while True:
            for i in range(0, len(self.speech), step):
                await self.ws.send(self.speech[i:i + step].astype("<i2").tobytes())
                await asyncio.sleep(0.02)

    async def listen(self) -> dict[str, Any]:
        while True:
            try:
                msg = await self.ws.recv()
            except websockets.ConnectionClosed:
                return {"type": "closed"}
            if isinstance(msg, bytes):
                samples = np.frombuffer(msg, dtype="<i2").astype(np.float64)
                self.heard.append((time.monotonic(), float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0))
            elif json.loads(msg).get("type") == "ended":
                return dict(json.loads(msg))

    def loud_since(self, t: float, rms: float = 300.0) -> int:
        return sum(1 for at, level in self.heard if at > t and level > rms)


def takeover_rows(c: Cluster, call_id: str) -> tuple[list[str], set[str]]:
    """The call's review kinds (in order) and audit actions, with the nurse's name on them."""
    db = open_database(c.database_url)
    try:
        with db.session() as s:
            kinds = [r.kind for r in s.scalars(select(Review).where(Review.call_id == call_id).order_by(Review.id))]
            actions = {a.action for a in s.scalars(select(AuditEvent).where(
                AuditEvent.call_id == call_id, AuditEvent.username == NURSE[0]))}
            return kinds, actions
    finally:
        db.dispose()


def nurse_takes_over_through_nginx(c: Cluster, call_id: str, owner: Worker, line: Line, nurse_wav: Path) -> None:
    """In Chromium, signed in through nginx: the call's page (served by any worker), "Take over" routed
    to the owner, each side hears the other, hand back."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, ignore_default_args=["--mute-audio"], args=[
            *FLAGS, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={nurse_wav}"])
        try:
            context = patient(browser.new_context(ignore_https_errors=True))
            context.add_init_script(KEEP_PCS)
            page = context.new_page()
            page.goto(f"{c.https_url}/console/login?next=/console/calls/{call_id}")
            page.fill("input[name=username]", NURSE[0])
            page.fill("input[name=password]", NURSE[1])
            page.click("button[type=submit]")
            page.wait_for_url(f"**/console/calls/{call_id}")
            assert page.locator("#takeover").get_attribute("data-worker") == owner.worker_id
            with page.expect_response(lambda r: r.request.method == "POST" and "/takeover?" in r.url) as offer:
                page.click("#takeover-start")
            assert offer.value.url == f"{c.https_url}/console/calls/{call_id}/takeover?worker={owner.worker_id}"
            assert offer.value.status == 200, offer.value.text()
            page.locator("#takeover[data-state=nurse]").wait_for(timeout=60_000)
            # the nurse speaks: her words are transcribed on the owner as nurse turns, and reach the caller
            # her sentence, as the owner's Whisper heard it: it may come as more than one turn (a pause at
            # the comma under load) and drop a word now and then, and her microphone loops it
            def her_turns() -> list[str]:
                return [t.text for t in turns_of(c, call_id) if t.speaker == "nurse"]

            def her_words() -> set[str]:
                return {"nurse", "hear"} & set(re.findall(r"[a-z]+", " ".join(her_turns()).lower()))

            poll(her_words, 180, lambda: f"the nurse's sentence in her turns {her_turns()}")
            since = time.monotonic()
            poll(lambda: line.loud_since(since) > 10, 60, "the nurse's voice on the caller's line")
            # the nurse hears the caller (who keeps talking)
            heard = page.evaluate(INBOUND_ENERGY)
            poll(lambda: page.evaluate(INBOUND_ENERGY) > heard + 1e-4, 60, "the caller's voice at the nurse")
            page.click("#takeover-handback")
            page.locator("#takeover[data-state=bot]").wait_for(timeout=30_000)
        finally:
            browser.close()


async def test_a_nurse_through_nginx_takes_over_a_call_another_worker_carries(
        cluster: Cluster, made: list[Made], nurse: str, tmp_path: Path) -> None:
    """A WebSocket call carried by worker 1: every console names worker 1 as its owner; worker 0
    refuses a takeover of it (409, naming the owner, nothing answered); a nurse signed in through nginx
    takes it over (nginx routes the offer by ?worker= to worker 1, media straight to it), caller and
    nurse hear each other, she hands back, and the owner wrote the reviews and audit rows."""
    owner, other = cluster.workers[1], cluster.workers[0]
    caller_speech = wave_samples(mic_wav(tmp_path, 1.0, "I feel dizzy when I stand up.", 3.0))
    nurse_wav = mic_wav(tmp_path, 2.0, "Hello, this is the nurse speaking. Can you hear me?", 6.0)
    ws, started = await open_call(cluster, f"ws://127.0.0.1:{owner.http_port}/ws/call",
                                  await token(cluster, owner.base_url))
    assert ws is not None, started
    call_id = started["call_id"]
    made.append(Made("websocket", call_id, owner.index))
    line = Line(ws, caller_speech)
    listening = asyncio.create_task(line.listen())
    talking = asyncio.create_task(line.talk())
    try:
        session = await asyncio.to_thread(sign_in, cluster, other.base_url)
        for name, base in consoles(cluster).items():  # the live view says who carries the call, everywhere
            calls = await asyncio.to_thread(poll, lambda base=base: live_calls(cluster, base, session).get(call_id),
                                            30, f"the call live on {name}")  # fmt: skip
            assert calls["worker"] == owner.worker_id, (name, calls)
        page = await asyncio.to_thread(console_get, cluster, other.base_url, session, f"/console/calls/{call_id}")
        assert f'data-worker="{owner.worker_id}"' in page.text  # the button, on a worker without the call
        csrf = re.search(r'data-csrf="([^"]+)"', page.text)
        assert csrf
        refused = await asyncio.to_thread(
            httpx.post, f"{other.base_url}/console/calls/{call_id}/takeover?worker={owner.worker_id}",
            json={"csrf_token": csrf.group(1), "sdp": "v=0\r\n"}, headers={"Cookie": f"{CONSOLE_SESSION}={session}"})
        assert refused.status_code == 409 and owner.worker_id in refused.json()["detail"], refused.text
        kinds, actions = await asyncio.to_thread(takeover_rows, cluster, call_id)
        assert kinds == [] and "takeover" not in actions, (kinds, actions)  # nothing pretended

        await asyncio.to_thread(nurse_takes_over_through_nginx, cluster, call_id, owner, line, nurse_wav)
        kinds, actions = await asyncio.to_thread(takeover_rows, cluster, call_id)
        assert kinds == ["takeover", "handback"] and {"takeover", "handback"} <= actions, (kinds, actions)
        offers = [ln for ln in (cluster.log_dir / "nginx-access.log").read_text().splitlines()
                  if f"/console/calls/{call_id}/takeover?worker={owner.worker_id}" in ln]
        assert len(offers) == 1 and '" 200 ' in offers[0], offers
    finally:
        talking.cancel()
        await ws.send(json.dumps({"type": "end"}))
        assert (await asyncio.wait_for(listening, 60))["type"] in ("ended", "closed")
        await ws.close()


def wave_samples(path: Path) -> np.ndarray:
    """A test WAV (48 kHz) as 16 kHz samples for the WebSocket caller."""
    import wave

    with wave.open(str(path)) as w:
        pcm = Pcm(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate())
    return resample(pcm, 16000).samples


async def test_sigterm_drains_one_worker_mid_call_and_kill_9_another_new_calls_still_succeed(
        cluster: Cluster, sipp_dir: Path, nurse: str) -> None:
    victim = cluster.workers[0]
    ws, started = await open_call(cluster, f"ws://127.0.0.1:{victim.http_port}/ws/call")
    assert ws is not None, started
    assert victim.process is not None
    victim.process.send_signal(signal.SIGTERM)  # the worker's own pid: uvicorn drains
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            r = await client.get(f"{victim.base_url}/healthz/ready")
            if r.status_code == 503:
                break
        assert r.json()["reason"] == "draining"
    # while it drains, new calls go to the others through both balancers
    other, _ = await open_call(cluster)
    assert other is not None and await owner(cluster) in (0, 1, 2)
    await end_call(other)
    await other.close()
    assert await sip_call(cluster, sipp_dir)
    ended = await until_ended(ws, timeout=DRAIN_S + 30)
    assert "nurse will call you back" in ended.get("reason", ""), ended
    assert victim.process.wait(30) == 0  # drained, records flushed, clean exit
    row = next(r for r in records(cluster) if r.id == started["call_id"])
    assert row.status == "ended" and "nurse" in (row.end_reason or "")
    # new calls after the drain: never to the stopped worker
    for _ in range(3):
        ws2, _ = await open_call(cluster)
        assert ws2 is not None
        assert await owner(cluster) in (1, 2)
        await end_call(ws2)
        await ws2.close()
    before = sip_answers(cluster)
    assert await sip_call(cluster, sipp_dir)
    after = sip_answers(cluster)
    assert after[0] == before[0] and sum(after) == sum(before) + 1

    crashed, survivor = cluster.workers[1], cluster.workers[2]
    assert crashed.process is not None
    # a call on the worker about to crash, in the live list of the survivor's console
    session = await asyncio.to_thread(sign_in, cluster, survivor.base_url)
    doomed, started_doomed = await open_call(cluster, f"ws://127.0.0.1:{crashed.http_port}/ws/call",
                                             await token(cluster, crashed.base_url))  # fmt: skip
    assert doomed is not None, started_doomed
    doomed_id = started_doomed["call_id"]
    await asyncio.to_thread(poll, lambda: doomed_id in live_calls(cluster, survivor.base_url, session), 30,
                            f"worker {crashed.index}'s call live on worker {survivor.index}")  # fmt: skip
    cluster.stop_worker(crashed, signal.SIGKILL)
    for _ in range(2):  # nginx skips the dead worker (connect refused → next upstream)
        ws3, started3 = await open_call(cluster)
        assert ws3 is not None, started3
        assert await owner(cluster) == 2
        await end_call(ws3)
        await ws3.close()
    assert await sip_call(cluster, sipp_dir)  # Kamailio: failover on timeout, probes mark it down
    # a console takeover meant for the dead worker is not given to another (which has not the call's
    # audio): nginx answers 502, which the console reports as the owner unreachable (takeover.js)
    async with httpx.AsyncClient(verify=tls(cluster)) as client:
        url = f"{cluster.https_url}/console/calls/some-call/takeover"
        assert (await client.post(f"{url}?worker={crashed.worker_id}", json={})).status_code == 502
        assert (await client.post(f"{url}?worker={cluster.workers[2].worker_id}", json={})).status_code == 401
    # the crashed worker's heartbeat stopped: its call leaves the survivor's live list once the worker is
    # declared lost (CARECALL_LIVE_WORKER_LOST_S, 20 s; records/live.py), not after the 15-minute idle bound
    await asyncio.to_thread(poll, lambda: doomed_id not in live_calls(cluster, survivor.base_url, session), 90,
                            f"worker {crashed.index}'s call gone from worker {survivor.index}'s live list")  # fmt: skip
    with contextlib.suppress(Exception):
        await doomed.close()


async def test_a_worker_started_mid_call_shows_the_calls_already_going_on_in_its_live_list(
        cluster: Cluster, nurse: str) -> None:
    """A restarted worker (after a crash, or one at a time in an upgrade) asks the others for the calls
    they carry (records/live_pg.py): its console shows a call that began before it started, with the
    transcript so far, not only the calls that begin after."""
    running = [w for w in cluster.workers if w.process is not None and w.process.poll() is None]
    carrier = running[-1]
    back = next((w for w in cluster.workers if w not in running), None) or running[0]
    if back in running:
        assert cluster.stop_worker(back) == 0  # no calls on it: drains at once
    ws, started = await open_call(cluster, f"ws://127.0.0.1:{carrier.http_port}/ws/call",
                                  await token(cluster, carrier.base_url))  # fmt: skip
    assert ws is not None, started
    greeting = await until_transcript(ws)
    listening = asyncio.create_task(until_ended(ws, timeout=600))
    try:
        cluster.start_worker(back)
        await asyncio.to_thread(cluster.wait_worker, back)
        session = await asyncio.to_thread(sign_in, cluster, back.base_url)

        def shown() -> dict[str, Any] | None:
            call = live_calls(cluster, back.base_url, session).get(started["call_id"])
            return call if call and greeting["text"] in [t["text"] for t in call["turns"]] else None

        call = await asyncio.to_thread(poll, shown, 30, f"worker {carrier.index}'s call live on worker {back.index}")
        assert (call["channel"], call["language"]) == ("websocket", "en"), call
        # and starting did not close the other worker's call in the shared database as cut off
        assert next(r for r in records(cluster) if r.id == started["call_id"]).status == "in_progress"
    finally:
        await ws.send(json.dumps({"type": "end"}))
        assert (await listening)["type"] == "ended"
        await ws.close()
    await asyncio.to_thread(poll, lambda: started["call_id"] not in live_calls(cluster, back.base_url, session), 30,
                            f"the call's end on worker {back.index}")  # fmt: skip
