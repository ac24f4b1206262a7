"""The SIP endpoint: answers INVITEs from the hospital PBX and places follow-up calls through it.

Signalling is aiosipua (RFC 3261 parsing, dialogs, 2xx retransmission until ACK, CANCEL matching,
digest auth); this module adds what a trunk needs from us on top of it: SDP with PCMU/PCMA and
telephone-event, RTP media per call (`RtpTransport` through `CallHub.run`), re-INVITE hold, REFER
transfers, INVITE retransmission and ACK of failure responses on our outbound calls, absorbing
retransmitted INVITEs, and a log line for every message we refuse.

Hardening (issue 10 #5, guards in `telephony.sip.guard`): SIP only from allowed sources; a line is
taken from the hub (`reserve()`) before anything is answered, so a burst of INVITEs gets at most
capacity × 200 OK and the rest 486 (busy) / 503 (draining, budget broken) sent statelessly, leaving
nothing in aiosipua's state; every call is removed from that state when it ends; RTP only from the
address the SDP names unless a latching policy says otherwise; a bad CSeq gets a 400 and one log line.
OPTIONS is answered 503 while the worker is not ready, so a Kamailio dispatcher routes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosipua import (
    IncomingCall,
    SdpMessage,
    SipDigestAuth,
    SipMessage,
    SipRequest,
    SipResponse,
    SipUAC,
    SipUAS,
    build_sdp,
    negotiate_sdp,
    parse_sdp,
)
from aiosipua.sdp_negotiate import SdpNegotiationError
from aiosipua.transport import UdpSipTransport, _stamp_via_received

from telephony.common import call_log, mask_number
from telephony.sip.guard import Refusal, RefusedInvites, SourcePolicy, cseq_problem
from telephony.sip.rtp import RtpSession, open_rtp
from telephony.sip.transport import RtpTransport
from voice import g711
from voice.events import CallInfo
from voice.hub import CallsBusy, Ticket

log = logging.getLogger("carecall.telephony.sip")

SUPPORTED_PTS = (0, 8)  # PCMU, PCMA
T1 = 0.5


@dataclass
class SipConfig:
    host: str = "127.0.0.1"
    port: int = 5060
    public_host: str = ""  # advertised in Via/Contact/SDP (NAT); empty: `host`
    rtp_ports: tuple[int, int] = (20000, 20999)
    trunk: str = ""  # host[:port] outbound calls go to
    from_user: str = "carecall"
    username: str = ""  # digest credentials if the trunk challenges
    password: str = ""
    default_language: str = "zh"
    user_agent: str = "CareCall"
    input_rate: int = 16000
    answer_delay_s: float = 0.0  # ring this long before answering
    transfer_target: str = ""  # the human line a Transfer with no target goes to
    allowed_sources: tuple[str, ...] = ()  # CIDRs SIP may come from; empty: loopback + the trunk
    rtp_latching: str = "sdp"  # sdp | signalling | any (see Settings.sip_rtp_latching)

    @classmethod
    def from_settings(cls, s: Any) -> SipConfig:
        return cls(
            host=s.sip_host, port=s.sip_port, public_host=s.sip_public_host,
            rtp_ports=(s.sip_rtp_port_min, s.sip_rtp_port_max), trunk=s.sip_trunk,
            from_user=s.sip_from_user, username=s.sip_username,
            password=s.sip_password.get_secret_value(), default_language=s.sip_default_language,
            transfer_target=s.transfer_target, allowed_sources=tuple(s.sip_allowed_sources),
            rtp_latching=s.sip_rtp_latching)


@dataclass
class DialResult:
    """How an outbound call went: answered (and the call's result), or why not."""

    outcome: str  # answered | busy | no-answer | rejected | failed
    sip_status: int | None = None
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    call_id: str | None = None  # CareCall's call id (the call record) when answered


@dataclass
class _Session:
    call_id: str  # CareCall's id
    sip_call_id: str
    transport: RtpTransport
    rtp: RtpSession
    peer: tuple[str, int]
    incoming: IncomingCall | None = None
    outgoing: Any = None  # aiosipua OutgoingCall
    task: asyncio.Task[Any] | None = None
    transfer_waiter: asyncio.Future[int] | None = None
    refer_status: asyncio.Future[int] | None = None
    ended: bool = False


class _Udp(UdpSipTransport):
    """aiosipua's UDP transport, bound without its protocol's isinstance assert (which fails on
    Python 3.11, whose selector datagram transport is not a DatagramTransport subclass), and
    counting what it cannot parse."""

    malformed = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Call-ID → the INVITE's Record-Route headers: copied into our responses (RFC 3261 §12.1.1),
        # which aiosipua leaves out, so that a proxy (Kamailio) stays on the dialog's path.
        self.record_routes: dict[str, list[str]] = {}

    def send_reply(self, response: SipResponse) -> None:
        routes = self.record_routes.get(response.call_id or "")
        if routes and 100 < response.status_code < 300 and not response.headers.get("record-route"):
            for route in routes:
                response.headers.append("Record-Route", route)
        super().send_reply(response)

    async def start(self) -> None:
        owner = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                owner._dispatch(data, (str(addr[0]), int(addr[1])))

            def error_received(self, exc: Exception) -> None:
                log.warning("SIP socket error: %s", exc)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Proto, local_addr=self.local_addr)
        self._udp_transport = transport  # type: ignore[assignment]

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = SipMessage.parse(data)
            if isinstance(msg, SipRequest):
                _stamp_via_received(msg, addr)
        except Exception as exc:  # garbage on the port: one line, no traceback, nothing else happens
            self.malformed += 1
            log.warning("ignoring a malformed SIP message from %s:%d (%s)", addr[0], addr[1], str(exc)[:80])
            return
        if self.on_message is not None:
            try:
                self.on_message(msg, addr)
            except Exception as exc:  # a message we cannot handle: one line; the traceback only at debug
                self.malformed += 1
                log.warning("could not handle a SIP %s from %s:%d: %s", str(getattr(msg, "method", "response"))[:20],
                            addr[0], addr[1], repr(exc)[:120])
                log.debug("SIP handling error", exc_info=True)


def _codec_choice(sdp: SdpMessage) -> tuple[g711.G711, int | None, set[int]]:
    """The first G.711 codec in `sdp`'s audio and its telephone-event payload type."""
    audio = sdp.audio
    if audio is None:
        raise SdpNegotiationError("no audio")
    codec = next((c for c in audio.codecs if c.payload_type in SUPPORTED_PTS), None)
    if codec is None:
        raise SdpNegotiationError("no G.711 codec")
    dtmf = next((c.payload_type for c in audio.codecs if c.encoding_name.lower() == "telephone-event"), None)
    return g711.G711("PCMU" if codec.payload_type == 0 else "PCMA"), dtmf, {codec.payload_type}


def _direction(sdp: SdpMessage | None) -> str:
    return sdp.audio.direction if sdp is not None and sdp.audio is not None else "sendrecv"


class SipEndpoint:
    def __init__(self, config: SipConfig, get_hub: Callable[[], Any]) -> None:
        self.config = config
        self._get_hub = get_hub
        self.sessions: dict[str, _Session] = {}  # by SIP Call-ID
        self._transport: _Udp | None = None
        self.uas: SipUAS | None = None
        self.uac: SipUAC | None = None
        self._outbound_pending: dict[str, asyncio.Event] = {}  # Call-ID → "a response arrived"
        self._cancelled: set[str] = set()
        self._early: dict[str, RtpSession] = {}  # outbound calls ringing: early media goes here
        self.sources = SourcePolicy(config.allowed_sources, config.trunk)
        self.refused = RefusedInvites()  # INVITEs refused statelessly, for their retransmissions
        self._tickets: dict[str, Ticket] = {}  # SIP Call-ID → the line taken for it, until answered
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
        self._transport = _Udp(local_addr=(cfg.host, cfg.port))
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
        """For a new INVITE: reserve a line in the hub before aiosipua stores anything. A refused
        INVITE is answered statelessly here and never reaches aiosipua. False: refused."""
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
        if call_id in self._tickets:
            return True  # still being answered (a new branch on the same Call-ID)
        hub = self._get_hub()
        if hub is None:
            self._refuse(invite, 503, "Service Unavailable", "no call hub")
            return False
        try:
            self._tickets[call_id] = hub.reserve("sip")
        except CallsBusy as exc:
            busy = exc.reason.startswith("at capacity")
            self._refuse(invite, 486 if busy else 503, "Busy Here" if busy else "Service Unavailable", exc.reason)
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
        ticket = self._tickets.pop(sip_call_id, None)
        if ticket is not None:
            ticket.release()
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
        ticket = self._tickets.pop(call.call_id, None)
        try:
            if ticket is None:  # cannot happen through _take_line; never answer without a line
                self._reject(call, 503, "Service Unavailable")
                return
            await self._answer(call, ticket)
        except Exception as exc:  # e.g. no free RTP port: the caller gets a clear failure, other calls go on
            log.warning("could not answer a SIP call: %r", exc)
            if not call._answered:
                self._reject(call, 503, "Service Unavailable")
        finally:
            if ticket is not None and not ticket.used and call.call_id not in self.sessions:
                ticket.release()

    async def _answer(self, call: IncomingCall, ticket: Ticket) -> None:
        hub = self._get_hub()
        who = mask_number(call.caller.split("@")[0].removeprefix("<").removeprefix("sip:"))
        if hub is None:
            self._reject(call, 503, "Service Unavailable")
            return
        offer = call.sdp_offer
        if offer is None:
            log.warning("rejecting an INVITE without an SDP offer from %s", who)
            self._reject(call, 488, "Not Acceptable Here")
            return
        try:
            codec, dtmf_pt, _ = _codec_choice(offer)
        except SdpNegotiationError as exc:
            log.warning("rejecting a call from %s: %s", who, exc)
            self._reject(call, 488, "Not Acceptable Here")
            return
        call_id = hub.new_call_id()
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
        session = _Session(call_id, call.call_id, transport, rtp, call.source_addr, incoming=call)
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
        transport.set_hold(_direction(offer) in ("sendonly", "inactive"))
        language, mode = self._language_and_mode(call.invite)
        info = CallInfo(call_id=call_id, language=language, channel="sip", mode=mode,  # type: ignore[arg-type]
                        params={"sip_call_id": call.call_id, "caller": who, "codec": codec.name})
        clog.info("SIP call answered from %s (%s, %s, %s)", who, codec.name, language, mode)
        transport.start()
        session.task = asyncio.create_task(self._run_call(session, hub, ticket, info), name=f"sip-call-{call_id}")

    def _language_and_mode(self, invite: SipRequest) -> tuple[str, str]:
        lang = (invite.get_header("x-carecall-language") or "").strip().lower()
        if lang not in ("zh", "en"):
            user = invite.uri.split(":", 1)[-1].split("@")[0].lower()
            lang = next((x for x in ("zh", "en") if user == x or user.endswith("-" + x)), self.config.default_language)
        mode = (invite.get_header("x-carecall-mode") or "triage").strip().lower()
        return lang, mode if mode in ("triage", "followup") else "triage"

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

    async def _run_call(self, session: _Session, hub: Any, ticket: Ticket, info: CallInfo) -> dict[str, Any]:
        clog = call_log("carecall.telephony.sip", session.call_id)
        result: dict[str, Any] = {}
        try:
            result = await hub.run(ticket, info, session.transport) or {}
        except CallsBusy as exc:
            clog.warning("no line for the call: %s", exc.reason)
        except Exception as exc:
            clog.error("call ended with an error: %r", exc)
        finally:
            ticket.release()
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
            codec, dtmf_pt, _ = _codec_choice(offer)
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
        session.transport.set_hold(_direction(offer) in ("sendonly", "inactive"))

    def _on_bye(self, call: IncomingCall, request: SipRequest) -> None:
        self._end_session(call.call_id, "caller hung up")

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        call_id = request.call_id or ""
        if call_id in self._tickets:  # still being answered: _answer sees this and gives the line back
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

    async def _hangup_session(self, session: _Session, reason: str) -> None:
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

    # --- outbound calls ----------------------------------------------------------------------
    def _offer(self, rtp_port: int) -> SdpMessage:
        sdp = build_sdp(self.config.host, rtp_port, 0, "PCMU", dtmf_payload_type=101,
                        advertised_ip=self.config.public_host or None)
        audio = sdp.audio
        assert audio is not None
        audio.formats.insert(1, "8")
        audio.attributes["rtpmap"].insert(1, "8 PCMA/8000")
        from aiosipua.sdp import _extract_codecs

        audio.codecs = _extract_codecs(audio)
        return sdp

    def _target(self, number_or_uri: str) -> tuple[str, tuple[str, int]]:
        if number_or_uri.startswith(("sip:", "sips:")):
            hostport = number_or_uri.split("@", 1)[-1].split(";")[0]
            uri = number_or_uri
        else:
            if not self.config.trunk:
                raise ValueError("no SIP trunk configured (CARECALL_SIP_TRUNK) to dial a number through")
            hostport = self.config.trunk
            uri = f"sip:{number_or_uri}@{hostport}"
        host, _, port = hostport.partition(":")
        return uri, (host, int(port or 5060))

    async def dial(self, number_or_uri: str, *, language: str = "zh", mode: str = "followup",
                   params: dict[str, Any] | None = None, ring_timeout: float = 30.0) -> DialResult:
        """Call a patient and run the call through the hub until it ends."""
        if self.uac is None:
            raise RuntimeError("SIP endpoint not started")
        hub = self._get_hub()
        if hub is None:
            return DialResult("failed", reason="worker busy")
        try:
            ticket = hub.reserve("sip")
        except CallsBusy as exc:
            return DialResult("failed", reason=f"worker busy: {exc.reason}")
        try:
            uri, remote = self._target(number_or_uri)
        except ValueError:
            ticket.release()
            raise
        self.sources.admit_peer(remote[0])  # its answers must get through the allow-list
        try:
            return await self._dial(ticket, uri, remote, number_or_uri, language=language, mode=mode,
                                    params=params, ring_timeout=ring_timeout)
        finally:
            ticket.release()
            self.sources.forget_peer(remote[0])

    async def _dial(self, ticket: Ticket, uri: str, remote: tuple[str, int], number_or_uri: str, *, language: str,
                    mode: str, params: dict[str, Any] | None, ring_timeout: float) -> DialResult:
        assert self.uac is not None
        hub = self._get_hub()
        who = mask_number(number_or_uri.split("@")[0].removeprefix("sip:"))
        call_id = hub.new_call_id()
        clog = call_log("carecall.telephony.sip", call_id)
        box: list[RtpTransport] = []
        rtp = await open_rtp(self.config.host, self.config.rtp_ports, lambda p: box[0].on_packet(p) if box else None,
                             clog)
        auth = SipDigestAuth(self.config.username, self.config.password) if self.config.username else None
        from_uri = f"sip:{self.config.from_user}@{self.advertised_host}"
        out = self.uac.send_invite(from_uri, uri, remote, sdp_offer=self._offer(rtp.local_port),
                                   user_agent=self.config.user_agent, auth=auth)
        sip_call_id = out.call_id
        self._early[sip_call_id] = rtp
        got_response = self._outbound_pending.setdefault(sip_call_id, asyncio.Event())
        retransmit = asyncio.create_task(self._retransmit_invite(out, remote, got_response))
        clog.info("dialling %s", who)
        started = time.monotonic()
        try:
            await out.wait_answered(ring_timeout)
        except TimeoutError:
            clog.info("no answer from %s after %.0f s; cancelling", who, ring_timeout)
            with contextlib.suppress(Exception):
                out.cancel(self.uac)
            rtp.close()
            return DialResult("no-answer", reason="ring timeout")
        except RuntimeError:
            code = out._reject_code
            rtp.close()
            outcome = "busy" if code in (486, 600) else "no-answer" if code in (408, 480, 487) else "rejected"
            clog.info("call to %s not answered: %d %s", who, code, out._reject_reason)
            return DialResult(outcome, code, out._reject_reason)
        finally:
            retransmit.cancel()
            self._outbound_pending.pop(sip_call_id, None)
            self._early.pop(sip_call_id, None)
        answer = out.sdp_answer
        try:
            if answer is None:
                raise SdpNegotiationError("no SDP answer")
            codec, dtmf_pt, _ = _codec_choice(answer)
        except SdpNegotiationError as exc:
            clog.warning("answered without usable SDP (%s); hanging up", exc)
            out.hangup(self.uac)
            rtp.close()
            return DialResult("failed", 200, str(exc))
        self._set_remote(rtp, answer, codec, dtmf_pt, remote[0])
        transport = RtpTransport(call_id=call_id, rtp=rtp, codec=codec, dtmf_pt=dtmf_pt,
                                 input_rate=self.config.input_rate,
                                 on_hangup=lambda reason: self._hangup_by_id(sip_call_id, reason),
                                 on_transfer=lambda target: self._transfer(sip_call_id, target))
        box.append(transport)
        session = _Session(call_id, sip_call_id, transport, rtp, remote, outgoing=out)
        self.sessions[sip_call_id] = session
        transport.start()
        info = CallInfo(call_id=call_id, language=language, channel="sip", mode=mode,  # type: ignore[arg-type]
                        params={"sip_call_id": sip_call_id, "direction": "outbound", "codec": codec.name,
                                **(params or {})})
        clog.info("answered (%s)", codec.name)
        result = await self._run_call(session, hub, ticket, info)
        return DialResult("answered", 200, result=result, duration_s=time.monotonic() - started, call_id=call_id)

    async def _retransmit_invite(self, out: Any, remote: tuple[str, int], got: asyncio.Event) -> None:
        """Timer A (RFC 3261 §17.1.1.2): resend the INVITE until any response arrives."""
        assert self._transport is not None
        interval = T1
        for _ in range(6):
            try:
                await asyncio.wait_for(got.wait(), interval)
                return
            except TimeoutError:
                self._transport.send(out.invite, remote)
                interval *= 2
