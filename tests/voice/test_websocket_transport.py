"""The WebSocket transport over a real socket (no models): audio sent faster than real time is
dropped, counted and told to the client (issue 10 #3); float sample rates are refused (issue 10 #2)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from voice.events import AudioDropped, CallerAudio, CallerHangup
from voice.transports.websocket import ProtocolError, WebSocketTransport, parse_start


@pytest.mark.parametrize("field", ["sample_rate", "output_sample_rate"])
@pytest.mark.parametrize("value", [16000.0, True, "16000", 11025])
def test_sample_rates_must_be_listed_integers(field: str, value: object) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_start(json.dumps({"type": "start", "language": "en", field: value}))
    assert exc.value.code == "bad_sample_rate"


def test_deeply_nested_json_is_a_clear_error_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_start("[" * 100_000 + "]" * 100_000)
    assert exc.value.code == "too_deep"  # voice.wire.loads bounds the nesting


def test_an_audio_flood_is_cut_to_real_time_and_the_client_is_told() -> None:
    got: dict[str, object] = {}
    app = FastAPI()

    @app.websocket("/call")
    async def call(ws: WebSocket) -> None:
        await ws.accept()
        start = parse_start((await ws.receive())["text"])
        t = WebSocketTransport(ws, start, max_message_bytes=64 * 1024, call_id="flood001")
        await t.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        accepted = 0.0
        dropped: list[AudioDropped] = []
        while True:
            ev = await t.receive()
            if isinstance(ev, CallerAudio):
                accepted += ev.audio.duration
            elif isinstance(ev, AudioDropped):
                dropped.append(ev)
            elif isinstance(ev, CallerHangup):
                break
        got.update(accepted=accepted, elapsed=loop.time() - began, dropped=dropped, stats=t.inbound.dropped_s)
        await t.aclose()

    with TestClient(app) as client, client.websocket_connect("/call") as ws:
        ws.send_text(json.dumps({"type": "start", "language": "en", "sample_rate": 16000}))
        frame = b"\x00\x01" * 320  # 20 ms
        for _ in range(3000):  # 60 s of audio, as fast as the socket takes it
            ws.send_bytes(frame)
        errors = []
        while not errors:
            msg = json.loads(ws.receive_text())
            if msg.get("type") == "error":
                errors.append(msg)
        ws.send_text(json.dumps({"type": "end"}))
    assert errors[0]["code"] == "audio_too_fast" and errors[0]["dropped_s"] > 0
    accepted, elapsed = float(got["accepted"]), float(got["elapsed"])  # type: ignore[arg-type]
    assert accepted <= elapsed + 2.0 + 0.05  # real time plus the 2 s burst allowance
    assert float(got["stats"]) >= 60.0 - accepted - 0.05  # type: ignore[arg-type]
    assert got["dropped"]  # the call was told too
