"""Attack clients for the suite: each sends seeded malformed input at one entry point of the real
server over real sockets and returns what happened, as an `Outcome` (inputs sent, and every
answer that breaks the rule for that entry point)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from telephony.stream_auth import TOKEN_PARAMETER, fetch_stream_parameters
from tests.security.fuzz import deep, json_cases, mutate_json, mutate_sdp, mutate_sip

BAD_CLOSES = {1006, 1011}  # abnormal closure, internal error: what a crash looks like from outside


@dataclass
class Outcome:
    entry: str
    sent: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, what: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(what[:300])


def source_addresses() -> AsyncIterator[str]:
    """Loopback source addresses 127.0.{1..}.{1..254}: many clients, as many addresses."""

    async def gen() -> AsyncIterator[str]:
        for a in range(1, 200):
            for b in range(1, 255):
                yield f"127.0.{a}.{b}"

    return gen()


def client_from(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30)


async def call_token(base: str, address: str, lang: str = "en") -> str:
    async with client_from(address) as client:
        r = await client.post(f"{base}/widget/token", json={"lang": lang})
    r.raise_for_status()
    return r.json()["token"]


async def bounded(n: int, jobs: list[Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(n)

    async def run(job: Awaitable[None]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(run(j) for j in jobs))


async def _recv_json(ws: Any, timeout: float) -> dict[str, Any] | None:
    """The next JSON text message (binary audio skipped); None when the socket closes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        except websockets.ConnectionClosed:
            return None
        if isinstance(msg, str):
            return json.loads(msg)


# --- /ws/call ----------------------------------------------------------------------------------
START = {"type": "start", "language": "en", "sample_rate": 16000, "output_sample_rate": 16000, "mode": "triage",
         "token": "x", "params": {}}
IN_CALL = [{"type": "dtmf", "digit": "5"}, {"type": "ping"}, {"type": "start", "language": "en"},
           {"type": "teleport"}]


async def _one_bad_start(url: str, case: str | bytes, out: Outcome) -> None:
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(case)
        out.sent += 1
        reply = await _recv_json(ws, 15)
        if reply is None or reply.get("type") != "error" or not reply.get("code") or not reply.get("message"):
            out.problem(f"start {str(case)[:80]!r}: no clear error, got {reply!r:.120}")
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.recv(), 5)
        if ws.close_code in BAD_CLOSES or ws.close_code is None:
            out.problem(f"start {str(case)[:80]!r}: closed with {ws.close_code}")


async def _one_bad_call(url: str, token: str, cases: list[str | bytes], out: Outcome) -> None:
    """A real call (valid start, token) that then gets `cases`; it must answer each with an error
    (or ignore it) and keep going; the caller ends it properly at the end."""
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps({**START, "token": token}))
        first = await _recv_json(ws, 30)
        if first is None or first.get("type") != "started":
            out.problem(f"in-call: the start was refused: {first!r:.200}")
            return
        for case in cases:
            await ws.send(case)
            out.sent += 1
        await ws.send(json.dumps({"type": "ping"}))
        while True:  # still alive and answering after the barrage
            msg = await _recv_json(ws, 30)
            if msg is None:
                out.problem(f"in-call: socket closed ({ws.close_code}) before the pong")
                return
            if msg.get("type") == "pong":
                break
        await ws.send(json.dumps({"type": "end"}))
        while (msg := await _recv_json(ws, 30)) is not None and msg.get("type") != "ended":
            pass
        if msg is None:
            out.problem(f"in-call: no 'ended' after the caller's end (close {ws.close_code})")


async def fuzz_ws_call(base: str, ws_url: str, seed: int, starts: int, in_call: int) -> Outcome:
    out = Outcome("/ws/call")
    start_cases = list(json_cases(seed, START, starts))
    await bounded(8, [_one_bad_start(ws_url, c, out) for c in start_cases])
    rng = random.Random(seed + 1)
    per_call = 45  # under the server's cut-off of 50 protocol errors per call
    calls = []
    addresses = source_addresses()
    for i in range(0, in_call, per_call):
        cases: list[str | bytes] = []
        for _ in range(min(per_call, in_call - i)):
            if rng.random() < 0.15:  # binary frames of odd sizes and oversized ones
                cases.append(bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 321, 641]))))
            else:
                cases.append(mutate_json(rng, rng.choice(IN_CALL)))
        token = await call_token(base, await anext(addresses))
        calls.append(_one_bad_call(ws_url, token, cases, out))
    await bounded(2, calls)
    return out


# --- Media Streams -----------------------------------------------------------------------------
def _start_message(sid: str, custom: dict[str, str]) -> dict[str, Any]:
    return {"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
        "accountSid": "AC" + "0" * 32, "streamSid": sid, "callSid": "CA" + uuid.uuid4().hex, "tracks": ["inbound"],
        "customParameters": custom, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


async def _one_forged_stream(url: str, case: str | bytes, out: Outcome) -> None:
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(case)
        out.sent += 1
        # a start the server ignored (not JSON, another event) is followed by a forged one, so that
        # every connection ends at once instead of at the start timeout
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps(_start_message("MZ" + uuid.uuid4().hex, {TOKEN_PARAMETER: "forged"})))
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            while True:
                msg = await asyncio.wait_for(ws.recv(), 15)
                if isinstance(msg, str) and '"media"' in msg:
                    out.problem(f"forged start {str(case)[:100]!r} got a call (bot audio)")
                    return
        if ws.close_code in BAD_CLOSES or ws.close_code is None:
            out.problem(f"forged start {str(case)[:80]!r}: closed with {ws.close_code}")


MEDIA_BASES = [
    {"event": "media", "sequenceNumber": "2", "streamSid": "S", "media": {"track": "inbound", "chunk": "1",
                                                                         "timestamp": "20", "payload": "//8="}},
    {"event": "mark", "sequenceNumber": "3", "streamSid": "S", "mark": {"name": "cc0-1"}},
    {"event": "dtmf", "sequenceNumber": "4", "streamSid": "S", "dtmf": {"track": "inbound_track", "digit": "5"}},
]


async def _one_bad_stream(url: str, seed: int, n: int, out: Outcome) -> None:
    rng = random.Random(seed)
    sid = "MZ" + uuid.uuid4().hex
    custom = await fetch_stream_parameters(url, {"language": "en"})
    if TOKEN_PARAMETER not in custom:
        out.problem(f"the webhook gave no stream token: {custom}")
        return
    silence = base64.b64encode(b"\xff" * 160).decode()
    seq = 1
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps(_start_message(sid, custom)))
        for i in range(n):
            seq += 1
            base = json.loads(json.dumps(rng.choice(MEDIA_BASES)).replace('"S"', json.dumps(sid)))
            del base["sequenceNumber"]
            case = mutate_json(rng, base)
            with contextlib.suppress(ValueError, RecursionError):  # keep the order valid where it is an object
                parsed = json.loads(case)
                if isinstance(parsed, dict):
                    case = json.dumps({"sequenceNumber": str(seq), **parsed})
            roll = rng.random()
            if roll < 0.05:  # sequence numbers that are not numbers (a 1e999 or Infinity ended streams, #8)
                case = with_seq({**base, "streamSid": sid}, rng.choice(["Infinity", "-Infinity", "NaN", "1e999",
                                                                        deep(2000), '"\u221e"', "[]", "{}"]))
            await ws.send(case)
            out.sent += 1
            if i % 25 == 0:  # the line keeps carrying real frames between the attacks
                seq += 1
                await ws.send(json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": sid,
                                          "media": {"track": "inbound", "payload": silence}}))
        # the stream must still be open: only our `stop` ends it, with a normal close
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq + 1), "streamSid": sid,
                                  "stop": {"accountSid": "AC" + "0" * 32, "callSid": "CA1"}}))
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            while True:
                await asyncio.wait_for(ws.recv(), 40)
        if ws.close_code != 1000:
            out.problem(f"stream seed {seed}: closed with {ws.close_code} {ws.close_reason!r} after its stop")


def with_seq(base: dict[str, Any], literal: str) -> str:
    marker = "__SEQ__"
    return json.dumps({**base, "sequenceNumber": marker}).replace(json.dumps(marker), literal)


async def fuzz_media_streams(url: str, seed: int, forged: int, in_call: int, streams: int = 4) -> Outcome:
    out = Outcome("media streams")
    rng = random.Random(seed)
    forged_tokens = ["", "x", "a" * 3000, "eyJqIjoiMSJ9.forged.sig", None, 1, ["t"]]
    cases = []
    for _ in range(forged):
        sid = "MZ" + uuid.uuid4().hex
        custom: dict[str, Any] = {"language": "en", "campaign_id": "c1", "patient_id": "MRN-1",
                                  TOKEN_PARAMETER: rng.choice(forged_tokens)}
        cases.append(mutate_json(rng, _start_message(sid, custom)) if rng.random() < 0.6
                     else json.dumps(_start_message(sid, custom)))
    await bounded(8, [_one_forged_stream(url, c, out) for c in cases])
    await asyncio.gather(*(_one_bad_stream(url, seed + k, in_call // streams, out) for k in range(streams)))
    return out


# --- widget signalling ---------------------------------------------------------------------------
async def _post_all(base: str, path: str, bodies: list[tuple[bytes, str]], per_address: int, out: Outcome,
                    ok: set[int]) -> None:
    addresses = source_addresses()

    async def batch(address: str, chunk: list[tuple[bytes, str]]) -> None:
        async with client_from(address) as client:
            for body, content_type in chunk:
                headers = {"content-type": content_type}
                try:
                    try:
                        r = await client.post(f"{base}{path}", content=body, headers=headers)
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        # A kept-alive connection the server closed as idle just as this request reused it
                        # (uvicorn's keep-alive timeout; a starved client on a busy machine pauses that
                        # long): sent again, once, on a new connection. An input that makes the server
                        # drop the connection drops it twice and is reported.
                        async with client_from(address) as fresh:
                            r = await fresh.post(f"{base}{path}", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    out.problem(f"{path}: {type(exc).__name__} for {body[:60]!r}")
                    continue
                out.sent += 1
                if r.status_code not in ok:
                    out.problem(f"{path}: {r.status_code} for {body[:80]!r}: {r.text[:120]}")
                elif r.status_code >= 400 and not r.json().get("detail"):
                    out.problem(f"{path}: {r.status_code} without a reason")

    jobs = []
    for i in range(0, len(bodies), per_address):
        jobs.append(batch(await anext(addresses), bodies[i:i + per_address]))
    await bounded(8, jobs)


def _encode(case: str | bytes) -> bytes:
    return case if isinstance(case, bytes) else case.encode("utf-8", errors="surrogatepass")


async def fuzz_widget(base: str, offer_sdp: str, seed: int, n: int) -> tuple[Outcome, Outcome]:
    rng = random.Random(seed)
    types = ["application/json"] * 8 + ["text/plain", "application/x-www-form-urlencoded", "", "application/json; x"]
    token_bodies = [(_encode(mutate_json(rng, {"lang": "en"})), rng.choice(types)) for _ in range(n)]
    tokens = Outcome("/widget/token")
    await _post_all(base, "/widget/token", token_bodies, 19, tokens, {200, 400, 413, 415})
    offer_bodies = []
    for _ in range(n):
        body = {"sdp": offer_sdp, "type": "offer", "token": "not-a-token", "lang": "en"}
        if rng.random() < 0.5:
            body["sdp"] = mutate_sdp(rng, offer_sdp)
            case: str | bytes = json.dumps(body)
        else:
            case = mutate_json(rng, body)
        offer_bodies.append((_encode(case), rng.choice(types)))
    offers = Outcome("/widget/rtc/offer")
    await _post_all(base, "/widget/rtc/offer", offer_bodies, 9, offers, {400, 401, 403, 413, 415})
    return tokens, offers


async def loopback_offer() -> str:
    """A real aiortc offer (audio + data channel) with its ICE candidates on 127.0.0.1."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from web.widget.service import use_ice_addresses

    use_ice_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


# --- SIP -----------------------------------------------------------------------------------------
async def fuzz_sip(port: int, seed: int, n: int) -> Outcome:
    """`n` malformed datagrams at the real SIP endpoint, then a well-formed INVITE whose answer shows
    the endpoint still works (488: it offers G.729 only, so it never takes a line)."""
    out = Outcome("SIP")
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    src = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        for i in range(n):
            data = mutate_sip(rng, port, src)
            await loop.sock_sendto(sock, data[:65000], ("127.0.0.1", port))
            out.sent += 1
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        while True:  # drain what the endpoint answered to the fuzz
            try:
                sock.recv(65535)
            except BlockingIOError:
                break
        from tests.security.fuzz import SIP_SDP, SIP_TEMPLATE

        call = "probe-" + uuid.uuid4().hex
        probe = SIP_TEMPLATE.format(method="INVITE", port=port, src=src, branch=rng.randrange(10**9), tag="p",
                                    call=call, length=len(SIP_SDP), body=SIP_SDP)
        # UDP: the fuzz may still fill the endpoint's socket buffer, so the probe is retransmitted as
        # a real UA does (RFC 3261 timer A: 0.5 s, doubling) until it is answered
        deadline = time.monotonic() + 30
        answered, interval, next_send = None, 0.5, 0.0
        while time.monotonic() < deadline and answered is None:
            if time.monotonic() >= next_send:
                await loop.sock_sendto(sock, probe.encode(), ("127.0.0.1", port))
                next_send, interval = time.monotonic() + interval, min(interval * 2, 4.0)
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), max(0.01, next_send - time.monotonic()))
            except TimeoutError:
                continue
            text = data.decode("utf-8", errors="replace")
            if call in text and text.startswith("SIP/2.0 ") and not text.startswith("SIP/2.0 1"):
                answered = text.split("\r\n", 1)[0]
        # 488: its G.729-only offer is refused; 486 / 503: the lines are held by the fuzz's other calls or
        # the latency budget says no (the line is taken before the offer is read) — each a correct answer
        if answered is None or not answered.startswith(("SIP/2.0 488", "SIP/2.0 486", "SIP/2.0 503")):
            out.problem(f"after the fuzz, a well-formed INVITE got {answered!r} (want 488, 486 or 503)")
    finally:
        sock.close()
    return out
