"""The DEV false-alarm set (tests/dialogue/dev_false_alarms, DEV data, tuned on): red-flag words out of time,
intent or idiom must rarely alarm, and its lay emergencies must not be under-triaged. The bounds are the
figures measured when the set was written (2026-12-02, helper "unsure"), so a change that raises the burden
or drops an emergency here fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogue.evaluation.cases import load_cases
from dialogue.evaluation.statements import evaluate_statements
from dialogue.knowledge import knowledge

DIR = Path(__file__).parent / "dev_false_alarms"
# none left: 宝宝才一个多月 is read as an age since branch redflags (dialogue/slots.py)
KNOWN_UNDER: set[str] = set()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_dev_false_alarms_rarely_alarm_and_lay_emergencies_are_not_missed(lang: str) -> None:
    kn = knowledge()
    rows = evaluate_statements(load_cases(DIR / f"statements_{lang}.jsonl", "statement", kn), kn)  # type: ignore[arg-type]
    non_em = [r for r in rows if r.gold3 != "em"]
    alarmed = [r.id for r in non_em if r.pred3 == "em" or r.confirmation_asked]
    assert len(non_em) == 60
    # measured: en 6 of 60 (10%), zh 4 of 60 (6.7%)
    assert len(alarmed) <= 0.10 * len(non_em), alarmed
    missed = {r.id for r in rows if r.under_triaged_emergency}
    assert missed <= KNOWN_UNDER, missed
