"""Outbound calls of the SIP endpoint (a mixin of `SipEndpoint`): INVITE with PCMU/PCMA offers,
Timer A retransmission, ACK of failure responses, early media, and the call run through the hub on a
line taken before dialling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from aiosipua import SdpMessage, SipDigestAuth, build_sdp
from aiosipua.sdp_negotiate import SdpNegotiationError

from telephony.common import call_log, mask_number
from telephony.sip.rtp import open_rtp
from telephony.sip.session import T1, DialResult, Session, codec_choice
from telephony.sip.transport import RtpTransport
from voice.admission import AdmissionRefused, Admitted, CallRequest, admit

if TYPE_CHECKING:
    from telephony.sip.endpoint import SipEndpoint

    _Base = SipEndpoint
else:
    _Base = object


class OutboundCalls(_Base):
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
        if self.uac is None:
            raise RuntimeError("SIP endpoint not started")
        try:
            admitted = admit(self._get_hub(), CallRequest("sip", language=language, mode=mode, params=params))
        except AdmissionRefused as exc:
            return DialResult("failed", reason=f"worker busy: {exc.message}" if exc.busy else exc.message)
        with admitted:  # the line goes back however the dial ends (no-op once the call ran on it)
            uri, remote = self._target(number_or_uri)
            self.sources.admit_peer(remote[0])  # its answers must get through the allow-list
            try:
                return await self._dial(admitted, uri, remote, number_or_uri, ring_timeout=ring_timeout)
            finally:
                self.sources.forget_peer(remote[0])

    async def _dial(self, admitted: Admitted, uri: str, remote: tuple[str, int], number_or_uri: str, *,
                    ring_timeout: float) -> DialResult:
        assert self.uac is not None
        who = mask_number(number_or_uri.split("@")[0].removeprefix("sip:"))
        call_id = admitted.info.call_id
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
            codec, dtmf_pt, _ = codec_choice(answer)
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
        session = Session(call_id, sip_call_id, transport, rtp, remote, outgoing=out)
        self.sessions[sip_call_id] = session
        transport.start()
        admitted.add_params(sip_call_id=sip_call_id, direction="outbound", codec=codec.name)
        clog.info("answered (%s)", codec.name)
        result = await self._run_call(session, admitted)
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
