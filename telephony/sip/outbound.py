"""Outbound calls of the SIP endpoint (`SipEndpoint.outbound`; `SipEndpoint.dial` is its `dial`): INVITE
with PCMU/PCMA offers, Timer A retransmission, ACK of failure responses, early media, and the call run
through the hub on a line taken before dialling; the responses to what we sent (INVITE, REFER) are
read here before aiosipua reads them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from aiosipua import SdpMessage, SipDigestAuth, SipRequest, SipResponse, build_sdp, parse_sdp
from aiosipua.sdp_negotiate import SdpNegotiationError

from telephony.common import call_log, mask_number
from telephony.sip.rtp import open_rtp
from telephony.sip.session import T1, DialResult, Session, codec_choice, set_remote
from telephony.sip.transport import RtpTransport
from voice.admission import AdmissionRefused, Admitted, CallRequest, admit

if TYPE_CHECKING:
    from telephony.sip.endpoint import SipEndpoint
    from telephony.sip.rtp import RtpSession


class OutboundCalls:
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.config = endpoint.config  # (the endpoint's own: it learns its port at start)
        self._pending: dict[str, asyncio.Event] = {}  # Call-ID → "a response arrived"
        self._early: dict[str, RtpSession] = {}  # outbound calls ringing: early media goes here

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
        """Call a patient and run the call through the hub until it ends (admitted, a line taken,
        before dialling)."""
        if self.endpoint.uac is None:
            raise RuntimeError("SIP endpoint not started")
        try:
            admitted = admit(self.endpoint.get_hub(), CallRequest("sip", language=language, mode=mode, params=params))
        except AdmissionRefused as exc:
            return DialResult("failed", reason=f"worker busy: {exc.message}" if exc.busy else exc.message)
        with admitted:  # the line goes back however the dial ends (no-op once the call ran on it)
            uri, remote = self._target(number_or_uri)
            self.endpoint.sources.admit_peer(remote[0])  # its answers must get through the allow-list
            try:
                return await self._dial(admitted, uri, remote, number_or_uri, ring_timeout=ring_timeout)
            finally:
                self.endpoint.sources.forget_peer(remote[0])

    async def _dial(self, admitted: Admitted, uri: str, remote: tuple[str, int], number_or_uri: str, *,
                    ring_timeout: float) -> DialResult:
        assert self.endpoint.uac is not None
        who = mask_number(number_or_uri.split("@")[0].removeprefix("sip:"))
        call_id = admitted.info.call_id
        clog = call_log("carecall.telephony.sip", call_id)
        box: list[RtpTransport] = []
        rtp = await open_rtp(self.config.host, self.config.rtp_ports, lambda p: box[0].on_packet(p) if box else None,
                             clog)
        auth = SipDigestAuth(self.config.username, self.config.password) if self.config.username else None
        from_uri = f"sip:{self.config.from_user}@{self.endpoint.advertised_host}"
        out = self.endpoint.uac.send_invite(from_uri, uri, remote, sdp_offer=self._offer(rtp.local_port),
                                            user_agent=self.config.user_agent, auth=auth)
        sip_call_id = out.call_id
        self._early[sip_call_id] = rtp
        got_response = self._pending.setdefault(sip_call_id, asyncio.Event())
        retransmit = asyncio.create_task(self._retransmit_invite(out, remote, got_response))
        clog.info("dialling %s", who)
        started = time.monotonic()
        try:
            await out.wait_answered(ring_timeout)
        except TimeoutError:
            clog.info("no answer from %s after %.0f s; cancelling", who, ring_timeout)
            with contextlib.suppress(Exception):
                out.cancel(self.endpoint.uac)
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
            self._pending.pop(sip_call_id, None)
            self._early.pop(sip_call_id, None)
        answer = out.sdp_answer
        try:
            if answer is None:
                raise SdpNegotiationError("no SDP answer")
            codec, dtmf_pt, _ = codec_choice(answer)
        except SdpNegotiationError as exc:
            clog.warning("answered without usable SDP (%s); hanging up", exc)
            out.hangup(self.endpoint.uac)
            rtp.close()
            return DialResult("failed", 200, str(exc))
        set_remote(rtp, answer, codec, dtmf_pt, remote[0], self.config.rtp_latching)
        transport = self.endpoint.rtp_transport(call_id, sip_call_id, rtp, codec, dtmf_pt)
        box.append(transport)
        session = Session(call_id, sip_call_id, transport, rtp, remote, outgoing=out)
        self.endpoint.sessions[sip_call_id] = session
        transport.start()
        admitted.add_params(sip_call_id=sip_call_id, direction="outbound", codec=codec.name)
        clog.info("answered (%s)", codec.name)
        result = await self.endpoint.run_call(session, admitted)
        return DialResult("answered", 200, result=result, duration_s=time.monotonic() - started, call_id=call_id)

    async def _retransmit_invite(self, out: Any, remote: tuple[str, int], got: asyncio.Event) -> None:
        """Timer A (RFC 3261 §17.1.1.2): resend the INVITE until any response arrives."""
        assert self.endpoint.udp is not None
        interval = T1
        for _ in range(6):
            try:
                await asyncio.wait_for(got.wait(), interval)
                return
            except TimeoutError:
                self.endpoint.udp.send(out.invite, remote)
                interval *= 2

    def before_response(self, resp: SipResponse, addr: tuple[str, int]) -> None:
        """A response to what we sent, before aiosipua reads it: our INVITE's (stop its retransmission,
        ACK a failure, early media) or our REFER's (the transfer waits for it)."""
        call_id = resp.call_id or ""
        cseq = resp.cseq
        method = cseq.method.upper() if cseq else ""
        if call_id in self._pending:
            self._pending[call_id].set()
        session = self.endpoint.sessions.get(call_id)
        if method == "REFER" and session is not None and session.refer_status is not None:
            if not session.refer_status.done():
                session.refer_status.set_result(resp.status_code)
        if method == "INVITE" and resp.status_code >= 300 and self.endpoint.uac is not None:
            call = self.endpoint.uac.get_call(call_id)
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
        assert self.endpoint.udp is not None
        ack = SipRequest(method="ACK", uri=invite.uri)
        ack.headers.append("Via", invite.headers.get_first("via") or "")
        ack.headers.set_single("From", invite.headers.get_first("from") or "")
        ack.headers.set_single("Call-ID", invite.headers.get_first("call-id") or "")
        ack.headers.set_single("To", resp.headers.get_first("to") or "")
        seq = invite.cseq.seq if invite.cseq else 1
        ack.headers.set_single("CSeq", f"{seq} ACK")
        ack.headers.set_single("Max-Forwards", "70")
        self.endpoint.udp.send(ack, addr)
