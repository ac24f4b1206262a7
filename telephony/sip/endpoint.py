"""The SIP endpoint: answers INVITEs from the hospital PBX and places follow-up calls through it.

Signalling is aiosipua (RFC 3261 parsing, dialogs, 2xx retransmission until ACK, CANCEL matching,
digest auth); this module adds what a trunk needs from us on top of it: SDP with PCMU/PCMA and
telephone-event, RTP media per call (`RtpTransport` through `CallHub.run`), re-INVITE hold, REFER
transfers, INVITE retransmission and ACK of failure responses on our outbound calls, absorbing
retransmitted INVITEs, and a log line for every message we refuse.

Hardening (issue 10 #5, guards in `telephony.sip.guard`): SIP only from allowed sources; a line is
taken through `voice.admission.admit` (the one admission of every entry point: language and mode
checked, a line reserved on the hub, the call id made) before anything is answered, so a burst of
INVITEs gets at most capacity × 200 OK and the rest 486 (busy) / 503 (draining, budget broken) sent
statelessly, leaving nothing in aiosipua's state (an unsupported X-CareCall-Language or -Mode gets a
400, never another language); every call is removed from that state when it ends; RTP only from the
address the SDP names unless a latching policy says otherwise; a bad CSeq gets a 400 and one log line.
OPTIONS is answered 503 while the worker is not ready, so a Kamailio dispatcher routes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosipua import (
    IncomingCall,
    SdpMessage,
    SipRequest,
    SipResponse,
    SipUAC,
    SipUAS,
    negotiate_sdp,
    parse_sdp,
)
from aiosipua.sdp_negotiate import SdpNegotiationError

from telephony.common import call_log, mask_number
from telephony.sip.guard import Refusal, RefusedInvites, SourcePolicy, cseq_problem
from telephony.sip.outbound import OutboundCalls
from telephony.sip.rtp import RtpSession, open_rtp
from telephony.sip.session import DialResult, Session, SipConfig, codec_choice, direction
from telephony.sip.transport import RtpTransport
from telephony.sip.udp import SipUdp
from voice import g711
from voice.admission import AdmissionRefused, Admitted, CallRequest, admit
from voice.hub import CallsBusy
from voice.languages import LANGUAGES

log = logging.getLogger("carecall.telephony.sip")

__all__ = ["DialResult", "SipConfig", "SipEndpoint", "refusal_status"]


def refusal_status(refused: AdmissionRefused) -> tuple[int, str]:
    """The SIP answer to a refused admission: 486 when every line is in use, 503 (try another worker)
    while this one starts, drains or is over its latency budget, 400 for an unsupported language or mode."""
    if refused.busy:
        return (486, "Busy Here") if refused.at_capacity else (503, "Service Unavailable")
    phrases = {"bad_language": "Unsupported Language", "bad_mode": "Unsupported Mode"}
    return 400, phrases.get(refused.code, "Bad Request")


class SipEndpoint(OutboundCalls):
    def __init__(self, config: SipConfig, get_hub: Callable[[], Any]) -> None:
        self.config = config
        self._get_hub = get_hub
        self.sessions: dict[str, Session] = {}  # by SIP Call-ID
        self._transport: SipUdp | None = None
        self.uas: SipUAS | None = None
        self.uac: SipUAC | None = None
        self._outbound_pending: dict[str, asyncio.Event] = {}  # Call-ID → "a response arrived"
        self._cancelled: set[str] = set()
        self._early: dict[str, RtpSession] = {}  # outbound calls ringing: early media goes here
        self.sources = SourcePolicy(config.allowed_sources, config.trunk)
        self.refused = RefusedInvites()  # INVITEs refused statelessly, for their retransmissions
        self._admitted: dict[str, Admitted] = {}  # SIP Call-ID → the call admitted for it, until answered
        self.bad_cseq = 0
        self._refusal_log = 0.0
        self._refusals_unlogged = 0

    @property
    def advertised_host(self) -> str:
        return self.config.public_host or self.config.host

    @property
    def local_addr(self) -> tuple[str, int]:
        assert self._transport is not None
        return self._transport.local_addr

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self._transport = SipUdp(local_addr=(cfg.host, cfg.port))
        advertised = (self.advertised_host, cfg.port) if cfg.public_host else None
        self.uac = SipUAC(self._transport, advertised_addr=advertised)
        self.uas = SipUAS(self._transport, uac=self.uac, user_agent=cfg.user_agent, advertised_addr=advertised)
        self.uas.on_invite = self._on_invite
        self.uas.on_reinvite = self._on_reinvite
        self.uas.on_bye = self._on_bye
        self.uas.on_cancel = self._on_cancel
        self.uas.on_ack_timeout = lambda call: self._end_session(call.call_id, "no ACK for our answer")
        self.uas.on_transfer_progress = self._on_transfer_progress
        self.uas.on_options = self._on_options
        await self.uas.start()
        if cfg.port == 0:  # bound to a free port: advertise the real one
            sock = self._transport._udp_transport.get_extra_info("sockname")  # type: ignore[union-attr]
            self._transport.local_addr = (cfg.host, sock[1])
            cfg.port = sock[1]
        self._transport.on_message = self._on_message  # our guards first, then aiosipua
        log.info("SIP endpoint listening on udp %s:%d", cfg.host, self._transport.local_addr[1])

    async def stop(self) -> None:
        for s in list(self.sessions.values()):
            await self._hangup_session(s, "server shutting down")
            if s.task is not None:
                s.task.cancel()
        if self.uas is not None:
            await self.uas.stop()
        log.info("SIP endpoint stopped")

    # --- message guards ----------------------------------------------------------------------
    def _on_message(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        assert self.uas is not None
        if not self.sources.allows(addr[0]):  # no answer at all: no reflection, no state
            what = msg.method if isinstance(msg, SipRequest) else f"response {msg.status_code}"
            self.sources.refuse(addr[0], addr[1], str(what)[:20])
            return
        problem = cseq_problem(msg)
        if problem is not None:
            self._bad_cseq(msg, addr, problem)
            return
        if isinstance(msg, SipResponse):
            self._before_response(msg, addr)
            self.uas._on_message(msg, addr)
            return
        method = msg.method.upper()
        if method == "INVITE":
            if self._is_retransmission(msg) or not self._take_line(msg, addr):
                return
            self.uas._on_message(msg, addr)
            call_id = msg.call_id or ""
            if call_id not in self.uas._calls:  # aiosipua refused it (malformed): the line goes back at once
                admitted = self._admitted.pop(call_id, None)
                if admitted is not None:
                    admitted.release()
            return
        elif method == "ACK" and self._absorb_ack(msg):
            return
        elif method == "REFER":
            log.warning("refusing a REFER from the peer (CareCall does not transfer on request)")
            self.uas._send_error(msg, 603, "Decline")
            return
        self.uas._on_message(msg, addr)

    def _bad_cseq(self, msg: SipRequest | SipResponse, addr: tuple[str, int], problem: str) -> None:
        """One log line (then every 1000th), a 400 for a request that can be answered, nothing else."""
        assert self.uas is not None
        self.bad_cseq += 1
        if self.bad_cseq % 1000 == 1:
            log.warning("ignoring a SIP message from %s:%d: %s (%d so far)", addr[0], addr[1], problem, self.bad_cseq)
        if isinstance(msg, SipRequest) and msg.method.upper() != "ACK" and msg.headers.get_first("via"):
            self.uas._send_error(msg, 400, "Bad CSeq")

    # --- admission: take the line, then answer -----------------------------------------------
    def _take_line(self, invite: SipRequest, addr: tuple[str, int]) -> bool:
        """For a new INVITE: admit the call (a line reserved in the hub) before aiosipua stores anything.
        A refused INVITE is answered statelessly here and never reaches aiosipua. False: refused."""
        assert self.uas is not None
        call_id = invite.call_id or ""
        if call_id in self.uas._calls or (self.uac is not None and call_id in self.uac._calls):
            return True  # a re-INVITE in a dialog: aiosipua checks its tags and CSeq
        earlier = self.refused.get(call_id)
        if earlier is not None:  # a retransmission of an INVITE we refused: the same answer again
            self.uas._send_error(invite, earlier.status, earlier.reason)
            return False
        if "tag=" in (invite.headers.get_first("to") or ""):
            self.uas._send_error(invite, 481, "Call/Transaction Does Not Exist")
            return False
        if call_id in self._admitted:
            return True  # still being answered (a new branch on the same Call-ID)
        language, mode = self._language_and_mode(invite)
        request = CallRequest("sip", language=language, mode=mode, default_language=self.config.default_language)
        try:
            self._admitted[call_id] = admit(self._get_hub(), request)
        except AdmissionRefused as exc:
            status, reason = refusal_status(exc)
            self._refuse(invite, status, reason, exc.message)
            return False
        return True

    def _refuse(self, invite: SipRequest, status: int, reason: str, why: str) -> None:
        assert self.uas is not None
        vias = invite.via
        self.refused.add(invite.call_id or "", Refusal(vias[0].branch or "" if vias else "", status, reason))
        extra = {"Retry-After": "5"} if status == 503 else None
        self.uas._send_error(invite, status, reason, extra_headers=extra)
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_log >= 5.0:  # a flood of INVITEs: one line per 5 s, with the count
            log.warning("refused %d SIP call(s) with %d %s: %s", self._refusals_unlogged, status, reason, why)
            self._refusal_log = now
            self._refusals_unlogged = 0

    def _absorb_ack(self, ack: SipRequest) -> bool:
        """The ACK for a final error we sent statelessly: nothing to do."""
        assert self.uas is not None
        call_id = ack.call_id or ""
        return call_id not in self.uas._calls and self.refused.get(call_id) is not None

    def _forget(self, sip_call_id: str, refusal: Refusal | None = None) -> None:
        """Remove a call from aiosipua's state (it keeps rejected and finished calls otherwise)."""
        if self.uas is None:
            return
        call = self.uas._calls.pop(sip_call_id, None)
        if call is not None:
            call._stop_retransmissions()
            self.uas._remove_invite_transaction(call.invite)
        admitted = self._admitted.pop(sip_call_id, None)
        if admitted is not None:
            admitted.release()
        self._cancelled.discard(sip_call_id)
        if self._transport is not None:
            self._transport.record_routes.pop(sip_call_id, None)
        if refusal is not None:
            self.refused.add(sip_call_id, refusal)

    def _reject(self, call: IncomingCall, status: int, reason: str) -> None:
        call.reject(status, reason)
        self._forget(call.call_id, Refusal("", status, reason))

    def _on_options(self, request: SipRequest, addr: tuple[str, int]) -> None:
        """Capability query, and the dispatcher's health probe: 503 while this worker is not ready."""
        assert self.uas is not None
        hub = self._get_hub()
        state = hub.readiness() if hub is not None else None
        if state is None or not state.ready:
            self.uas._send_error(request, 503, "Service Unavailable",
                                 extra_headers={"Retry-After": "5",
                                                "Warning": f'399 carecall "{state.reason if state else "starting"}"'})
            return
        self.uas._send_error(request, 200, "OK", extra_headers={"Allow": ", ".join(self.uas._handlers),
                                                              "Accept": "application/sdp"})

    def _is_retransmission(self, invite: SipRequest) -> bool:
        assert self.uas is not None
        existing = self.uas.get_call(invite.call_id or "")
        if existing is None:
            return False
        old, new = existing.invite.via, invite.via
        same = bool(old and new and old[0].branch == new[0].branch)
        if same:
            log.debug("absorbed a retransmitted INVITE")
        return same

    def _before_response(self, resp: SipResponse, addr: tuple[str, int]) -> None:
        call_id = resp.call_id or ""
        cseq = resp.cseq
        method = cseq.method.upper() if cseq else ""
        if call_id in self._outbound_pending:
            self._outbound_pending[call_id].set()
        session = self.sessions.get(call_id)
        if method == "REFER" and session is not None and session.refer_status is not None:
            if not session.refer_status.done():
                session.refer_status.set_result(resp.status_code)
        if method == "INVITE" and resp.status_code >= 300 and self.uac is not None:
            call = self.uac.get_call(call_id)
            if call is not None:
                self._ack_failure(call.invite, resp, addr)
        if method == "INVITE" and resp.status_code in (180, 183) and resp.body:
            pending = self._early.get(call_id)
            if pending is not None:
                with contextlib.suppress(Exception):
                    sdp = parse_sdp(resp.text)
                    if sdp.rtp_address and sdp.rtp_address[0] not in ("0.0.0.0", ""):
                        pending.remote = sdp.rtp_address  # early media

    def _ack_failure(self, invite: SipRequest, resp: SipResponse, addr: tuple[str, int]) -> None:
        """ACK a 3xx-6xx to our INVITE (RFC 3261 §17.1.1.3): same branch, the response's To."""
        assert self._transport is not None
        ack = SipRequest(method="ACK", uri=invite.uri)
        ack.headers.append("Via", invite.headers.get_first("via") or "")
        ack.headers.set_single("From", invite.headers.get_first("from") or "")
        ack.headers.set_single("Call-ID", invite.headers.get_first("call-id") or "")
        ack.headers.set_single("To", resp.headers.get_first("to") or "")
        seq = invite.cseq.seq if invite.cseq else 1
        ack.headers.set_single("CSeq", f"{seq} ACK")
        ack.headers.set_single("Max-Forwards", "70")
        self._transport.send(ack, addr)

    # --- inbound calls -----------------------------------------------------------------------
    def _on_invite(self, call: IncomingCall) -> None:
        routes = call.invite.headers.get("record-route")
        if routes and self._transport is not None:
            self._transport.record_routes[call.call_id] = list(routes)
        asyncio.get_running_loop().create_task(self._answer_safely(call), name=f"sip-answer-{call.call_id[:12]}")

    async def _answer_safely(self, call: IncomingCall) -> None:
        admitted = self._admitted.get(call.call_id)  # stays there while answering: a CANCEL finds it
        try:
            if admitted is None:  # cannot happen through _take_line; never answer without a line
                self._reject(call, 503, "Service Unavailable")
                return
            await self._answer(call, admitted)
        except Exception as exc:  # e.g. no free RTP port: the caller gets a clear failure, other calls go on
            log.warning("could not answer a SIP call: %r", exc)
            if not call._answered:
                self._reject(call, 503, "Service Unavailable")
        finally:
            self._admitted.pop(call.call_id, None)
            if admitted is not None and call.call_id not in self.sessions:
                admitted.release()  # no-op once the call ran on it

    async def _answer(self, call: IncomingCall, admitted: Admitted) -> None:
        who = mask_number(call.caller.split("@")[0].removeprefix("<").removeprefix("sip:"))
        offer = call.sdp_offer
        if offer is None:
            log.warning("rejecting an INVITE without an SDP offer from %s", who)
            self._reject(call, 488, "Not Acceptable Here")
            return
        try:
            codec, dtmf_pt, _ = codec_choice(offer)
        except SdpNegotiationError as exc:
            log.warning("rejecting a call from %s: %s", who, exc)
            self._reject(call, 488, "Not Acceptable Here")
            return
        call_id = admitted.info.call_id
        clog = call_log("carecall.telephony.sip", call_id)
        transport_box: list[RtpTransport] = []
        rtp = await open_rtp(self.config.host, self.config.rtp_ports,
                             lambda pkt: transport_box[0].on_packet(pkt), clog)
        answer, _ = negotiate_sdp(offer, local_ip=self.config.host, rtp_port=rtp.local_port,
                                  supported_codecs=[codec.payload_type], dtmf_payload_type=dtmf_pt or 0,
                                  advertised_ip=self.config.public_host or None)
        self._set_remote(rtp, offer, codec, dtmf_pt, call.source_addr[0])
        transport = RtpTransport(call_id=call_id, rtp=rtp, codec=codec, dtmf_pt=dtmf_pt,
                                 input_rate=self.config.input_rate,
                                 on_hangup=lambda reason: self._hangup_by_id(call.call_id, reason),
                                 on_transfer=lambda target: self._transfer(call.call_id, target))
        transport_box.append(transport)
        session = Session(call_id, call.call_id, transport, rtp, call.source_addr, incoming=call)
        call.ringing()
        if self.config.answer_delay_s:
            await asyncio.sleep(self.config.answer_delay_s)
        if call.call_id in self._cancelled or call.dialog.state.name == "TERMINATED":
            clog.info("caller gave up before we answered")
            self._forget(call.call_id)
            rtp.close()
            return
        self.sessions[call.call_id] = session
        call.accept(answer)
        transport.set_hold(direction(offer) in ("sendonly", "inactive"))
        admitted.add_params(sip_call_id=call.call_id, caller=who, codec=codec.name)
        clog.info("SIP call answered from %s (%s, %s, %s)", who, codec.name, admitted.info.language,
                  admitted.info.mode)
        transport.start()
        session.task = asyncio.create_task(self._run_call(session, admitted), name=f"sip-call-{call_id}")

    @staticmethod
    def _language_and_mode(invite: SipRequest) -> tuple[str | None, str | None]:
        """What the INVITE asks for, unchecked (`admit` checks it): the X-CareCall-Language header, else
        a request-URI user that is a language or ends in `-<language>` (`sip:en@…`, `sip:clinic-zh@…`),
        else None (the configured default); the X-CareCall-Mode header, else None (triage)."""
        lang = (invite.get_header("x-carecall-language") or "").strip().lower() or None
        if lang is None:
            user = invite.uri.split(":", 1)[-1].split("@")[0].lower()
            lang = next((x for x in LANGUAGES if user == x or user.endswith("-" + x)), None)
        mode = (invite.get_header("x-carecall-mode") or "").strip().lower() or None
        return lang, mode

    def _set_remote(self, rtp: RtpSession, sdp: SdpMessage, codec: g711.G711, dtmf_pt: int | None,
                    signalling_host: str) -> None:
        """Where media goes and may come from. Only the SDP's address by default; `c=0.0.0.0` (or
        port 0) then means no media at all (hold), never "whoever sends first". Latching (symmetric
        RTP, for phones behind NAT) only as configured: to the SIP peer's own host, or (`any`) to
        anyone."""
        addr = sdp.rtp_address
        usable = addr is not None and addr[0] not in ("0.0.0.0", "::", "") and addr[1] != 0
        policy = self.config.rtp_latching
        rtp.latch, rtp.latch_hosts = False, None
        if policy == "sdp" or (usable and policy != "signalling"):
            rtp.remote = (addr[0], addr[1]) if usable and addr is not None else None
        else:
            rtp.remote = None
            rtp.latch = True
            if policy == "signalling":
                rtp.latch_hosts = frozenset({signalling_host, *([addr[0]] if usable and addr else [])})
        rtp.payload_types = {codec.payload_type} | ({dtmf_pt} if dtmf_pt is not None else set()) | {101}

    async def _run_call(self, session: Session, admitted: Admitted) -> dict[str, Any]:
        clog = call_log("carecall.telephony.sip", session.call_id)
        result: dict[str, Any] = {}
        try:
            result = await admitted.run(session.transport) or {}
        except CallsBusy as exc:  # the reserved line was given back (held too long before the answer)
            clog.warning("no line for the call: %s", exc.reason)
        except Exception as exc:
            clog.error("call ended with an error: %r", exc)
        finally:
            admitted.release()
            await self._hangup_session(session, "call ended")
            await session.transport.aclose()
            self.sessions.pop(session.sip_call_id, None)
            self._forget(session.sip_call_id)
            rtp = session.rtp
            clog.info("SIP call closed (rx %d pkts, tx %d, dropped: source %d, payload type %d; jitter: "
                      "late %d, dup %d, lost %d)", rtp.rx_packets, rtp.tx_packets, rtp.dropped_source,
                      rtp.dropped_pt, session.transport.jitter.late, session.transport.jitter.duplicates,
                      session.transport.jitter.lost)
        return result

    def _on_reinvite(self, call: IncomingCall) -> None:
        session = self.sessions.get(call.call_id)
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
        self._set_remote(session.rtp, offer, codec, dtmf_pt, session.peer[0])
        call.accept(answer)
        session.transport.set_hold(direction(offer) in ("sendonly", "inactive"))

    def _on_bye(self, call: IncomingCall, request: SipRequest) -> None:
        self._end_session(call.call_id, "caller hung up")

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        call_id = request.call_id or ""
        if call_id in self._admitted:  # still being answered: _answer sees this and gives the line back
            self._cancelled.add(call_id)
        self._end_session(call_id, "caller cancelled")

    def _end_session(self, sip_call_id: str, reason: str) -> None:
        session = self.sessions.get(sip_call_id)
        if session is None or session.ended:
            return
        session.ended = True
        call_log("carecall.telephony.sip", session.call_id).info("%s", reason)
        session.transport.caller_gone(reason)

    async def _hangup_by_id(self, sip_call_id: str, reason: str) -> None:
        session = self.sessions.get(sip_call_id)
        if session is not None:
            await self._hangup_session(session, reason)

    async def _hangup_session(self, session: Session, reason: str) -> None:
        if session.ended:
            return
        session.ended = True
        session.transport.caller_gone(reason)
        if session.incoming is not None:
            session.incoming.hangup()
        elif session.outgoing is not None and self.uac is not None:
            session.outgoing.hangup(self.uac)
            self.uac.remove_call(session.sip_call_id)

    # --- transfer ----------------------------------------------------------------------------
    async def _transfer(self, sip_call_id: str, target: str, timeout: float = 20.0) -> bool:
        """Blind transfer (RFC 3515): REFER, then wait for the final NOTIFY; on success hang up."""
        target = target or self.config.transfer_target
        session = self.sessions.get(sip_call_id)
        if session is None or session.ended or self.uac is None or not target:
            return False
        dialog = session.incoming.dialog if session.incoming is not None else session.outgoing.dialog
        clog = call_log("carecall.telephony.sip", session.call_id)
        loop = asyncio.get_running_loop()
        session.refer_status = loop.create_future()
        session.transfer_waiter = loop.create_future()
        target_uri = target if target.startswith(("sip:", "sips:", "tel:")) else f"sip:{target}@{session.peer[0]}"
        self.uac.send_refer(dialog, target_uri, session.peer)
        try:
            status = await asyncio.wait_for(session.refer_status, 8)
            if status >= 300:
                clog.warning("transfer refused by the PBX (%d)", status)
                return False
            final = await asyncio.wait_for(session.transfer_waiter, timeout)
        except TimeoutError:
            clog.warning("transfer: no answer from the PBX")
            return False
        if 200 <= final < 300:
            clog.info("caller transferred to the human line")
            await self._hangup_session(session, "transferred")
            return True
        clog.warning("transfer failed (%d)", final)
        return False

    def _on_transfer_progress(self, sip_call_id: str, status: int, reason: str) -> None:
        session = self.sessions.get(sip_call_id)
        if session is None or session.transfer_waiter is None or session.transfer_waiter.done():
            return
        if status >= 200:
            session.transfer_waiter.set_result(status)
