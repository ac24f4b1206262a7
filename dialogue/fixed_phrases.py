"""Every fixed phrase the bot may say, per language, most urgent first: what the TTS warm start
renders at server start-up (voice.tts.warm). Pure data access over the loaded knowledge: the dialogue
texts, the emergency screen, dispositions and departments, protocol questions and safety nets,
confirmations and read-backs, the follow-up's texts; blanks a deployment fixes ({emergency}, the default
{hospital}) filled, phrases with per-call blanks ({name}, a number heard) left to the call."""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping

from dialogue.knowledge import Knowledge, knowledge
from voice.languages import languages

FIRST = ("greeting", "ask_complaint", "ack", "red_flag_intro", "red_flag_ambulance", "red_flag_emergency",
         "offer_transfer", "not_understood_yes_no", "silence_reprompt")
NOT_SPOKEN = ("sbar_", "num_")


def _fill(text: str, blanks: Mapping[str, str]) -> str | None:
    """The text with its blanks filled from `blanks`, or None when it has others (filled per call)."""
    names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
    if names - set(blanks):
        return None
    return text.format(**blanks) if names else text


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def _fixed_sentences(text: str, blanks: Mapping[str, str]) -> str | None:
    """The sentences of a text with per-call blanks that have none ('Is that right?' of 'I heard {value}.
    Is that right?'), which a call cuts as clauses of their own."""
    fixed = [f for s in _SENTENCE_END.split(text) if s and (f := _fill(s, blanks))]
    return " ".join(fixed) or None


def _screen(lang: str) -> list[str]:
    """The emergency screen's questions: each bundle with any two or more of its items, in order (what the
    caller's words left unsettled decides which: a sore throat's own questions settle breathing), each item
    asked alone, each follow-up, and the re-ask."""
    from dialogue.screen import screen_data

    data = screen_data()
    st = data.text[lang]
    out = []
    for b in data.bundles:
        ids = [i for i in b.items if data.items[i].slot is None]
        for n in range(len(ids), 1, -1):  # the whole bundle first: the most common
            for chosen in itertools.combinations(ids, n):
                parts = [st.items[i].phrase for i in chosen]
                joined = st.texts["join"].join(parts[:-1]) + st.texts["join_last"] + parts[-1]
                out.append(st.texts[b.template].format(items=joined))
    for item in st.items.values():
        out += [item.question] + ([item.follow_up] if item.follow_up else [])
    return [*out, st.texts["not_understood"]]


def _confirmations(lang: str) -> list[str]:
    """Confirmation and read-back wording: the fixed sentences, and each finding's confirmation."""
    from dialogue.confirm import confirm_text

    ct = confirm_text()[lang]
    out = [t for k, t in ct.texts.items() if not k.startswith("action_")]
    for lay in ct.lay.values():
        out += [ct.texts[k].format(lay=lay) for k in ("confirm", "confirm_retry", "readback_negation") if k in ct.texts]
    return out


def fixed_phrases(emergency_numbers: Mapping[str, str], kn: Knowledge | None = None) -> dict[str, list[str]]:
    kn = kn or knowledge()
    out: dict[str, list[str]] = {}
    for lang, phrases in kn.phrases.items():
        blanks = {"emergency": emergency_numbers.get(lang, ""),
                  "hospital": languages.or_fallback(lang).default_hospital}
        texts = phrases.texts
        ordered = [texts[k] for k in FIRST if k in texts]
        ordered += [v for k, v in texts.items() if k not in FIRST and not k.startswith(NOT_SPOKEN)]
        ordered += _screen(lang)
        ordered += list(phrases.dispositions.values())
        ordered += [texts["department"].format(department=d) for d in phrases.departments.values()
                    if "department" in texts]
        for ptext in kn.protocol_text.get(lang, {}).values():
            ordered += list(ptext.questions.values()) + ([ptext.safety_net] if ptext.safety_net else [])
        ordered += _confirmations(lang)
        follow = kn.followup_text.get(lang)
        if follow is not None:
            ordered += list(follow.texts.values()) + list(follow.questions.values())
        filled = [_fill(t, blanks) or _fixed_sentences(t, blanks) for t in ordered]
        out[lang] = list(dict.fromkeys(t for t in filled if t))
    return out
