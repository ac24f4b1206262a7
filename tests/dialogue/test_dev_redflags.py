"""The DEV red-flag set (tests/dialogue/dev_redflags, DEV data, tuned on; README there): every triage red flag
of prompts/red_flags.yaml is raised, or confirmed in one question, on each of its lay phrasings in both
languages; and its adversarial non-emergencies rarely alarm (an emergency disposition or a red-flag
confirmation: the measure `test_blind_eval` bounds on the blind sets)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from dialogue.evaluation.cases import StatementCase, load_cases
from dialogue.evaluation.metrics import Row
from dialogue.evaluation.statements import evaluate_statements
from dialogue.knowledge import knowledge

DIR = Path(__file__).parent / "dev_redflags"
LANGS = ("en", "zh")
# measured when the set was finished (branch redflags): 1 of 40 + 0 of 24 (en), 1 of 40 + 0 of 24 (zh) —
# a dementia patient's long-standing evening confusion is read as new confusion in both languages
KNOWN_ALARMED = {"drf-en-ne30", "drf-zh-ne29"}
# an emergency disposition from a protocol, not the red flag: "PV bleed at 12 weeks with severe abdo pain" is
# not read as a pregnancy ("at 12 weeks with" is not a gestation in dialogue/slots.py), severe abdominal pain
# sends it to the emergency department anyway
KNOWN_SILENT = {"drf-en-r2-em06"}


def _raw(lang: str) -> list[dict[str, object]]:
    text = (DIR / f"statements_{lang}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=2)
def _rows(lang: str) -> dict[str, Row]:
    kn = knowledge()
    cases = load_cases(DIR / f"statements_{lang}.jsonl", "statement", kn)
    assert all(isinstance(c, StatementCase) for c in cases)
    return {r.id: r for r in evaluate_statements(cases, kn)}  # type: ignore[arg-type]


def _triage_flags() -> list[str]:
    return sorted(rf.id for rf in knowledge().red_flags if "triage" in rf.modes)


def test_every_triage_red_flag_has_lay_phrasings_in_both_languages() -> None:
    for lang in LANGS:
        named = {str(c["red_flag"]) for c in _raw(lang) if c.get("gold3") == "em"}
        assert set(_triage_flags()) <= named, (lang, sorted(set(_triage_flags()) - named))
        assert named <= set(_triage_flags()), (lang, sorted(named - set(_triage_flags())))


@pytest.mark.parametrize("flag", _triage_flags())
@pytest.mark.parametrize("lang", LANGS)
def test_each_red_flag_fires_or_is_confirmed_on_its_lay_phrasings(lang: str, flag: str) -> None:
    rows = _rows(lang)
    ids = [str(c["id"]) for c in _raw(lang) if c.get("red_flag") == flag]
    assert len(ids) >= 4
    missed = [i for i in ids if rows[i].under_triaged_emergency]
    assert not missed, missed
    # the red flag itself (or another emergency) is raised, or a red-flag confirmation would be asked
    silent = [i for i in ids if not (rows[i].red_flags or rows[i].confirmation_asked) and i not in KNOWN_SILENT]
    assert not silent, silent


@pytest.mark.parametrize("lang", LANGS)
def test_adversarial_non_emergencies_rarely_alarm(lang: str) -> None:
    rows = [r for r in _rows(lang).values() if r.gold3 in ("ne", "sc")]
    alarmed = {r.id for r in rows if r.pred3 == "em" or r.confirmation_asked}
    assert len(rows) == 64
    assert len(alarmed) <= 0.10 * len(rows), sorted(alarmed)
    assert alarmed <= KNOWN_ALARMED, sorted(alarmed - KNOWN_ALARMED)
