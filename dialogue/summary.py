"""SBAR handover for the nurse, in the call's language, from templates (prompts/<lang>/dialogue.yaml)."""

from __future__ import annotations

import re

from dialogue.facts import Facts
from dialogue.knowledge import Knowledge
from voice.languages import languages
from voice.result import Sbar

_PLAIN = re.compile(r"^[\w\u4e00-\u9fff ]+$")


def finding_label(fid: str, lang: str, kn: Knowledge) -> str:
    ph = kn.phrases[lang]
    if fid in ph.findings:
        return ph.findings[fid]
    if not languages.or_fallback(lang).spaced:  # a plain hanzi lexicon phrase is a name; English ones are patterns
        for p in kn.lexicons[lang].findings.get(fid, []):
            if _PLAIN.match(p):
                return p
    return kn.catalog.findings.get(fid, fid)


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def sbar(
    lang: str,
    kn: Knowledge,
    facts: Facts,
    *,
    situation: str,
    red_flags: list[str],
    alarms: list[str],
    advice: str,
    actions: list[str],
) -> Sbar:
    t = kn.phrases[lang].texts
    none = t["sbar_none"]
    sep = languages.or_fallback(lang).list_separator
    skip = {"pain", "child", "baby", "child_under_16", "under_5y", "under_1y"}
    present = [finding_label(f, lang, kn) for f, v in facts.findings.items() if v.present and f not in skip]
    absent = [finding_label(f, lang, kn) for f, v in facts.findings.items() if not v.present and f not in skip]
    numbers = sep.join(t[f"num_{k}"].format(v=_fmt(e.value)) for k, e in facts.slots.items() if f"num_{k}" in t)
    background = (
        t["sbar_background"]
        .format(present=sep.join(present) or none, absent=sep.join(absent) or none, numbers=numbers)
        .strip()
    )
    rf_labels = [kn.phrases[lang].red_flags.get(r, r) for r in red_flags]
    assessment = t["sbar_assessment"].format(red_flags=sep.join(rf_labels) or none, alarms=sep.join(alarms) or none)
    recommendation = (
        t["sbar_recommendation"].format(advice=advice, actions=sep.join(actions) or t["action_none"]).strip()
    )
    text = "\n".join(
        f"{k}: {v}" for k, v in (("S", situation), ("B", background), ("A", assessment), ("R", recommendation))
    )
    return Sbar(situation, background, assessment, recommendation, text)
