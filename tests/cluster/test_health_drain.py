"""/healthz/live and /healthz/ready, and SIGTERM draining, on a real uvicorn process (the same
`web.health.serve` that `carecall serve` runs): ready turns 503 while draining, new calls get busy,
a running call goes on and finishes, or is told and ended at the drain limit; the process then exits
0. The client address comes from X-Forwarded-For only through a trusted proxy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import websockets

from bench.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker(drain_timeout_s: float = 30, trusted: str = "127.0.0.1") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.drain_app", str(port), str(drain_timeout_s), trusted],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                out = proc.stdout.read() if proc.poll() is not None and proc.stdout else b""
                raise RuntimeError("drain_app did not start: " + out.decode())
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def wait_ready_status(client: httpx.AsyncClient, base: str, status: int) -> dict:
    for _ in range(200):
        r = await client.get(f"{base}/healthz/ready")
        if r.status_code == status:
            return r.json()
    raise AssertionError(f"/healthz/ready never answered {status}")


async def start_call(base: str):  # type: ignore[no-untyped-def]
    ws = await websockets.connect(base.replace("http", "ws") + "/ws/call")
    return ws, json.loads(await ws.recv())


def exit_code(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    return proc.wait(timeout)


async def test_ready_reports_capacity_with_reasons_and_live_stays_up() -> None:
    with worker() as (base, _proc):
        async with httpx.AsyncClient() as client:
            ready = (await client.get(f"{base}/healthz/ready")).json()
            assert ready["ready"] and ready["capacity"] == 2 and ready["active"] == 0
            a, started_a = await start_call(base)
            b, _ = await start_call(base)
            assert started_a["type"] == "started"
            full = await wait_ready_status(client, base, 503)
            assert full["reason"].startswith("at capacity") and full["active"] == 2
            c, refused = await start_call(base)
            assert refused == {"type": "error", "code": "busy", "message": full["reason"]}
            # Through the balancer (its header): an HTTP 503 before the upgrade, so nginx tries the next worker
            with pytest.raises(websockets.exceptions.InvalidStatus) as denied:
                await websockets.connect(base.replace("http", "ws") + "/ws/call",
                                         additional_headers={"X-CareCall-Balancer": "nginx"})
            assert denied.value.response.status_code == 503
            assert (await client.get(f"{base}/healthz/live")).status_code == 200
            await a.send("bye")
            assert json.loads(await a.recv())["type"] == "ended"
            await wait_ready_status(client, base, 200)
            for ws in (a, b, c):
                await ws.close()


async def test_sigterm_drains_new_calls_get_busy_and_the_running_call_finishes() -> None:
    with worker(drain_timeout_s=60) as (base, proc):
        async with httpx.AsyncClient() as client:
            ws, _ = await start_call(base)
            proc.send_signal(signal.SIGTERM)
            draining = await wait_ready_status(client, base, 503)
            assert draining["reason"] == "draining" and draining["draining"] and draining["active"] == 1
            late, refused = await start_call(base)
            assert refused["code"] == "busy" and refused["message"] == "draining"
            await ws.send("still there?")
            assert await ws.recv() == "echo still there?"  # the running call is not cut
            assert proc.poll() is None
            await ws.send("bye")
            assert json.loads(await ws.recv()) == {"type": "ended", "reason": "completed"}
            await late.close()
        assert exit_code(proc) == 0
    log = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert "drained: 1 call(s) finished, 0 ended at the limit" in log


async def test_sigterm_ends_a_call_that_outlasts_the_drain_limit_and_tells_the_caller() -> None:
    with worker(drain_timeout_s=1.0) as (base, proc):
        ws, _ = await start_call(base)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        ended = json.loads(await ws.recv())
        took = time.monotonic() - t0
        assert ended["type"] == "ended" and "nurse will call you back" in ended["reason"]
        assert 0.9 <= took < 10  # the limit, not forever and not at once
        assert exit_code(proc) == 0
    log = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert "0 call(s) finished, 1 ended at the limit" in log


@pytest.mark.parametrize(("trusted", "expected"), [("127.0.0.1", "203.0.113.7"), ("10.9.9.9", "127.0.0.1")])
async def test_the_client_address_comes_from_x_forwarded_for_only_through_a_trusted_proxy(trusted: str,
                                                                                          expected: str) -> None:
    with worker(trusted=trusted) as (base, _proc):
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{base}/whoami", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.json()["client"] == expected


def test_a_worker_of_several_refuses_to_start_without_the_shared_secret(tmp_path: Path) -> None:
    from server import create_app
    from settings import Settings
    from web.health import ClusterMisconfigured

    with pytest.raises(ClusterMisconfigured, match="CARECALL_SECRET_KEY"):
        create_app(Settings(workers=3, data_dir=tmp_path))
    create_app(Settings(workers=3, data_dir=tmp_path, secret_key="s" * 48))  # with it: fine
    create_app(Settings(workers=1, data_dir=tmp_path))  # one worker may keep its own key
