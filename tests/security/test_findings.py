"""One regression test per finding of issue 10 that this suite owns (#1, #2 auth and types, #4, #7,
#8, #10), each against the real server over real sockets. Every one failed on the code before the
fix (run against main's server once: see docs/guides/harden.md). Findings #3, #6, #9, #5 and the
call-length part of #2 have their tests with the helpers who fixed them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import time

import httpx
import pytest
import websockets

from telephony.stream_auth import TOKEN_PARAMETER, fetch_stream_parameters
from tests.security.clients import call_token, loopback_offer
from tests.security.conftest import PASSWORDS
from tests.security.helpers import call_row, count_calls, first_json, media_flows, sign_in, stream_start
from voice.caller import CallerSession

pytestmark = pytest.mark.models

RECORD_PARAMS = {"patient_id": "MRN-EVIL", "patient_name": "Mallory", "campaign_id": "camp-evil",
                 "hospital": "Evil General", "mrn": "MRN-EVIL"}


# --- 1: Media Streams -----------------------------------------------------------------------------
async def test_1_media_stream_without_a_signed_token_gets_no_call(target) -> None:
    before = count_calls(target.server.data_dir, "media-stream")
    for custom in ({"language": "en", **RECORD_PARAMS},                       # what the attack sent
                   {"language": "en", TOKEN_PARAMETER: "forged.token.value"}):  # a made-up token
        async with websockets.connect(target.media_stream) as ws:
            _, start = stream_start(custom)
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(json.dumps(start))
            assert not await media_flows(ws), f"a stream with {list(custom)} got a call"
            assert ws.close_code == 1008
    assert count_calls(target.server.data_dir, "media-stream") == before


async def test_1_stream_token_is_single_use_and_unsigned_parameters_are_ignored(target) -> None:
    custom = await fetch_stream_parameters(target.media_stream, {"language": "en", **RECORD_PARAMS})
    assert TOKEN_PARAMETER in custom
    assert not set(RECORD_PARAMS) & set(custom), "an unsigned webhook's record fields are not signed"
    sid, start = stream_start({**custom, **RECORD_PARAMS})  # the carrier's extras are ignored
    async with websockets.connect(target.media_stream) as ws:
        await ws.send(json.dumps(start))
        assert await media_flows(ws), "the signed token opens the call"
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": "2", "streamSid": sid, "stop": {}}))
    async with websockets.connect(target.media_stream) as ws:  # the same token again
        await ws.send(json.dumps(stream_start(custom)[1]))
        assert not await media_flows(ws) and ws.close_code == 1008
    con_rows = [r for r in _calls_with_stream_sid(target, sid)]
    assert len(con_rows) == 1
    assert not set(RECORD_PARAMS) & set(con_rows[0]["params"]), con_rows[0]["params"]
    assert con_rows[0]["campaign_id"] is None


def _calls_with_stream_sid(target, sid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    import sqlite3

    deadline = time.monotonic() + 30
    while True:
        con = sqlite3.connect(target.server.data_dir / "carecall.db")
        try:
            rows = con.execute("SELECT id FROM calls WHERE channel = 'media-stream'").fetchall()
        finally:
            con.close()
        found = [c for (cid,) in rows if (c := call_row(target.server.data_dir, cid, timeout=0.1, ended=False))
                 and c["params"].get("stream_sid") == sid]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


# --- 2: /ws/call needs a token; integers are integers -----------------------------------------------
async def test_2_anonymous_sockets_cannot_hold_the_lines(target) -> None:
    sockets = [await websockets.connect(target.ws_call) for _ in range(8)]
    try:
        for ws in sockets:
            await ws.send(json.dumps({"type": "start", "language": "en", "sample_rate": 16000}))
        for ws in sockets:
            reply = await first_json(ws, 15)
            assert reply is not None and reply["type"] == "error" and reply["code"] == "unauthorised", reply
    finally:
        for ws in sockets:
            await ws.close()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{target.base}/healthz")).json()["calls"] == 0


@pytest.mark.parametrize("field", ["sample_rate", "output_sample_rate"])
async def test_2_a_float_sample_rate_is_refused_clearly(target, field: str) -> None:
    token = await call_token(target.base, "127.0.9.1")
    async with websockets.connect(target.ws_call) as ws:
        await ws.send(json.dumps({"type": "start", "language": "en", "token": token, field: 16000.0}))
        reply = await first_json(ws, 15)
        assert reply is not None and reply["type"] == "error" and reply["code"] == "bad_sample_rate", reply
        assert "integer" in reply["message"]


# --- 4: record fields come from the server, never the caller --------------------------------------
async def test_4_caller_params_never_reach_the_record(target) -> None:
    async with CallerSession(target.ws_call, "en", mode="followup", params=RECORD_PARAMS) as line:
        started = await line.wait_event("started", timeout=30)
        assert started is not None, line.report.events
        call_id = started["call_id"]
        await line.hang_up()
    row = call_row(target.server.data_dir, call_id)
    assert row is not None
    assert not set(RECORD_PARAMS) & set(row["params"]), row["params"]
    assert row["campaign_id"] is None


# --- 7: login throttling ----------------------------------------------------------------------------
async def test_7_parallel_guesses_are_counted_before_hashing_and_the_user_is_not_locked_out(target) -> None:
    clients = []
    try:
        async def guess(i: int) -> int:
            status, client = await sign_in(target.base, "ada", f"wrong-{i}", address="127.0.7.7")
            clients.append(client)
            return status

        codes = await asyncio.gather(*(guess(i) for i in range(20)))
        assert codes.count(401) <= 5 and codes.count(429) >= 15, codes  # 5 hashed at most, the rest refused
        # the real admin, from her own desk, is not locked out by someone else's guesses
        status, client = await sign_in(target.base, "ada", PASSWORDS["admin"], address="127.0.7.8")
        clients.append(client)
        assert status == 303
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


# --- 8: bodies bounded before parsing; nesting and non-finite numbers refused ----------------------
async def raw_post(base: str, path: str, headers: dict[str, str], chunks: list[bytes] | None = None,
                   repeat: int = 1) -> bytes:
    """POST over a raw socket, sending `chunks` `repeat` times, then reading the status line the server
    answers with however much of the announced body it took."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n")

    for _ in range(repeat):  # a little past the limit only: what the server leaves unread gets a reset on
        for chunk in chunks or []:  # close, and a client still writing then loses the answer (TCP, not us)
            writer.write(chunk)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), 20)
    finally:
        writer.close()


async def test_8_big_anonymous_bodies_are_refused_before_they_are_read(target) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    started = time.monotonic()
    status = await raw_post(target.base, "/console/login", {**form, "Content-Length": str(200 * 1024 * 1024)},
                            [b"username="])  # a 200 MB form announced, 9 bytes sent
    assert status.split()[1] == b"413" and time.monotonic() - started < 10, status
    chunk = b"10000\r\n" + b"A" * 0x10000 + b"\r\n"  # chunked: no length to refuse up front
    status = await raw_post(target.base, "/console/login", {**form, "Transfer-Encoding": "chunked"}, [chunk], 2)
    assert status.split()[1] == b"413", status
    status = await raw_post(target.base, "/console/campaigns/any/import", {  # a 64 MB anonymous upload
        "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(64 * 1024 * 1024)},
        [b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n" + b"x" * 65536])
    assert status.split()[1] == b"413", status


BAD_JSON = [b"[" * 500 + b"]" * 500, b'{"a":' * 150 + b"1" + b"}" * 150, b'{"lang": "en", "n": NaN}',
            b'{"lang": "en", "n": 1e999}', b'{"lang": "en", "n": -Infinity}', b'{"lang": "\\ud800"}']


@pytest.mark.parametrize("body", BAD_JSON)
async def test_8_deep_or_non_finite_json_gets_a_clear_400(target, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=target.base, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address="127.0.8.1")) as client:
        for path in ("/widget/token", "/widget/rtc/offer"):
            r = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["detail"], (path, r.status_code, r.text[:200])


async def test_8_deep_json_on_the_call_socket_is_a_clear_error(target) -> None:
    async with websockets.connect(target.ws_call) as ws:
        await ws.send('{"type": "start", "language": "en", "params": ' + "[" * 5000 + "]" * 5000 + "}")
        reply = await first_json(ws, 15)
        assert reply is not None and reply["code"] == "too_deep", reply
        await asyncio.sleep(0)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1003


async def test_8_infinity_sequence_number_does_not_end_a_stream(target) -> None:
    custom = await fetch_stream_parameters(target.media_stream, {"language": "en"})
    sid, start = stream_start(custom)
    offset = target.log_offset()
    async with websockets.connect(target.media_stream) as ws:
        await ws.send(json.dumps(start))
        assert await media_flows(ws)
        for literal in ("Infinity", "1e999", "NaN"):
            await ws.send('{"event": "media", "sequenceNumber": ' + literal + f', "streamSid": "{sid}", '
                          '"media": {"payload": "//8="}}')
        await ws.send(json.dumps({"event": "mark", "sequenceNumber": "3", "streamSid": sid, "mark": {"name": "x"}}))
        # Before the fix the reader died on int(inf) and the call ended at once, closing the socket.
        # A caller on the line for 3 s more is the absence of that event (bounded wait, by nature).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 3)
        assert ws.close_code is None, f"the stream ended ({ws.close_code}) on a non-finite sequence number"
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": "4", "streamSid": sid, "stop": {}}))
    assert not target.unhandled_since(offset)


# --- 10: health data at rest, STUN, API docs ----------------------------------------------------------
def _mode(path) -> int:  # type: ignore[no-untyped-def]
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_10_database_and_recordings_are_private(target) -> None:
    async with CallerSession(target.ws_call, "en") as line:
        started = await line.wait_event("started", timeout=30)
        assert started is not None
        await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=60)
        await line.hang_up()
    row = call_row(target.server.data_dir, started["call_id"])
    assert row is not None and row["recording_path"], row
    data = target.server.data_dir
    assert _mode(data) == 0o700
    assert _mode(data / "recordings") == 0o700
    assert _mode(row["recording_path"]) == 0o600
    for name in ("carecall.db", "carecall.db-wal", "carecall.db-shm"):
        if (data / name).exists():
            assert _mode(data / name) == 0o600, name


async def test_10_api_docs_are_off(target) -> None:
    async with httpx.AsyncClient(base_url=target.base) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path


async def test_10_no_stun_to_an_address_named_in_an_offer(target) -> None:
    """An offer names two extra candidates: 127.0.0.2:<a> (a host that is not the signalling peer)
    and 127.0.0.1:<b> (the peer's own address, another port). The server's check to b is the event
    to wait for (ICE checks every pair it keeps within a few hundred ms); a must never hear from it."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind(("127.0.0.2", 0))
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.bind(("127.0.0.1", 0))
    for s in (trap, control):
        s.setblocking(False)
    try:
        extra = (f"a=candidate:9 1 udp 2130706431 127.0.0.2 {trap.getsockname()[1]} typ host\r\n"
                 f"a=candidate:8 1 udp 2130706430 127.0.0.1 {control.getsockname()[1]} typ host\r\n")
        sdp = (await loopback_offer()).replace("a=end-of-candidates", extra + "a=end-of-candidates")
        assert extra in sdp
        token = await call_token(target.base, "127.0.10.1")
        async with httpx.AsyncClient(base_url=target.base) as client:
            r = await client.post("/widget/rtc/offer", json={"sdp": sdp, "type": "offer", "token": token})
        assert r.status_code == 200, r.text
        loop = asyncio.get_running_loop()
        # the server checks the peer's address (a generous bound: ICE starts late on a busy machine)
        await asyncio.wait_for(loop.sock_recvfrom(control, 2048), 90)
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(trap, 2048), 2)
        except TimeoutError:
            data = None
        assert data is None, f"the server sent {len(data)} bytes to an address the offer named"
    finally:
        trap.close()
        control.close()
