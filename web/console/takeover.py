"""Live takeover from the console: "Take over" on a live call's page opens a WebRTC connection from
the nurse's browser to this worker (aiortc), and hands the call's audio to the nurse through
`voice.takeover` (the bot says one sentence and falls silent; caller and nurse talk; the transcript
keeps running). Hand back or end from the same page. Every step is on the call's history and in the
audit log. Signalling: the browser posts its SDP offer, gets the answer (ICE gathered first).

In a cluster only the worker carrying the call can take it over (its audio is there), and the nurse's
console may be served by any worker: the page names the carrying worker (`?worker=<id>`, from the live
view), and nginx routes these POSTs to it (deploy/nginx/carecall.conf.template, `$carecall_owner`).
A worker that gets one for a call it does not carry refuses (409, naming the owner): it never answers
an offer for audio it does not have."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from records import repository
from records.models import Review, User
from voice.audio import Pcm
from voice.resample import ToRate, relay_resampler
from voice.takeover import Phrases, TakeoverError, TakeoverRegistry
from web.console.auth import Principal
from web.console.common import api_user, check_csrf, client_host, get_services

log = logging.getLogger("carecall.console.takeover")
PHRASES_FILE = Path(__file__).resolve().parents[2] / "prompts" / "takeover.yaml"
MAX_SDP = 20_000


def load_phrases(path: Path = PHRASES_FILE) -> Phrases:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return Phrases(
            handover=dict(data["handover"]), hand_back=dict(data["hand_back"]), goodbye=dict(data["goodbye"])
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: needs handover, hand_back and goodbye, each with en and zh") from exc


class RtcNursePeer:
    """The nurse's browser over one aiortc peer connection (`voice.takeover.NursePeer`)."""

    def __init__(self, pc: Any) -> None:
        from web.widget.rtc import OPUS_RATE, BotAudioTrack

        self.pc = pc
        self.track = BotAudioTrack()  # the caller's voice, paced 20 ms frames at OPUS_RATE
        self._mic: asyncio.Queue[Pcm | None] = asyncio.Queue(maxsize=500)
        self._reader: asyncio.Task[None] | None = None
        # steady 20 ms chunks: a pull-mode track plays a late block as a gap
        self._to_nurse = ToRate(OPUS_RATE, relay_resampler)
        self.frames_in = 0
        pc.addTrack(self.track)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            if self._mic.full():
                self._mic.get_nowait()  # room for the end: the call must learn that she left
            self._mic.put_nowait(None)

    async def _read(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        from web.widget.rtc import frame_to_mono

        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                pcm = Pcm(frame_to_mono(frame), frame.sample_rate)
                if self._mic.full():
                    self._mic.get_nowait()  # a stalled consumer loses the oldest audio, never the newest
                self._mic.put_nowait(pcm)
        except MediaStreamError:
            await self._mic.put(None)

    async def receive(self) -> Pcm | None:
        return await self._mic.get()

    def send(self, audio: Pcm) -> None:
        # dropped past the output's lead: the nurse never falls behind
        self.track.output.push_nowait(self._to_nurse(audio))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


async def answer_offer(registry: TakeoverRegistry, call_id: str, sdp: str, nurse: str) -> dict[str, str]:
    """Accept a nurse's offer for a live call on this worker; returns the SDP answer."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    call = registry.call(call_id)
    if call.nurse is not None:
        raise TakeoverError(f"the call is already taken over by {call.nurse}")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer = RtcNursePeer(pc)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        while pc.iceGatheringState != "complete":
            await asyncio.sleep(0.05)
        await registry.take(call_id, peer, nurse)
    except Exception:
        await pc.close()
        raise
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


def add_takeover_routes(router: APIRouter) -> None:
    def registry_of(request: Request) -> TakeoverRegistry:
        registry = getattr(request.app.state, "takeovers", None)
        if registry is None:
            raise HTTPException(503, "live takeover is not available on this server")
        return registry

    def check_owner(request: Request, registry: TakeoverRegistry, call_id: str) -> None:
        """409 unless this worker carries the call: a misrouted takeover is refused, never half-done."""
        here = get_services(request).settings.worker_id
        wanted = request.query_params.get("worker", "")
        if call_id in registry.calls and (not wanted or wanted == here):
            return
        owner = get_services(request).feed.owner(call_id)
        if owner is None:
            raise HTTPException(409, "no such live call: it has ended")
        raise HTTPException(409, f"this worker ({here or 'unnamed'}) does not carry the call; it is carried by "
                                 f"worker {owner or '(unnamed)'}: take it over through the cluster's address")

    def note(request: Request, user: Principal, call_id: str, kind: str, text: str) -> None:
        with get_services(request).database.session() as session:
            account = session.get(User, user.id)
            session.add(Review(call_id=call_id, user_id=user.id, username=user.username, kind=kind, text=text))
            repository.audit(session, kind, user=account, call_id=call_id, client=client_host(request))

    @router.post("/calls/{call_id}/takeover")
    async def takeover(
        request: Request, call_id: str, body: dict[str, Any] = Body(...), user: Principal = Depends(api_user)
    ) -> Response:
        check_csrf(request, user, str(body.get("csrf_token") or ""))
        sdp = body.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > MAX_SDP:
            raise HTTPException(400, "an SDP offer is required")
        registry = registry_of(request)
        check_owner(request, registry, call_id)
        try:
            answer = await answer_offer(registry, call_id, sdp, user.username)
        except TakeoverError as exc:
            raise HTTPException(409, str(exc)) from None
        await asyncio.to_thread(note, request, user, call_id, "takeover", "nurse took over the live call")
        return JSONResponse(answer)

    @router.post("/calls/{call_id}/takeover/{action}")
    async def takeover_action(
        request: Request, call_id: str, action: str, body: dict[str, Any] = Body(default={}),
        user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        check_csrf(request, user, str(body.get("csrf_token") or ""))
        if action not in ("handback", "end"):
            raise HTTPException(404)
        registry = registry_of(request)
        check_owner(request, registry, call_id)
        try:
            await (registry.hand_back if action == "handback" else registry.end)(call_id, user.username)
        except TakeoverError as exc:
            raise HTTPException(409, str(exc)) from None
        text = "handed the call back to CareCall" if action == "handback" else "ended the call"
        await asyncio.to_thread(
            note, request, user, call_id, "handback" if action == "handback" else "takeover_end", text
        )
        return JSONResponse({"ok": True})
