"""The SIP endpoint: answers INVITEs from the hospital PBX and places follow-up calls through it.

Signalling is aiosipua (RFC 3261 parsing, dialogs, 2xx retransmission until ACK, CANCEL matching,
digest auth); this module adds what a trunk needs from us on top of it: SDP with PCMU/PCMA and
telephone-event, RTP media per call (`RtpTransport` through `CallHub.run`), re-INVITE hold, REFER
transfers, INVITE retransmission and ACK of failure responses on our outbound calls, absorbing
retransmitted INVITEs, and a log line for every message we refuse.

This module is the endpoint's life and what every message goes through: SIP only from allowed sources
(`telephony.sip.guard`), then what a new request meets before aiosipua keeps any state (a line taken
through `voice.admission.admit` or a stateless refusal, a bad CSeq, OPTIONS: `telephony.sip.intake`),
then aiosipua; and the life of a session once answered (the call run through the hub, hang-up, removal
from aiosipua's state, blind transfer). Answering calls is `telephony.sip.inbound`'s, placing them
`telephony.sip.outbound`'s. A burst of INVITEs gets at most capacity × 200 OK and the rest 486 / 503
statelessly, leaving nothing in aiosipua's state; every call is removed from that state when it ends;
RTP only from the address the SDP names unless a latching policy says otherwise
(`telephony.sip.session.set_remote`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosipua import IncomingCall, SipRequest, SipResponse, SipUAC, SipUAS

from telephony.common import call_log
from telephony.sip.guard import Refusal, RefusedInvites, SourcePolicy, cseq_problem
from telephony.sip.inbound import InboundCalls
from telephony.sip.intake import Intake, is_retransmission
from telephony.sip.outbound import OutboundCalls
from telephony.sip.rtp import RtpSession
from telephony.sip.session import DialResult, Session, SipConfig
from telephony.sip.transport import RtpTransport
from telephony.sip.udp import SipUdp
from voice import g711
from voice.admission import Admitted
from voice.hub import CallsBusy

log = logging.getLogger("carecall.telephony.sip")

__all__ = ["DialResult", "SipConfig", "SipEndpoint"]


class SipEndpoint:
    def __init__(self, config: SipConfig, get_hub: Callable[[], Any]) -> None:
        self.config = config
        self.get_hub = get_hub
        self.sessions: dict[str, Session] = {}  # by SIP Call-ID
        self.udp: SipUdp | None = None  # our SIP socket
        self.uas: SipUAS | None = None
        self.uac: SipUAC | None = None
        self.sources = SourcePolicy(config.allowed_sources, config.trunk)
        self.intake = Intake(get_hub, config.default_language)
        self.inbound = InboundCalls(self)
        self.outbound = OutboundCalls(self)

    @property
    def refused(self) -> RefusedInvites:
        """INVITEs refused statelessly, for their retransmissions."""
        return self.intake.refused

    @property
    def bad_cseq(self) -> int:
        return self.intake.bad_cseq

    async def dial(self, number_or_uri: str, *, language: str = "zh", mode: str = "followup",
                   params: dict[str, Any] | None = None, ring_timeout: float = 30.0) -> DialResult:
        """Call a patient and run the call through the hub until it ends (`telephony.sip.outbound`)."""
        return await self.outbound.dial(number_or_uri, language=language, mode=mode, params=params,
                                        ring_timeout=ring_timeout)

    @property
    def advertised_host(self) -> str:
        return self.config.public_host or self.config.host

    @property
    def local_addr(self) -> tuple[str, int]:
        assert self.udp is not None
        return self.udp.local_addr

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.udp = SipUdp(local_addr=(cfg.host, cfg.port))
        advertised = (self.advertised_host, cfg.port) if cfg.public_host else None
        self.uac = SipUAC(self.udp, advertised_addr=advertised)
        self.uas = SipUAS(self.udp, uac=self.uac, user_agent=cfg.user_agent, advertised_addr=advertised)
        self.uas.on_invite = self.inbound.on_invite
        self.uas.on_reinvite = self.inbound.on_reinvite
        self.uas.on_bye = self.inbound.on_bye
        self.uas.on_cancel = self.inbound.on_cancel
        self.uas.on_ack_timeout = lambda call: self.end_session(call.call_id, "no ACK for our answer")
        self.uas.on_transfer_progress = self._on_transfer_progress
        self.uas.on_options = self._on_options
        await self.uas.start()
        if cfg.port == 0:  # bound to a free port: advertise the real one
            sock = self.udp._udp_transport.get_extra_info("sockname")  # type: ignore[union-attr]
            self.udp.local_addr = (cfg.host, sock[1])
            cfg.port = sock[1]
        self.udp.on_message = self._on_message  # our guards first, then aiosipua
        log.info("SIP endpoint listening on udp %s:%d", cfg.host, self.udp.local_addr[1])

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
            self.intake.bad(self.uas, msg, addr, problem)
            return
        if isinstance(msg, SipResponse):
            self.outbound.before_response(msg, addr)
            self.uas._on_message(msg, addr)
            return
        method = msg.method.upper()
        if method == "INVITE":
            if is_retransmission(self.uas, msg) or not self.intake.take_line(self.uas, self.uac, msg):
                return
            self.uas._on_message(msg, addr)
            call_id = msg.call_id or ""
            if call_id not in self.uas._calls:  # aiosipua refused it (malformed): the line goes back at once
                admitted = self.intake.admitted.pop(call_id, None)
                if admitted is not None:
                    admitted.release()
            return
        elif method == "ACK" and self.intake.absorb_ack(self.uas, msg):
            return
        elif method == "REFER":
            log.warning("refusing a REFER from the peer (CareCall does not transfer on request)")
            self.uas._send_error(msg, 603, "Decline")
            return
        self.uas._on_message(msg, addr)

    # --- aiosipua's state -------------------------------------------------------------------
    def forget(self, sip_call_id: str, refusal: Refusal | None = None) -> None:
        """Remove a call from aiosipua's state (it keeps rejected and finished calls otherwise)."""
        if self.uas is None:
            return
        call = self.uas._calls.pop(sip_call_id, None)
        if call is not None:
            call._stop_retransmissions()
            self.uas._remove_invite_transaction(call.invite)
        admitted = self.intake.admitted.pop(sip_call_id, None)
        if admitted is not None:
            admitted.release()
        self.inbound.cancelled.discard(sip_call_id)
        if self.udp is not None:
            self.udp.record_routes.pop(sip_call_id, None)
        if refusal is not None:
            self.intake.refused.add(sip_call_id, refusal)

    def reject(self, call: IncomingCall, status: int, reason: str) -> None:
        call.reject(status, reason)
        self.forget(call.call_id, Refusal("", status, reason))

    def _on_options(self, request: SipRequest, addr: tuple[str, int]) -> None:
        assert self.uas is not None
        self.intake.answer_options(self.uas, request)

    # --- a call's session -------------------------------------------------------------------
    def rtp_transport(self, call_id: str, sip_call_id: str, rtp: RtpSession, codec: g711.G711,
                       dtmf_pt: int | None) -> RtpTransport:
        """The call's media (inbound and outbound alike): its hang-up and transfer go through this endpoint."""
        return RtpTransport(call_id=call_id, rtp=rtp, codec=codec, dtmf_pt=dtmf_pt, input_rate=self.config.input_rate,
                            on_hangup=lambda reason: self._hangup_by_id(sip_call_id, reason),
                            on_transfer=lambda target: self._transfer(sip_call_id, target))

    async def run_call(self, session: Session, admitted: Admitted) -> dict[str, Any]:
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
            self.forget(session.sip_call_id)
            rtp = session.rtp
            clog.info("SIP call closed (rx %d pkts, tx %d, dropped: source %d, payload type %d; jitter: "
                      "late %d, dup %d, lost %d)", rtp.rx_packets, rtp.tx_packets, rtp.dropped_source,
                      rtp.dropped_pt, session.transport.jitter.late, session.transport.jitter.duplicates,
                      session.transport.jitter.lost)
        return result

    def end_session(self, sip_call_id: str, reason: str) -> None:
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
