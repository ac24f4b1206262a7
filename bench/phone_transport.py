"""The phone paths alone: Twilio-style Media Streams and SIP/RTP callers (bench.phone_latency's) against an
instant responder in place of the models, run as its own process behind the real phone transports, with
more and more calls at once. What is left of the caller's latency (less the responder's 300 ms wait) is
the line itself: framing, pacing, jitter, the transports' queues.

    python -m bench.phone_transport [N ...]     # calls at once to try (default 1 10 25 50)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import RunningServer, free_port
from bench.latency import synthesise_scripts
from bench.phone_latency import (
    BUDGET_MS,
    RESULTS,
    AlwaysFree,
    loud,
    media_streams_call,
    run_rows,
    sip_call,
    summary,
)
from bench.report import update_readme
from telephony.sip.endpoint import SipConfig, SipEndpoint
from voice.audio import Pcm
from voice.events import CallerAudio, CallerHangup
from voice.resample import resample


def loud_ends(utt: Pcm) -> list[float]:
    """Where the last loud 20 ms of the clip ends (the instant responder's notion of speech end)."""
    x = resample(utt, 8000).samples
    ends = [(i + 160) / 8000 for i in range(0, len(x) - 159, 160) if loud(x[i:i + 160])]
    return ends[-1:] or [utt.duration]


class ResponderHub(AlwaysFree):
    """Replies with 1 s of tone as soon as the caller has been quiet for `QUIET_S` after speaking:
    what is left of the caller's latency is the phone path itself (plus QUIET_S)."""

    QUIET_S = 0.3

    def __init__(self) -> None:
        self.active = 0

    def new_call_id(self) -> str:
        return uuid.uuid4().hex

    async def run_call(self, info: Any, transport: Any) -> dict[str, Any]:
        self.active += 1
        rate = transport.input_rate
        beep = Pcm((np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 8000).astype(np.int16), 8000)
        transport.mark_turn()
        await transport.send_audio(Pcm(beep.samples[:4000], 8000))  # a short greeting
        heard_speech, quiet = False, 0.0
        try:
            while True:
                ev = await transport.receive()
                if isinstance(ev, CallerHangup):
                    return {}
                if not isinstance(ev, CallerAudio):
                    continue
                if loud(ev.audio.samples):
                    heard_speech, quiet = True, 0.0
                elif heard_speech:
                    quiet += len(ev.audio.samples) / rate
                    if quiet >= self.QUIET_S:
                        heard_speech = False
                        transport.mark_turn()
                        await transport.send_audio(beep)
        finally:
            self.active -= 1


def serve_responder(http_port: int, sip_port: int) -> None:
    """The responder behind the real phone transports, as its own process (`--serve-responder`), so the
    measuring process is not slowed by its work."""
    import uvicorn
    from fastapi import FastAPI

    from settings import Settings
    from telephony.twilio_webhooks import build_router

    hub = ResponderHub()
    lo = random.randrange(40000, 49000, 100)
    endpoint = SipEndpoint(SipConfig(port=sip_port, rtp_ports=(lo, lo + 999)), get_hub=lambda: hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await endpoint.start()  # before uvicorn listens: a connection accepted means both paths are up
        try:
            yield
        finally:
            await endpoint.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(build_router(Settings(), get_hub=lambda _app: hub))
    uvicorn.run(app, host="127.0.0.1", port=http_port, log_level="warning")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    """Until the responder accepts connections (its SIP endpoint starts before uvicorn listens)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the responder exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the responder did not listen on {port} within {limit_s:.0f} s")


def transport_only(audio: dict[str, list[Pcm]], turns: int, steps: list[int]) -> list[dict[str, Any]]:
    http_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sip_port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.phone_transport", "--serve-responder", str(http_port),
                             str(sip_port)], start_new_session=True)
    try:
        _wait_listening(http_port, proc)
        fake = RunningServer(f"http://127.0.0.1:{http_port}", "", Path("."), proc, {}, Path("/dev/null"))

        async def go() -> list[dict[str, Any]]:
            runs = []
            for path in ("media-streams", "sip"):
                for n in steps:
                    ws_url = fake.base_url.replace("http", "ws") + "/telephony/twilio/stream"
                    calls = [media_streams_call(ws_url, "en", audio["en"][:turns], loud_ends) if path == "media-streams"
                             else sip_call(sip_port, "en", audio["en"][:turns], loud_ends) for _ in range(n)]
                    results = await asyncio.gather(*calls, return_exceptions=True)
                    lat = [x - ResponderHub.QUIET_S * 1000 for r in results if isinstance(r, list) for x in r]
                    run = {"path": path, "concurrent": n, "line_overhead_ms": summary(lat),
                           "failed_calls": sum(1 for r in results if not isinstance(r, list)),
                           "turns_without_reply": n * turns - len(lat)}
                    print(json.dumps(run), flush=True)
                    runs.append(run)
                    p95 = run["line_overhead_ms"]["p95"]
                    if p95 is None or p95 > BUDGET_MS or run["failed_calls"]:
                        break
            return runs

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", type=int, nargs="*", metavar="N", help="calls at once to try (default 1 10 25 50)")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--serve-responder", type=int, nargs=2, metavar=("HTTP_PORT", "SIP_PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_responder:
        serve_responder(*args.serve_responder)
        return
    runs = transport_only(synthesise_scripts(), args.turns, args.steps or [1, 10, 25, 50])
    RESULTS.mkdir(exist_ok=True)
    body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "responder_quiet_s": ResponderHub.QUIET_S, "runs": runs}
    (RESULTS / "phone_transport.json").write_text(json.dumps(body, indent=2))
    md = "\n".join(run_rows(runs, "line_overhead_ms", "line overhead"))
    print(md)
    update_readme("phone-transport", f"Phone paths alone (an instant responder in place of the models; "
                  f"caller-side latency less its {ResponderHub.QUIET_S * 1000:.0f} ms wait), {body['when']} on "
                  f"{body['machine']} (`python -m bench.phone_transport`):\n\n{md}")


if __name__ == "__main__":
    main()
