"""Every fixed phrase the bot may say, per language, most urgent first: what the TTS warm start
renders at server start-up (voice.tts.warm). Pure data access over the loaded knowledge."""

from __future__ import annotations

import string
from collections.abc import Mapping

from dialogue.protocols import Knowledge, knowledge

FIRST = ("greeting", "ask_complaint", "ack", "red_flag_intro", "red_flag_ambulance", "red_flag_emergency",
         "offer_transfer", "not_understood_yes_no", "silence_reprompt")
NOT_SPOKEN = ("sbar_", "num_")


def _fill(text: str, emergency: str) -> str | None:
    """The text with {emergency} filled, or None when it has other blanks (filled per call)."""
    names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
    if names - {"emergency"}:
        return None
    return text.format(emergency=emergency) if names else text


def fixed_phrases(emergency_numbers: Mapping[str, str], kn: Knowledge | None = None) -> dict[str, list[str]]:
    kn = kn or knowledge()
    out: dict[str, list[str]] = {}
    for lang, phrases in kn.phrases.items():
        number = emergency_numbers.get(lang, "")
        texts = phrases.texts
        ordered = [texts[k] for k in FIRST if k in texts]
        ordered += [v for k, v in texts.items() if k not in FIRST and not k.startswith(NOT_SPOKEN)]
        ordered += list(phrases.dispositions.values())
        for ptext in kn.protocol_text.get(lang, {}).values():
            ordered += list(ptext.questions.values()) + ([ptext.safety_net] if ptext.safety_net else [])
        follow = kn.followup_text.get(lang)
        if follow is not None:
            ordered += list(follow.texts.values()) + list(follow.questions.values())
        filled = (_fill(t, number) for t in ordered)
        out[lang] = list(dict.fromkeys(t for t in filled if t))
    return out
