"""What a new SIP request meets before aiosipua keeps any state (issue 10 #5; the checks themselves are
`telephony.sip.guard`'s): a new INVITE takes a line through `voice.admission.admit` (the one admission
of every entry point: language and mode checked, a line reserved on the hub, the call id made) or is
refused statelessly (486 busy, 503 draining or over budget, 400 for an unsupported language or mode),
and the refusal is remembered, so that its retransmissions get the same answer and its ACK is absorbed;
a bad CSeq gets a 400 and one log line; OPTIONS is answered 503 while the worker is not ready, so a
Kamailio dispatcher routes around it. `SipEndpoint` holds one `Intake`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiosipua import SipRequest, SipResponse, SipUAC, SipUAS

from telephony.sip.guard import Refusal, RefusedInvites
from voice.admission import AdmissionRefused, Admitted, CallRequest, admit
from voice.languages import LANGUAGES

log = logging.getLogger("carecall.telephony.sip")


def refusal_status(refused: AdmissionRefused) -> tuple[int, str]:
    """The SIP answer to a refused admission: 486 when every line is in use, 503 (try another worker)
    while this one starts, drains or is over its latency budget, 400 for an unsupported language or mode."""
    if refused.busy:
        return (486, "Busy Here") if refused.at_capacity else (503, "Service Unavailable")
    phrases = {"bad_language": "Unsupported Language", "bad_mode": "Unsupported Mode"}
    return 400, phrases.get(refused.code, "Bad Request")


class Intake:
    def __init__(self, get_hub: Callable[[], Any], default_language: str) -> None:
        self._get_hub = get_hub
        self.default_language = default_language
        self.refused = RefusedInvites()  # INVITEs refused statelessly, for their retransmissions
        self.admitted: dict[str, Admitted] = {}  # SIP Call-ID → the call admitted for it, until answered
        self.bad_cseq = 0
        self._refusal_log = 0.0
        self._refusals_unlogged = 0

    def take_line(self, uas: SipUAS, uac: SipUAC | None, invite: SipRequest) -> bool:
        """For a new INVITE: admit the call (a line reserved in the hub) before aiosipua stores anything.
        A refused INVITE is answered statelessly here and never reaches aiosipua. False: refused."""
        call_id = invite.call_id or ""
        if call_id in uas._calls or (uac is not None and call_id in uac._calls):
            return True  # a re-INVITE in a dialog: aiosipua checks its tags and CSeq
        earlier = self.refused.get(call_id)
        if earlier is not None:  # a retransmission of an INVITE we refused: the same answer again
            uas._send_error(invite, earlier.status, earlier.reason)
            return False
        if "tag=" in (invite.headers.get_first("to") or ""):
            uas._send_error(invite, 481, "Call/Transaction Does Not Exist")
            return False
        if call_id in self.admitted:
            return True  # still being answered (a new branch on the same Call-ID)
        language, mode = language_and_mode(invite)
        request = CallRequest("sip", language=language, mode=mode, default_language=self.default_language)
        try:
            self.admitted[call_id] = admit(self._get_hub(), request)
        except AdmissionRefused as exc:
            status, reason = refusal_status(exc)
            self._refuse(uas, invite, status, reason, exc.message)
            return False
        return True

    def _refuse(self, uas: SipUAS, invite: SipRequest, status: int, reason: str, why: str) -> None:
        vias = invite.via
        self.refused.add(invite.call_id or "", Refusal(vias[0].branch or "" if vias else "", status, reason))
        extra = {"Retry-After": "5"} if status == 503 else None
        uas._send_error(invite, status, reason, extra_headers=extra)
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_log >= 5.0:  # a flood of INVITEs: one line per 5 s, with the count
            log.warning("refused %d SIP call(s) with %d %s: %s", self._refusals_unlogged, status, reason, why)
            self._refusal_log = now
            self._refusals_unlogged = 0

    def absorb_ack(self, uas: SipUAS, ack: SipRequest) -> bool:
        """The ACK for a final error we sent statelessly: nothing to do."""
        call_id = ack.call_id or ""
        return call_id not in uas._calls and self.refused.get(call_id) is not None

    def bad(self, uas: SipUAS, msg: SipRequest | SipResponse, addr: tuple[str, int], problem: str) -> None:
        """A message with a bad CSeq: one log line (then every 1000th), a 400 for a request that can be
        answered, nothing else."""
        self.bad_cseq += 1
        if self.bad_cseq % 1000 == 1:
            log.warning("ignoring a SIP message from %s:%d: %s (%d so far)", addr[0], addr[1], problem, self.bad_cseq)
        if isinstance(msg, SipRequest) and msg.method.upper() != "ACK" and msg.headers.get_first("via"):
            uas._send_error(msg, 400, "Bad CSeq")

    def answer_options(self, uas: SipUAS, request: SipRequest) -> None:
        """Capability query, and the dispatcher's health probe: 503 while this worker is not ready."""
        hub = self._get_hub()
        state = hub.readiness() if hub is not None else None
        if state is None or not state.ready:
            uas._send_error(request, 503, "Service Unavailable",
                            extra_headers={"Retry-After": "5",
                                           "Warning": f'399 carecall "{state.reason if state else "starting"}"'})
            return
        uas._send_error(request, 200, "OK", extra_headers={"Allow": ", ".join(uas._handlers),
                                                         "Accept": "application/sdp"})


def is_retransmission(uas: SipUAS, invite: SipRequest) -> bool:
    """An INVITE of a call aiosipua already has, on the same branch: absorbed."""
    existing = uas.get_call(invite.call_id or "")
    if existing is None:
        return False
    old, new = existing.invite.via, invite.via
    same = bool(old and new and old[0].branch == new[0].branch)
    if same:
        log.debug("absorbed a retransmitted INVITE")
    return same


def language_and_mode(invite: SipRequest) -> tuple[str | None, str | None]:
    """What the INVITE asks for, unchecked (`admit` checks it): the X-CareCall-Language header, else
    a request-URI user that is a language or ends in `-<language>` (`sip:en@…`, `sip:clinic-zh@…`),
    else None (the configured default); the X-CareCall-Mode header, else None (triage)."""
    lang = (invite.get_header("x-carecall-language") or "").strip().lower() or None
    if lang is None:
        user = invite.uri.split(":", 1)[-1].split("@")[0].lower()
        lang = next((x for x in LANGUAGES if user == x or user.endswith("-" + x)), None)
    mode = (invite.get_header("x-carecall-mode") or "").strip().lower() or None
    return lang, mode
