"""The engine on the blind sets (tests/dialogue/blind/: written fresh by the evaluation work, never read
by those who tune the understanding), against issue 9's thresholds. Where today's engine misses a
threshold the test is marked xfail with the figures measured on main; the lead removes the mark once
the engine meets it. A test here must never be "fixed" by editing the blind sets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest

from dialogue.evaluation.cases import load_cases
from dialogue.evaluation.metrics import Row, summarise, summarise_conversations
from dialogue.evaluation.statements import evaluate_statements
from dialogue.knowledge import knowledge
from dialogue.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
BLIND = Path(__file__).resolve().parent / "blind"
SHARED = ROOT.parent / "shared"
if not SHARED.exists():  # a worktree sits one level deeper than the main checkout
    SHARED = ROOT.parent.parent / "shared"
RED_FLAGS = BLIND / "statements_red_flags.jsonl"
FALSE_ALARMS = BLIND / "statements_false_alarms.jsonl"
DEPARTMENTS = BLIND / "statements_departments.jsonl"
REGISTERS = BLIND / "statements_registers.jsonl"  # regional Mandarin, ASR slips, nurses' words, rambling
CONVERSATIONS = BLIND / "conversations.jsonl"
ZH_DEPT_TEST = BLIND / "zh_department_test.jsonl"
# CLINICAL.md's red flags that apply to a triage call, as prompts/red_flags.yaml names them
TRIAGE_FLAGS = {rf.id for rf in knowledge().red_flags if "triage" in rf.modes}


def statements(path: Path) -> list[Row]:
    return evaluate_statements(load_cases(path, "statement", knowledge()))  # type: ignore[arg-type]


def figures(rows: list[Row]) -> str:
    s = summarise(rows)
    missed = [r.id for r in rows if r.under_triaged_emergency]
    return f"{json.dumps({k: s[k] for k in ('n', 'accuracy3', 'under_triaged_emergencies')})} missed={missed}"


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_triage_red_flag_has_blind_lay_statements_in_both_languages() -> None:
    rows = _jsonl(RED_FLAGS)
    assert all(r["why"] and r["gold3"] == "em" for r in rows)
    # the dated blind sets (tests/dialogue/blind_<date>/) name the red flag of each emergency they hold
    for path in sorted(BLIND.parent.glob("blind_*/statements_*.jsonl")):
        rows += [r for r in _jsonl(path) if r.get("red_flag")]
    covered = {(r["red_flag"], r["lang"]) for r in rows}
    missing = sorted((f, lang) for f in TRIAGE_FLAGS for lang in ("zh", "en") if (f, lang) not in covered)
    assert not missing, missing


@pytest.mark.xfail(
    strict=False,
    reason=(
        "main 2026-12-03 (after redflags): 1 of 64 red-flag statements under-triaged (accuracy3 92.2%): "
        "cardiac_chest_pain zh-2"
    ),
)
def test_no_emergency_under_triaged_on_blind_red_flag_statements() -> None:
    rows = statements(RED_FLAGS)
    assert summarise(rows)["under_triaged_emergencies"] == 0, figures(rows)


@pytest.mark.xfail(
    strict=False,
    reason=(
        "main 2026-12-03 (after redflags): 3 of the 14 emergencies in the register set under-triaged: "
        "zh-06, zh-07, zh-08 (accuracy3 79.2%)"
    ),
)
def test_no_emergency_under_triaged_in_untuned_registers() -> None:
    rows = statements(REGISTERS)
    assert summarise(rows)["under_triaged_emergencies"] == 0, figures(rows)


def test_red_flag_confirmation_on_at_most_15_percent_of_non_emergency_statements() -> None:
    """Issue 9's confirmation burden, over every non-emergency blind statement (0 until the engine
    suspects anything: the figure is wired so that it counts from the day it does)."""
    rows = [r for p in (FALSE_ALARMS, DEPARTMENTS, REGISTERS) for r in statements(p) if r.gold3 != "em"]
    s = summarise(rows)
    assert s["confirmation_on_non_emergencies"] is not None and s["confirmation_on_non_emergencies"] <= 0.15


@pytest.mark.xfail(
    strict=False,
    reason=(
        "main 2026-12-03 (after redflags): 1 of 56 conversations under-triaged (accuracy3 98.2%): "
        "zh-toddler-battery"
    ),
)
def test_no_emergency_under_triaged_in_blind_conversations() -> None:
    convs = asyncio.run(simulate(load_cases(CONVERSATIONS, "conversation", knowledge())))  # type: ignore[arg-type]
    s = summarise_conversations([c.row for c in convs])
    missed = [c.row.id for c in convs if c.row.under_triaged_emergency]
    assert s["under_triaged_emergencies"] == 0, (s["accuracy3"], missed)


def test_false_alarms_rarely_raise_or_confirm_a_red_flag() -> None:
    """Red-flag words in the past, as questions, about treatment: an emergency disposition or a red-flag
    confirmation on at most 15% of these non-emergencies (issue 9: confirmation on <= 15%)."""
    rows = statements(FALSE_ALARMS)
    alarmed = [r.id for r in rows if r.pred3 == "em" or r.confirmation_asked]
    assert len(alarmed) <= 0.15 * len(rows), alarmed


@pytest.mark.xfail(
    strict=False,
    reason=(
        "main 2026-12-03: accuracy3 83.1% on the 148 blind statements (en 85.1%, zh 81.1%)"
    ),
)
def test_blind_statement_accuracy3_at_least_90_percent() -> None:
    rows = [r for p in (RED_FLAGS, FALSE_ALARMS, DEPARTMENTS, REGISTERS) for r in statements(p)]
    s = summarise(rows)
    assert s["accuracy3"] >= 0.90, s["by_lang"]


def test_department_top1_at_least_85_percent() -> None:
    # main 2026-12-03 (after depts): 96.7% on the blind department statements, 89.8% on the zh TEST split
    s = summarise(statements(DEPARTMENTS))
    t = summarise(statements(ZH_DEPT_TEST))
    assert min(s["department_accuracy"], t["department_accuracy"]) >= 0.85


def test_zh_department_test_split_is_the_sha1_rule() -> None:
    """TEST rows: sha1(question text, utf-8) starts with 0-4; the semantic work tunes on the others."""
    rows = [json.loads(line) for line in ZH_DEPT_TEST.read_text(encoding="utf-8").splitlines()]
    assert rows and all(hashlib.sha1(r["text"].encode("utf-8")).hexdigest()[0] in "01234" for r in rows)
    source = SHARED / "data" / "zh_department_dev.jsonl"
    if not source.exists():
        pytest.skip(f"{source} is not on this machine")
    dev = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    want = [r["id"] for r in dev if hashlib.sha1(r["text"].encode("utf-8")).hexdigest()[0] in "01234"]
    assert [r["id"] for r in rows] == want


def test_semigran45_stays_at_least_95_percent_with_none_under_triaged() -> None:
    path = SHARED / "data" / "semigran45.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    rows = statements(path)
    s = summarise(rows)
    assert s["under_triaged_emergencies"] == 0 and s["accuracy3"] >= 0.95, figures(rows)


def test_blind_cases_cite_their_reason() -> None:
    for path in (RED_FLAGS, FALSE_ALARMS, DEPARTMENTS, REGISTERS, CONVERSATIONS):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            assert row.get("why") and re.match(r"blind-", row["id"]), (path.name, row["id"])
