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
- SIGTERM one worker mid-call: its call goes on until the drain limit, is then told and ended with a
  complete record, the worker exits 0, and new calls (both balancers) go to the others;
- kill -9 another: new calls still succeed.
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from records.db import open_database
from records.models import Call
from tests.conftest import poll
from tests.telephony.conftest import tone
from tests.telephony.peers import HAVE_SIPP, run_sipp, scenario, ulaw_file
from tests.telephony.test_sip import media_port
from tests.web.widget.browser import chromium, hospital_page, start_call, wait_for
from tests.web.widget.speech import mic_wav
from web.cluster import Cluster

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
    })
    c.start()
    try:
        yield c
    finally:
        c.stop()


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


def sip_answers(c: Cluster) -> list[int]:
    """SIP calls answered, per worker (from each worker's log)."""
    return [len(re.findall("SIP call answered", w.log_path.read_text(errors="replace"))) if w.log_path else 0
            for w in c.workers]


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


async def test_calls_over_websocket_and_sip_spread_over_all_workers_each_recorded_once(cluster: Cluster,
                                                                                       sipp_dir: Path) -> None:
    ids: list[str] = []

    async def hold(n: int) -> list:  # type: ignore[type-arg]
        held = []
        for _ in range(n):
            ws, started = await open_call(cluster)
            assert ws is not None, started
            held.append(ws)
            ids.append(started["call_id"])
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
    rows = records(cluster)
    assert len(rows) == len({r.id for r in rows}) == len(ids) + 6  # every call recorded once, in one database
    assert set(ids) <= {r.id for r in rows}
    assert sorted(r.channel for r in rows) == ["sip"] * 6 + ["websocket"] * len(ids)
    assert all(r.status == "ended" for r in rows)


async def test_a_token_used_on_worker_a_is_refused_on_worker_b(cluster: Cluster) -> None:
    a, b = cluster.workers[0], cluster.workers[1]
    tok = await token(cluster, a.base_url)
    ws, started = await open_call(cluster, f"ws://127.0.0.1:{a.http_port}/ws/call", tok)
    assert ws is not None, started
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
        cluster: Cluster, tmp_path: Path) -> None:
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
    # the lines are free again (the next test finds a worker's call by its count)
    poll(lambda: all(httpx.get(f"{w.base_url}/healthz/ready").json().get("active", 0) == 0
                      for w in cluster.workers), 30, "the workers' lines released")
    offer_lines = (cluster.log_dir / "nginx-access.log").read_text().count('"POST /widget/rtc/offer HTTP/1.1" 200')
    assert offer_lines == len(offers)  # each offer went through nginx once


async def test_sigterm_drains_one_worker_mid_call_and_kill_9_another_new_calls_still_succeed(
        cluster: Cluster, sipp_dir: Path) -> None:
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

    crashed = cluster.workers[1]
    assert crashed.process is not None
    cluster.stop_worker(crashed, signal.SIGKILL)
    for _ in range(2):  # nginx skips the dead worker (connect refused → next upstream)
        ws3, started3 = await open_call(cluster)
        assert ws3 is not None, started3
        assert await owner(cluster) == 2
        await end_call(ws3)
        await ws3.close()
    assert await sip_call(cluster, sipp_dir)  # Kamailio: failover on timeout, probes mark it down
