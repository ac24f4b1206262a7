"""What the SIP endpoint's parts share: its configuration, one call's session, the outcome of an
outbound call, the codec choice from an SDP and where a session's media goes (`set_remote`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiosipua import IncomingCall, SdpMessage
from aiosipua.sdp_negotiate import SdpNegotiationError

from telephony.sip.rtp import RtpSession
from telephony.sip.transport import RtpTransport
from voice import g711

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
class Session:
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


def codec_choice(sdp: SdpMessage) -> tuple[g711.G711, int | None, set[int]]:
    """The first G.711 codec in `sdp`'s audio and its telephone-event payload type."""
    audio = sdp.audio
    if audio is None:
        raise SdpNegotiationError("no audio")
    codec = next((c for c in audio.codecs if c.payload_type in SUPPORTED_PTS), None)
    if codec is None:
        raise SdpNegotiationError("no G.711 codec")
    dtmf = next((c.payload_type for c in audio.codecs if c.encoding_name.lower() == "telephone-event"), None)
    return g711.G711("PCMU" if codec.payload_type == 0 else "PCMA"), dtmf, {codec.payload_type}


def direction(sdp: SdpMessage | None) -> str:
    return sdp.audio.direction if sdp is not None and sdp.audio is not None else "sendrecv"


def set_remote(rtp: RtpSession, sdp: SdpMessage, codec: g711.G711, dtmf_pt: int | None, signalling_host: str,
               policy: str) -> None:
    """Where media goes and may come from. Only the SDP's address by default; `c=0.0.0.0` (or
    port 0) then means no media at all (hold), never "whoever sends first". Latching (symmetric
    RTP, for phones behind NAT) only as configured (`policy`, `SipConfig.rtp_latching`): to the SIP
    peer's own host, or (`any`) to anyone."""
    addr = sdp.rtp_address
    usable = addr is not None and addr[0] not in ("0.0.0.0", "::", "") and addr[1] != 0
    rtp.latch, rtp.latch_hosts = False, None
    if policy == "sdp" or (usable and policy != "signalling"):
        rtp.remote = (addr[0], addr[1]) if usable and addr is not None else None
    else:
        rtp.remote = None
        rtp.latch = True
        if policy == "signalling":
            rtp.latch_hosts = frozenset({signalling_host, *([addr[0]] if usable and addr else [])})
    rtp.payload_types = {codec.payload_type} | ({dtmf_pt} if dtmf_pt is not None else set()) | {101}
