"""Inbound calls of the SIP endpoint (`SipEndpoint.inbound`, aiosipua's handlers for them): an
INVITE whose line was taken (`telephony.sip.intake`) is answered with PCMU/PCMA and telephone-event,
its RTP opened and the call run through the hub; a caller who cancels before the answer gets the line
back; re-INVITEs change codec or hold; BYE and CANCEL end the session."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiosipua import IncomingCall, SipRequest, negotiate_sdp
from aiosipua.sdp_negotiate import SdpNegotiationError

from telephony.common import call_log, mask_number
from telephony.sip.rtp import open_rtp
from telephony.sip.session import Session, codec_choice, direction, set_remote
from telephony.sip.transport import RtpTransport
from voice.admission import Admitted

if TYPE_CHECKING:
    from telephony.sip.endpoint import SipEndpoint

log = logging.getLogger("carecall.telephony.sip")


class InboundCalls:
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.config = endpoint.config  # (the endpoint's own: it learns its port at start)
        self.cancelled: set[str] = set()  # SIP Call-IDs cancelled while being answered

    def on_invite(self, call: IncomingCall) -> None:
        routes = call.invite.headers.get("record-route")
        if routes and self.endpoint.udp is not None:
            self.endpoint.udp.record_routes[call.call_id] = list(routes)
        asyncio.get_running_loop().create_task(self._answer_safely(call), name=f"sip-answer-{call.call_id[:12]}")

    async def _answer_safely(self, call: IncomingCall) -> None:
        admitted = self.endpoint.intake.admitted.get(call.call_id)  # stays there while answering: a CANCEL finds it
        try:
            if admitted is None:  # cannot happen through Intake.take_line; never answer without a line
                self.endpoint.reject(call, 503, "Service Unavailable")
                return
            await self._answer(call, admitted)
        except Exception as exc:  # e.g. no free RTP port: the caller gets a clear failure, other calls go on
            log.warning("could not answer a SIP call: %r", exc)
            if not call._answered:
                self.endpoint.reject(call, 503, "Service Unavailable")
        finally:
            self.endpoint.intake.admitted.pop(call.call_id, None)
            if admitted is not None and call.call_id not in self.endpoint.sessions:
                admitted.release()  # no-op once the call ran on it

    async def _answer(self, call: IncomingCall, admitted: Admitted) -> None:
        who = mask_number(call.caller.split("@")[0].removeprefix("<").removeprefix("sip:"))
        offer = call.sdp_offer
        if offer is None:
            log.warning("rejecting an INVITE without an SDP offer from %s", who)
            self.endpoint.reject(call, 488, "Not Acceptable Here")
            return
        try:
            codec, dtmf_pt, _ = codec_choice(offer)
        except SdpNegotiationError as exc:
            log.warning("rejecting a call from %s: %s", who, exc)
            self.endpoint.reject(call, 488, "Not Acceptable Here")
            return
        call_id = admitted.info.call_id
        clog = call_log("carecall.telephony.sip", call_id)
        transport_box: list[RtpTransport] = []
        rtp = await open_rtp(self.config.host, self.config.rtp_ports,
                             lambda pkt: transport_box[0].on_packet(pkt), clog)
        answer, _ = negotiate_sdp(offer, local_ip=self.config.host, rtp_port=rtp.local_port,
                                  supported_codecs=[codec.payload_type], dtmf_payload_type=dtmf_pt or 0,
                                  advertised_ip=self.config.public_host or None)
        set_remote(rtp, offer, codec, dtmf_pt, call.source_addr[0], self.config.rtp_latching)
        transport = self.endpoint.rtp_transport(call_id, call.call_id, rtp, codec, dtmf_pt)
        transport_box.append(transport)
        session = Session(call_id, call.call_id, transport, rtp, call.source_addr, incoming=call)
        call.ringing()
        if self.config.answer_delay_s:
            await asyncio.sleep(self.config.answer_delay_s)
        if call.call_id in self.cancelled or call.dialog.state.name == "TERMINATED":
            clog.info("caller gave up before we answered")
            self.endpoint.forget(call.call_id)
            rtp.close()
            return
        self.endpoint.sessions[call.call_id] = session
        call.accept(answer)
        transport.set_hold(direction(offer) in ("sendonly", "inactive"))
        admitted.add_params(sip_call_id=call.call_id, caller=who, codec=codec.name)
        clog.info("SIP call answered from %s (%s, %s, %s)", who, codec.name, admitted.info.language,
                  admitted.info.mode)
        transport.start()
        session.task = asyncio.create_task(self.endpoint.run_call(session, admitted), name=f"sip-call-{call_id}")

    def on_reinvite(self, call: IncomingCall) -> None:
        session = self.endpoint.sessions.get(call.call_id)
        if session is None:
            call.reject(481, "Call/Transaction Does Not Exist")
            return
        offer = call.sdp_offer
        if offer is None:  # a session refresh without SDP: answer with what we have
            call.accept(call.sdp_answer)
            return
        try:
            codec, dtmf_pt, _ = codec_choice(offer)
            answer, _ = negotiate_sdp(offer, local_ip=self.config.host, rtp_port=session.rtp.local_port,
                                      supported_codecs=[codec.payload_type], dtmf_payload_type=dtmf_pt or 0,
                                      advertised_ip=self.config.public_host or None)
        except SdpNegotiationError as exc:
            call_log("carecall.telephony.sip", session.call_id).warning("refusing a re-INVITE: %s", exc)
            call.reject(488, "Not Acceptable Here")
            return
        if codec.payload_type != session.transport.codec.payload_type:
            session.transport.codec = codec
        set_remote(session.rtp, offer, codec, dtmf_pt, session.peer[0], self.config.rtp_latching)
        call.accept(answer)
        session.transport.set_hold(direction(offer) in ("sendonly", "inactive"))

    def on_bye(self, call: IncomingCall, request: SipRequest) -> None:
        self.endpoint.end_session(call.call_id, "caller hung up")

    def on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        call_id = request.call_id or ""
        if call_id in self.endpoint.intake.admitted:  # still being answered: _answer sees this and gives the line back
            self.cancelled.add(call_id)
        self.endpoint.end_session(call_id, "caller cancelled")
