"""Small helpers for the attack suite: the server's call records, console sign-in over HTTP, and
the first messages of a call on each socket."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

from web.console.auth import TooManyAttempts

LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def call_row(data_dir: Path, call_id: str, timeout: float = 30.0, ended: bool = True) -> dict[str, Any] | None:
    """The call's record (status, channel, params, campaign, recording path) once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        con = sqlite3.connect(data_dir / "carecall.db")
        try:
            row = con.execute("SELECT status, channel, params, campaign_id, recording_path FROM calls WHERE id = ?",
                              (call_id,)).fetchone()
        finally:
            con.close()
        if row is not None and (not ended or row[0] == "ended"):
            return {"status": row[0], "channel": row[1], "params": json.loads(row[2] or "{}"),
                    "campaign_id": row[3], "recording_path": row[4]}
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def count_calls(data_dir: Path, channel: str) -> int:
    con = sqlite3.connect(data_dir / "carecall.db")
    try:
        return con.execute("SELECT COUNT(*) FROM calls WHERE channel = ?", (channel,)).fetchone()[0]
    finally:
        con.close()


async def sign_in(base: str, username: str, password: str, *, address: str = "127.0.0.1",
                  otp: str = "") -> tuple[int, httpx.AsyncClient]:
    """(status of the login POST, a client holding its cookies). 303 means signed in."""
    client = httpx.AsyncClient(base_url=base, timeout=20,
                               transport=httpx.AsyncHTTPTransport(local_address=address))
    page = await client.get("/console/login")
    token = LOGIN_TOKEN.search(page.text)
    assert token, page.text[:300]
    r = await client.post("/console/login", data={"username": username, "password": password,
                                                  "login_token": token.group(1), "otp": otp})
    return r.status_code, client


async def csrf(client: httpx.AsyncClient, path: str = "/console/") -> str:
    m = CSRF.search((await client.get(path)).text)
    assert m, "no CSRF token on " + path
    return m.group(1)


async def first_json(ws: Any, timeout: float = 30) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        except (websockets.ConnectionClosed, TimeoutError):
            return None
        if isinstance(msg, str):
            return json.loads(msg)


def stream_start(custom: dict[str, Any], sid: str | None = None) -> tuple[str, dict[str, Any]]:
    sid = sid or "MZ" + uuid.uuid4().hex
    return sid, {"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
        "accountSid": "AC" + "0" * 32, "streamSid": sid, "callSid": "CA" + uuid.uuid4().hex, "tracks": ["inbound"],
        "customParameters": custom, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


async def media_flows(ws: Any, timeout: float = 20) -> bool:
    """True when the server sends bot audio (a call was admitted) before closing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        except (websockets.ConnectionClosed, TimeoutError):
            return False
        if isinstance(msg, str) and json.loads(msg).get("event") == "media":
            return True


def race_logins(throttles: list[Any], attempts: int, username: str, address: str) -> int:
    """`attempts` sign-in attempts released at once (a barrier), spread over `throttles` in turn (one
    per worker): how many the throttles let through to the password check."""
    gate = threading.Barrier(attempts)
    allowed: list[int] = []

    def attempt(throttle: Any) -> None:
        gate.wait()
        try:
            throttle.begin(username, address)
            allowed.append(1)
        except TooManyAttempts:
            pass

    threads = [threading.Thread(target=attempt, args=(throttles[i % len(throttles)],)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(allowed)

