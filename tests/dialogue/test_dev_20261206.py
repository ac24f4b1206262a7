"""The DEV set of 2026-12-06 (tests/dialogue/dev_20261206: DEV data, tuned on; README and MEASURED.md there):
its emergencies are raised, or confirmed in one question, from the caller's first words in both languages
(one known exception), and its non-emergencies rarely alarm. A regression guard for that day's fixes, not
a measure of generalisation: the blind sets are."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from dialogue.evaluation.cases import load_cases
from dialogue.evaluation.metrics import Row
from dialogue.evaluation.statements import evaluate_statements
from dialogue.knowledge import knowledge

DIR = Path(__file__).parent / "dev_20261206"
# heart-failure signs after discharge told in a triage call ("put on half a stone since I came out of
# hospital, waking up gasping"): heart_failure_signs is a follow-up red flag only (prompts/red_flags.yaml)
KNOWN_UNDER = {"d1206-en-058"}


@lru_cache(maxsize=2)
def _rows(lang: str) -> list[Row]:
    kn = knowledge()
    return evaluate_statements(load_cases(DIR / f"statements_{lang}.jsonl", "statement", kn), kn)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_emergency_is_raised_or_confirmed_from_the_first_words(lang: str) -> None:
    rows = _rows(lang)
    assert sum(r.gold3 == "em" for r in rows) == 60
    under = {r.id for r in rows if r.under_triaged_emergency}
    assert under <= KNOWN_UNDER, sorted(under - KNOWN_UNDER)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_its_non_emergencies_rarely_alarm(lang: str) -> None:
    rows = [r for r in _rows(lang) if r.gold3 in ("ne", "sc")]
    alarmed = [r.id for r in rows if r.pred3 == "em" or r.confirmation_asked]
    assert len(rows) == 30
    assert len(alarmed) <= 3, alarmed  # measured: 3 of 30 in each language (an emergency or a confirmation)
