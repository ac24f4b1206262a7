"""The one admission function: clear refusals for bad input, the line taken before the answer
(with a reserving hub) or checked (an older hub), released when the call is not answered after all;
and the entry points use it (a bad language on Media Streams is refused, not turned into zh)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from settings import Settings
from telephony.stream_auth import TOKEN_PARAMETER
from telephony.twilio_webhooks import build_router
from voice.admission import AdmissionRefused, CallRequest, ReservingHub, admit, validate
from voice.events import CallInfo


class OldHub:
    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.ran: list[tuple[Any, ...]] = []

    def has_capacity(self) -> bool:
        return self.free

    def new_call_id(self) -> str:
        return "c1"

    async def run(self, *args: Any) -> dict[str, Any]:
        self.ran.append(args)
        return {"ok": True}


class Ticket:
    def __init__(self, hub: ReservingTestHub) -> None:
        self.hub = hub

    def release(self) -> None:
        self.hub.released += 1


class ReservingTestHub(OldHub):
    def __init__(self, lines: int = 1) -> None:
        super().__init__()
        self.lines = lines
        self.released = 0

    def reserve(self, channel: str = "") -> Ticket:
        if self.lines <= 0:
            raise RuntimeError("at capacity (1 of 1 lines)")  # voice.hub.CallsBusy is a RuntimeError
        self.lines -= 1
        return Ticket(self)


@pytest.mark.parametrize(("request_", "code"), [
    (CallRequest("websocket", language="fr"), "bad_language"),
    (CallRequest("websocket"), "bad_language"),  # no language and no channel default
    (CallRequest("websocket", language=1), "bad_language"),
    (CallRequest("websocket", language="en", mode="surgery"), "bad_mode"),
    (CallRequest("websocket", language="en", params={"a": {"nested": 1}}), "bad_params"),
    (CallRequest("websocket", language="en", params={"a": "x" * 1000}), "bad_params"),
    (CallRequest("fax", language="en"), "bad_channel"),
])
def test_bad_requests_are_refused_with_a_clear_code(request_: CallRequest, code: str) -> None:
    with pytest.raises(AdmissionRefused) as exc:
        validate(request_)
    assert exc.value.code == code and exc.value.message


def test_defaults_apply_only_where_nothing_was_asked() -> None:
    assert validate(CallRequest("sip", default_language="en"))[:2] == ("en", "triage")
    with pytest.raises(AdmissionRefused):
        validate(CallRequest("sip", language="xx", default_language="en"))


def test_a_reserving_hub_gets_the_line_first_and_back_when_not_answered() -> None:
    hub = ReservingTestHub(lines=1)
    assert isinstance(hub, ReservingHub)
    with admit(hub, CallRequest("sip", language="zh")) as call:
        assert isinstance(call.info, CallInfo) and call.info.channel == "sip"
        with pytest.raises(AdmissionRefused) as busy:
            admit(hub, CallRequest("sip", language="zh"))  # the line is taken before the answer
        assert busy.value.busy
    assert hub.released == 1  # never run: given back
    call = admit(ReservingTestHub(), CallRequest("websocket", language="en", params={"k": "v"}))
    result = asyncio.run(call.run(object()))  # type: ignore[arg-type]
    assert result == {"ok": True}
    ticket, info, _transport = call.hub.ran[0]  # type: ignore[attr-defined]
    assert isinstance(ticket, Ticket) and info.params == {"k": "v"}
    call.release()
    assert call.hub.released == 0  # type: ignore[attr-defined]  # ran: the hub owns the line now


def test_a_busy_refusal_says_whether_every_line_is_in_use() -> None:
    """SIP answers 486 when the lines are full and 503 (try another worker) otherwise."""
    from telephony.sip.intake import refusal_status
    from voice.hub import CallsBusy

    with pytest.raises(AdmissionRefused) as full:
        admit(ReservingTestHub(lines=0), CallRequest("sip", language="zh"))
    assert full.value.at_capacity and refusal_status(full.value) == (486, "Busy Here")

    class DrainingHub(ReservingTestHub):
        def reserve(self, channel: str = "") -> Ticket:
            raise CallsBusy("draining")

    with pytest.raises(AdmissionRefused) as draining:
        admit(DrainingHub(), CallRequest("sip", language="zh"))
    assert draining.value.busy and not draining.value.at_capacity
    assert refusal_status(draining.value) == (503, "Service Unavailable")
    with pytest.raises(AdmissionRefused) as starting:
        admit(None, CallRequest("sip", language="zh"))
    assert refusal_status(starting.value)[0] == 503
    with pytest.raises(AdmissionRefused) as bad:
        admit(ReservingTestHub(), CallRequest("sip", language="fr"))
    assert refusal_status(bad.value) == (400, "Unsupported Language")


def test_what_the_entry_point_learns_while_answering_joins_the_params() -> None:
    call = admit(ReservingTestHub(), CallRequest("sip", language="en", params={"campaign": "c1"}))
    call.add_params(sip_call_id="abc", codec="PCMU")
    assert call.info.params == {"campaign": "c1", "sip_call_id": "abc", "codec": "PCMU"}
    asyncio.run(call.run(object()))  # type: ignore[arg-type]
    assert call.hub.ran[0][1].params["sip_call_id"] == "abc"  # type: ignore[attr-defined]


def test_an_older_hub_is_checked_and_run_the_old_way() -> None:
    with pytest.raises(AdmissionRefused) as exc:
        admit(OldHub(free=False), CallRequest("webrtc", language="zh"))
    assert exc.value.busy
    hub = OldHub()
    call = admit(hub, CallRequest("webrtc", language="zh"))
    asyncio.run(call.run(object()))  # type: ignore[arg-type]
    assert len(hub.ran[0]) == 2 and hub.ran[0][0].language == "zh"
    with pytest.raises(AdmissionRefused):
        admit(None, CallRequest("webrtc", language="zh"))  # no hub yet: busy, not a crash


def start_message(language: str, token: str) -> str:
    custom = {"language": language, TOKEN_PARAMETER: token}
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                       "start": {"streamSid": "MZ1", "callSid": "CA1", "customParameters": custom,
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}})


def test_a_bad_language_on_media_streams_is_refused_not_turned_into_zh() -> None:
    hub = OldHub()
    app = FastAPI()
    router = build_router(Settings(), get_hub=lambda _app: hub)
    app.include_router(router)
    token = router.stream_guard.tokens.issue({"language": "fr"})  # type: ignore[attr-defined]  # as signed TwiML would carry
    with TestClient(app) as client, client.websocket_connect("/telephony/twilio/stream") as ws:
        ws.send_text(json.dumps({"event": "connected"}))
        ws.send_text(start_message("fr", token))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1008 and closed.value.reason == "bad_language"
    assert hub.ran == []
