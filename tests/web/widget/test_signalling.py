"""The widget's HTTP side with bad and good input: every bad request gets a clear 4xx and leaves
nothing behind (no peer connection, no task); tokens open exactly one call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from settings import Settings
from tests.web.widget.conftest import EchoHub
from tests.web.widget.peer import ClientPeer, ToneTrack
from web.widget import WidgetService
from web.widget.tokens import CallTokens, TokenExpired, TokenInvalid, TokenUsed

pytestmark = pytest.mark.usefixtures("loopback_ice")


def make_app(hub: EchoHub | None, **kwargs) -> tuple[FastAPI, WidgetService]:  # type: ignore[no-untyped-def]
    app = FastAPI()
    widget = WidgetService(Settings(secret_key="test-secret"), **kwargs)
    app.include_router(widget.router)
    if hub is not None:
        app.state.hub = hub
    return app, widget


@pytest.fixture
async def served(echo_hub: EchoHub) -> AsyncIterator[tuple[httpx.AsyncClient, WidgetService, EchoHub]]:
    app, widget = make_app(echo_hub, connect_timeout_s=5.0, offers_per_minute=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http, widget, echo_hub
    await widget.aclose()


async def token(http: httpx.AsyncClient, lang: str = "en") -> str:
    r = await http.post("/widget/token", json={"lang": lang})
    assert r.status_code == 200, r.text
    return r.json()["token"]


OFFER_SDP_JUNK = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nthis is not sdp\r\n"


# --- tokens ------------------------------------------------------------------------------------
def test_tokens_are_single_use_signed_and_expire() -> None:
    tokens = CallTokens("k")
    t = tokens.issue("zh")
    assert tokens.peek(t).language == "zh"
    assert tokens.redeem(t).language == "zh"
    with pytest.raises(TokenUsed):
        tokens.redeem(t)
    with pytest.raises(TokenInvalid):
        tokens.redeem(t[:-2] + "xx")
    with pytest.raises(TokenInvalid):
        CallTokens("another key").redeem(tokens.issue("en"))
    with pytest.raises(TokenInvalid):
        tokens.redeem(None)
    with pytest.raises(TokenExpired):
        CallTokens("k", ttl_s=-1).redeem(CallTokens("k").issue("en"))


def test_an_empty_secret_key_still_signs_with_a_random_key() -> None:
    a, b = CallTokens(""), CallTokens("")
    assert a.redeem(a.issue("en"))
    with pytest.raises(TokenInvalid):
        b.redeem(a.issue("en"))


async def test_token_endpoint(served) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = served
    r = await http.post("/widget/token", json={"lang": "zh"})
    assert r.status_code == 200
    body = r.json()
    assert body["lang"] == "zh" and body["expires_in"] == 120 and body["emergency_number"] == "120"
    assert (await http.post("/widget/token", json={"lang": "fr"})).status_code == 400
    assert (await http.post("/widget/token", content="lang=zh",
                            headers={"content-type": "application/x-www-form-urlencoded"})).status_code == 415
    assert (await http.post("/widget/token", content=b"{" + b" " * 5000 + b"}",
                            headers={"content-type": "application/json"})).status_code == 413


# --- bad offers ----------------------------------------------------------------------------------
async def test_bad_offers_get_clear_4xx_and_cost_nothing(served) -> None:  # type: ignore[no-untyped-def]
    http, widget, hub = served
    good = await token(http)
    cases = [
        ({"content": "sdp=x", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"{" + b" " * 40_000 + b"}", "headers": {"content-type": "application/json"}}, 413),
        ({"content": "{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"json": ["an", "array"]}, 400),
        ({"json": {"sdp": "v=0", "type": "answer", "token": good}}, 400),
        ({"json": {"sdp": OFFER_SDP_JUNK, "type": "offer", "token": good}}, 400),
        ({"json": {"sdp": "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "type": "offer", "token": good}}, 400),
        ({"json": {"sdp": "\x00" * 100, "type": "offer", "token": good}}, 400),
    ]
    for kwargs, status in cases:
        r = await http.post("/widget/rtc/offer", **kwargs)
        assert r.status_code == status, (kwargs, r.status_code, r.text)
        assert r.json()["detail"]
    # a real offer with a bad or missing token
    client = ClientPeer(ToneTrack(amplitude=0))
    offer = await client.offer()
    r = await http.post("/widget/rtc/offer", json={**offer, "lang": "en"})
    assert r.status_code == 401 and "token" in r.json()["detail"]
    r = await http.post("/widget/rtc/offer", json={**offer, "token": good + "x"})
    assert r.status_code == 401
    expired = CallTokens("test-secret", ttl_s=120).issue("en")
    widget.tokens.ttl_s = -1
    r = await http.post("/widget/rtc/offer", json={**offer, "token": expired})
    widget.tokens.ttl_s = 120
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    await client.close()
    # none of it left anything behind, and the good token was never spent on junk
    assert not widget.transports and not hub.runs
    assert widget.tokens.peek(good)


async def test_an_offer_aiortc_cannot_use_is_refused_and_closed(served) -> None:  # type: ignore[no-untyped-def]
    http, widget, hub = served
    client = ClientPeer()
    offer = await client.offer()
    # well-formed, with ICE and DTLS, but no codec in common
    sdp = "\r\n".join(
        line.split(" ")[0] + " nope/8000" if line.startswith("a=rtpmap:") else line
        for line in offer["sdp"].split("\r\n")
    )
    r = await http.post("/widget/rtc/offer", json={"sdp": sdp, "type": "offer", "token": await token(http)})
    assert r.status_code == 400 and r.json()["detail"] == "the SDP offer could not be used"
    assert not widget.transports and not widget._tasks and not hub.runs
    await client.close()


async def test_a_token_opens_exactly_one_call(served) -> None:  # type: ignore[no-untyped-def]
    http, widget, hub = served
    t = await token(http, "zh")
    client = ClientPeer()
    r = await http.post("/widget/rtc/offer", json={**await client.offer(), "token": t, "lang": "zh"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "answer" and "opus" in answer["sdp"].lower()
    assert "PCMU" not in answer["sdp"]  # Opus only
    await client.accept(answer)
    await client.wait_state("connected")
    assert (await client.wait_message("connected"))["transport"] == "webrtc"
    assert (await client.wait_message("state"))["state"] == "listening"
    # the same token again: refused, whatever the offer
    again = ClientPeer()
    r = await http.post("/widget/rtc/offer", json={**await again.offer(), "token": t})
    assert r.status_code == 403 and "already used" in r.json()["detail"]
    await again.close()
    # the call runs on the hub in the token's language, then ends when the caller hangs up
    deadline = time.monotonic() + 30  # ICE and the first frames on loopback: slow on a loaded machine
    while not (hub.runs and hub.runs[0]["frames"] > 10) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert hub.runs[0]["info"].language == "zh" and hub.runs[0]["info"].channel == "webrtc"
    client.channel.send('{"type":"end"}')
    while widget.transports and time.monotonic() < deadline + 5:
        await asyncio.sleep(0.05)
    assert not widget.transports
    assert hub.runs[0]["hangup"] == "caller hung up"
    await client.close()


async def test_offer_floods_are_rate_limited_per_address(echo_hub: EchoHub) -> None:
    app, widget = make_app(echo_hub, offers_per_minute=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        codes = [(await http.post("/widget/rtc/offer", json={"type": "offer", "sdp": "x"})).status_code
                 for _ in range(5)]
        assert codes == [400, 400, 400, 429, 429]
        r = await http.post("/widget/rtc/offer", json={})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # another address is not affected
        other = httpx.ASGITransport(app=app, client=("10.9.9.9", 1234))
        async with httpx.AsyncClient(transport=other, base_url="http://test") as http2:
            assert (await http2.post("/widget/rtc/offer", json={})).status_code == 400
    await widget.aclose()


async def test_concurrent_peer_connections_are_capped(echo_hub: EchoHub) -> None:
    app, widget = make_app(echo_hub, max_peers=1, connect_timeout_s=1.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        first, second = ClientPeer(), ClientPeer()
        r1 = await http.post("/widget/rtc/offer", json={**await first.offer(), "token": await token(http)})
        assert r1.status_code == 200
        t2 = await token(http)
        r2 = await http.post("/widget/rtc/offer", json={**await second.offer(), "token": t2})
        assert r2.status_code == 429
        assert widget.tokens.peek(t2)  # refused before the token was spent
        # the first never connects (its answer is never applied): closed and forgotten in time
        deadline = time.monotonic() + 30  # ICE and the first frames on loopback: slow on a loaded machine
        while widget.transports and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not widget.transports and not widget._tasks
        assert not echo_hub.runs
        r3 = await http.post("/widget/rtc/offer", json={**await second.offer(), "token": t2})
        assert r3.status_code == 200
        await first.close()
        await second.close()
    await widget.aclose()
    assert not widget.transports


async def test_busy_hub_and_missing_hub_answer_503(echo_hub: EchoHub) -> None:
    echo_hub.capacity = 0
    for hub in (echo_hub, None):
        app, widget = make_app(hub)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            client = ClientPeer()
            r = await http.post("/widget/rtc/offer", json={**await client.offer(), "token": await token(http)})
            assert r.status_code == 503 and r.json()["detail"]
            await client.close()
        await widget.aclose()


async def test_shutdown_tells_the_browser_and_closes_every_connection(served) -> None:  # type: ignore[no-untyped-def]
    http, widget, hub = served
    client = ClientPeer()
    r = await http.post("/widget/rtc/offer", json={**await client.offer(), "token": await token(http)})
    await client.accept(r.json())
    await client.wait_message("state")
    await widget.aclose()
    restart = await client.wait_message("error")
    assert restart["code"] == "server_restart"
    assert not widget.transports and not widget._tasks
    await client.wait_state("closed")
    assert hub.runs[0]["hangup"] in ("cancelled", "connection closed")
    r = await http.post("/widget/token", json={"lang": "en"})
    assert r.status_code == 503
    await client.close()


async def test_cors_preflight_and_static_files(served) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = served
    r = await http.options("/widget/rtc/offer", headers={"origin": "https://hospital.example",
                                                         "access-control-request-method": "POST"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://hospital.example"
    r = await http.post("/widget/token", json={"lang": "en"}, headers={"origin": "https://hospital.example"})
    assert r.headers["access-control-allow-origin"] == "https://hospital.example"
    js = await http.get("/widget/embed.js")
    assert js.status_code == 200 and "attachShadow" in js.text
    assert js.headers["content-type"].startswith("text/javascript")
    page = await http.get("/widget")
    assert page.status_code == 200 and "/widget/embed.js" in page.text
    assert (await http.get("/widget/static/pcm-worklet.js")).status_code == 200
    assert (await http.get("/widget/static/..%2Fservice.py")).status_code == 404
    assert (await http.get("/widget/static/service.py")).status_code == 404
