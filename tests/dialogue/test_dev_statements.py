"""The dated DEV statement sets (tests/dialogue/dev_<date>/: DEV data, tuned on; a README in each says who
wrote it and how it stopped being blind): their emergencies are raised, or confirmed in one question, from
the caller's first words in both languages (known exceptions named), and their non-emergencies rarely
alarm. A regression guard for the fixes made on them, not a measure of generalisation: the blind sets are."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from dialogue.evaluation.cases import load_cases
from dialogue.evaluation.metrics import Row
from dialogue.evaluation.statements import evaluate_statements
from dialogue.knowledge import knowledge

HERE = Path(__file__).parent
# set -> (emergencies per language, under-triaged emergencies still known, non-emergencies that may alarm)
SETS = {
    "dev_20261206": (60, set(), 3),
    # an arm that "just went, like it's not mine" (en); 台动 for 胎动, a two-character slip (zh)
    "dev_20261206b": (36, {"b1206-en-005", "b1206-zh-022"}, 5),
    "dev_20261208": (36, set(), 5),
}


@lru_cache(maxsize=8)
def _rows(name: str, lang: str) -> list[Row]:
    kn = knowledge()
    return evaluate_statements(load_cases(HERE / name / f"statements_{lang}.jsonl", "statement", kn), kn)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_every_emergency_is_raised_or_confirmed_from_the_first_words(name: str, lang: str) -> None:
    emergencies, known, _ = SETS[name]
    rows = _rows(name, lang)
    assert sum(r.gold3 == "em" for r in rows) == emergencies
    under = {r.id for r in rows if r.under_triaged_emergency}
    assert under <= known, sorted(under - known)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_its_non_emergencies_rarely_alarm(name: str, lang: str) -> None:
    _, _, most = SETS[name]
    rows = [r for r in _rows(name, lang) if r.gold3 in ("ne", "sc")]
    alarmed = [r.id for r in rows if r.pred3 == "em" or r.confirmation_asked]
    assert len(alarmed) <= most, alarmed  # an emergency or a confirmation; the limits are what was measured
