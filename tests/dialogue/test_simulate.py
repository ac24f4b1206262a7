"""`carecall simulate` and the evaluation kit: the simulated caller answers from a case's truth, whole
conversations run through the real `TriageDialogue`, and the CLIs (`simulate`, `eval`, `eval --protocol`)
print a JSON summary whose values are computed from small known case files."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dialogue.evaluation.caller import SimulatedCaller, say_number
from dialogue.evaluation.cases import CaseError, ConversationCase, load_cases
from dialogue.evaluation.metrics import Row, percentile, summarise_conversations
from dialogue.evaluation.pending import pending_of
from dialogue.factory import build_dialogue_factory
from dialogue.knowledge import knowledge
from dialogue.simulate import converse, expected_red_flags
from dialogue.slots import slot_answer
from dialogue.triage import PendingQuestion, TriageDialogue
from voice.conversation import CallerUtterance
from voice.events import CallInfo

ROOT = Path(__file__).resolve().parents[2]
CARECALL = ROOT / ".venv" / "bin" / "carecall"
SUMMARY_KEYS = {
    "n", "accuracy3", "accuracy5", "under_triaged_emergencies", "over_triaged", "accuracy3_by_gold",
    "confirmation_asked", "confirmation_on_non_emergencies", "department_accuracy",
}


def case(**kw: Any) -> ConversationCase:
    base: dict[str, Any] = {"id": "c", "lang": "en", "opening": "my chest hurts", "truth": {}}
    return ConversationCase.model_validate({**base, **kw})


def write(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CARECALL), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


# --- the simulated caller ------------------------------------------------------------------------------
def test_caller_answers_from_the_truth_and_says_i_dont_know_for_the_rest() -> None:
    kn = knowledge()
    c = SimulatedCaller(case(truth={"present": ["chest_pain", "sweating"], "absent": ["pain_radiating"]}), kn)
    yes = c.reply(PendingQuestion("chest_pain.sweating", "yes_no", ("sweating",)), "").text
    assert yes.lower().startswith(("yes", "yeah"))
    no = c.reply(PendingQuestion("chest_pain.radiating", "yes_no", ("pain_radiating",)), "").text
    assert kn.lexicons and no.lower().startswith(("no", "nope"))
    unknown = c.reply(PendingQuestion("chest_pain.heart", "yes_no", ("heart_disease",)), "")
    assert unknown.text in ("I don't know", "I'm not sure", "no idea, sorry") and unknown.counted
    # the caller's own words for a finding go with the "yes"
    c = SimulatedCaller(case(truth={"present": ["sweating"]}, phrasings={"sweating": "I'm dripping"}), kn)
    assert c.reply(PendingQuestion("chest_pain.sweating", "yes_no", ("sweating",)), "").text == "yes, I'm dripping"


def test_caller_closed_world_bundles_and_derived_findings() -> None:
    kn = knowledge()
    t = {"present": ["headache"], "age": 0.1, "numbers": {"temp_c": 38.4}, "rest": "absent"}
    c = SimulatedCaller(case(truth=t, lang="zh", opening="宝宝发烧"), kn)
    bundled = PendingQuestion("screen.life", "yes_no", ("chest_pain", "breathless", "face_droop"))
    assert c.reply(bundled, "").text in ("没有", "没有，都没有", "不是", "没有的")
    assert c.verdict("fever") == "yes" and c.verdict("infant_under_3m") == "yes"  # derived from the numbers
    either = c.reply(PendingQuestion("x", "yes_no", ("chest_pain", "headache")), "").text
    assert either.startswith(("有", "是", "对", "嗯"))
    # a man is never pregnant, whatever the rest of the truth leaves open
    assert SimulatedCaller(case(truth={"sex": "m"}), kn).verdict("pregnant") == "no"


def test_caller_numbers_in_lay_words_that_the_engine_reads_back() -> None:
    assert say_number("temp_c", 38.5, "zh") == "三十八度五"
    assert say_number("age_years", 0.17, "zh") == "九周" and say_number("age_years", 0.5, "zh") == "六个月"
    for slot, v in [("temp_c", 38.5), ("age_years", 67), ("age_years", 0.5), ("pain_score", 8), ("duration_hours", 48)]:
        for lang in ("zh", "en"):
            said = say_number(slot, v, lang)
            tolerance = 0.1 if slot != "age_years" else 0.05
            assert slot_answer(slot, said, lang) == pytest.approx(v, abs=tolerance), (slot, said)


def test_caller_guesses_from_the_question_text_when_the_dialogue_gives_no_state() -> None:
    c = SimulatedCaller(case(truth={"present": ["chest_pain"], "rest": "absent"}), knowledge())
    r = c.reply(None, "Do you have any chest pain?")
    assert r.fallback and "chest_pain" in r.findings and r.text.lower().startswith(("yes", "yeah"))
    r = c.reply(PendingQuestion("screen.x", "yes_no"), "Any trouble breathing?")
    assert r.fallback and r.text.lower().startswith(("no", "nope"))


def test_cases_are_validated_with_file_line_and_field(tmp_path: Path) -> None:
    kn = knowledge()
    row = {"id": "a", "lang": "en", "opening": "x", "truth": {"present": ["chest_ache"]}}
    bad = write(tmp_path, "bad.jsonl", [row])
    with pytest.raises(CaseError, match=r"bad.jsonl:1 \(case a\).*chest_ache"):
        load_cases(bad, "conversation", kn)
    bad = write(tmp_path, "bad2.jsonl", [{"id": "a", "lang": "fr", "text": "x"}])
    with pytest.raises(CaseError, match=r"bad2.jsonl:1.*lang"):
        load_cases(bad, "statement", kn)
    bad = write(tmp_path, "bad3.jsonl", [{"id": "a", "lang": "en", "text": "x", "gold": "emergency", "gold3": "sc"}])
    with pytest.raises(CaseError, match="not gold3"):
        load_cases(bad, "statement", kn)


# --- whole conversations with the real TriageDialogue ------------------------------------------------------
async def test_pending_question_follows_the_dialogue() -> None:
    factory = build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911", "zh": "120"}, llm_capable=False)
    d = factory(CallInfo(call_id="t", language="en", channel="text", mode="triage", params={}))
    assert isinstance(d, TriageDialogue)
    [o async for o in d.opening()]
    assert d.pending_question() == PendingQuestion("consent", "yes_no")
    [o async for o in d.respond(CallerUtterance("yes", 1))]
    assert d.pending_question() == PendingQuestion("complaint", "free")
    [o async for o in d.respond(CallerUtterance("I have chest pain", 2))]
    asked = pending_of(d)  # the protocol's question, or a confirmation of the same finding once suspicions exist
    assert asked is not None and asked.findings == ("pain_radiating",) and asked.kind in ("yes_no", "confirm")


async def test_a_conversation_reaches_the_red_flag_only_through_the_questions() -> None:
    kn = knowledge()
    factory = build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911", "zh": "120"}, llm_capable=False)
    c = case(id="arm", truth={"present": ["chest_pain", "pain_radiating"], "age": 70, "rest": "absent"},
             phrasings={"pain_radiating": "it goes down my left arm"}, gold="emergency_ambulance",
             departments=["emergency"])
    conv = await converse(c, factory, kn)
    assert conv.row.pred == "emergency_ambulance" and conv.row.red_flags == ["cardiac_chest_pain"]
    assert conv.row.questions == 1  # "does it spread to your arm...?" "yes, it goes down my left arm"
    assert ("caller", "yes, it goes down my left arm") in conv.turns
    assert conv.row.expected_red_flags == ["cardiac_chest_pain"] and conv.fallbacks == 0
    truth = {"present": ["sore_throat"], "age": 30, "durations": 48, "rest": "absent"}
    zh = case(id="zh", lang="zh", opening="嗓子疼", truth=truth)
    conv = await converse(zh, factory, kn)
    assert (conv.row.pred, conv.row.department, conv.row.end_reason) == ("self_care", "ent", "completed")
    # saliva, breathing, fever, how long; then the emergency screen's two bundles before a self-care disposition
    assert conv.row.questions == 6 and expected_red_flags(zh, kn) == []
    assert conv.result.screen_questions == 2


def test_summary_questions_and_red_flag_recall() -> None:
    rows = [
        Row("a", "en", "emergency", "emergency", "emergency", "em", ["emergency"], ["suicide_risk"], questions=2,
            expected_red_flags=["suicide_risk"]),
        Row("b", "en", "consultation", "psychiatry", "emergency", "em", ["emergency"], [], questions=4,
            expected_red_flags=["suicide_risk"], confirmation_asked=True),
        Row("c", "zh", "self_care", "ent", "self_care", "sc", ["ent"], [], questions=9),
    ]
    s = summarise_conversations(rows)
    assert s["accuracy3"] == round(2 / 3, 4) and s["under_triaged_emergencies"] == 1  # no excuse in a conversation
    assert s["questions_median"] == 4.0 and s["questions_p95"] == 9.0
    assert s["red_flag_recall"]["suicide_risk"] == {"n": 2, "recall": 0.5, "missed": ["b"]}
    assert s["department_accuracy"] == round(2 / 3, 4) and s["confirmation_on_non_emergencies"] == 0.0
    assert percentile(list(range(1, 21)), 0.95) == 19.0


# --- the CLIs, as a user runs them -------------------------------------------------------------------------
SIM_CASES = [
    {"id": "arm", "lang": "en", "opening": "my chest hurts", "gold": "emergency_ambulance",
     "departments": ["emergency"],
     "truth": {"present": ["chest_pain", "pain_radiating"], "age": 70, "rest": "absent"}},
    {"id": "throat", "lang": "zh", "opening": "嗓子疼", "gold3": "sc", "departments": ["ent"],
     "truth": {"present": ["sore_throat"], "age": 30, "durations": 48, "rest": "absent"}},
    {"id": "wrongdept", "lang": "zh", "opening": "嗓子疼", "gold": "consultation", "departments": ["cardiology"],
     "truth": {"present": ["sore_throat"], "age": 30, "durations": 48, "rest": "absent"}},
]


def test_simulate_cli_json_summary(tmp_path: Path) -> None:
    p = run("simulate", str(write(tmp_path, "sim.jsonl", SIM_CASES)), "--json", "--show")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    s = json.loads(lines[-1])
    assert SUMMARY_KEYS | {"questions_median", "questions_p95", "red_flag_recall"} <= set(s)
    assert s["n"] == 3 and s["accuracy3"] == round(2 / 3, 4) and s["accuracy5"] == 0.5
    assert s["under_triaged_emergencies"] == 0 and s["department_accuracy"] == round(2 / 3, 4)
    assert s["questions_median"] == 6.0 and s["questions_p95"] == 6.0  # 1, 6 and 6 (4 protocol + 2 screen bundles)
    assert s["red_flag_recall"] == {"cardiac_chest_pain": {"n": 1, "recall": 1.0, "missed": []}}
    assert any(line.startswith("arm\ten\temergency_ambulance\tdept=emergency") for line in lines)
    assert any("caller: 嗓子疼" in line for line in lines)  # --show prints the conversation


def test_eval_cli_department_and_confirmation_keys(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "lang": "en", "text": "crushing chest pain spreading to my jaw", "gold": "emergency_ambulance",
         "departments": ["emergency"]},
        {"id": "b", "lang": "zh", "text": "流鼻涕，打喷嚏，不发烧", "gold3": "sc", "departments": ["ent"]},
        {"id": "c", "lang": "zh", "text": "流鼻涕，打喷嚏，不发烧", "gold3": "sc", "departments": ["dermatology"]},
        {"id": "d", "lang": "en", "text": "sore throat"},
    ]
    p = run("eval", str(write(tmp_path, "st.jsonl", rows)), "--json")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == len(rows) + 2
    s = json.loads(lines[-1])
    assert SUMMARY_KEYS <= set(s)
    assert s["accuracy3"] == 1.0 and s["department_accuracy"] == round(2 / 3, 4) and s["department_n"] == 3
    assert s["confirmation_on_non_emergencies"] == 0.0 and s["under_triaged_emergencies"] == 0
    assert lines[1].startswith("b\tzh\tself_care\tdept=ent\tgold=sc\tok\tdept_ok")
    assert "dept_miss(want dermatology)" in lines[2]


def test_eval_protocol_runs_that_protocols_cases() -> None:
    p = run("eval", "--protocol", "chest_pain", "--json")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    s = json.loads(lines[-1])
    n = len((ROOT / "prompts" / "cases" / "chest_pain.jsonl").read_text(encoding="utf-8").splitlines())
    assert s["n"] == n >= 4 and all(line.startswith("chest_pain-") for line in lines[:n])


def test_every_protocol_has_its_own_cases_in_both_languages_with_both_urgencies() -> None:
    kn = knowledge()
    for pid in kn.protocols:
        cases = load_cases(ROOT / "prompts" / "cases" / f"{pid}.jsonl", "statement", kn)
        assert {c.lang for c in cases} == {"zh", "en"}, pid
        assert all(c.departments and c.gold for c in cases), pid
        if pid not in ("skin_lesion", "ear", "nose_sinus", "urinary", "general"):  # no emergency picture of their own
            assert {c.gold3_or_derived for c in cases} >= {"em"} and len({c.gold3_or_derived for c in cases}) > 1, pid


def test_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    p = run("eval", "--protocol", "no_such_protocol")
    assert p.returncode == 2 and "unknown protocol" in p.stderr
    broken = tmp_path / "broken.jsonl"
    first = '{"id": "a", "lang": "en", "opening": "x", "truth": {"present": ["nonsense"]}}'
    broken.write_text(first + "\n{oops\n", encoding="utf-8")
    p = run("simulate", str(broken))
    assert p.returncode == 2 and "broken.jsonl:2: not JSON" in p.stderr and "Traceback" not in p.stderr
    p = run("simulate")
    assert p.returncode == 2 and "FILE" in p.stderr


@pytest.mark.models
def test_simulate_voice_through_the_real_server(tmp_path: Path) -> None:
    """One caller spoken by the project's English voice, heard by the server's Whisper, over a live call."""
    case = {"id": "voice-arm", "lang": "en", "opening": "my chest hurts", "gold": "emergency_ambulance",
            "departments": ["emergency"], "truth": {"present": ["chest_pain", "pain_radiating"], "age": 70,
                                                     "rest": "absent"},
            "phrasings": {"pain_radiating": "it goes down my left arm"}}
    p = subprocess.run([str(CARECALL), "simulate", str(write(tmp_path, "v.jsonl", [case])), "--voice", "--json",
                        "--show"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "CARECALL_DATA_DIR": str(tmp_path / "data")})
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["n"] == 1 and s["under_triaged_emergencies"] == 0 and s["accuracy5"] == 1.0
    assert s["red_flag_recall"]["cardiac_chest_pain"]["recall"] == 1.0 and s["questions_median"] == 1.0
    heard = [line for line in p.stdout.splitlines() if line.strip().startswith("caller:")]
    assert any("arm" in line.lower() for line in heard)  # what the recogniser heard, not what was typed


# --- checks (emergency screen, confirmations, read-backs) read by their fields ------------------------
@dataclass
class _Item:
    findings: list[str]
    general: str | None = None
    slot: str | None = None


@dataclass
class _Screen:
    data: Any


def _checks_dialogue(check: Any) -> Any:
    items = {"chest": _Item(["pain_radiating", "sweating"], "chest_pain"),
             "breathing": _Item(["severe_breathless"], "breathless"), "age": _Item([], slot="age_years")}
    texts = {"en": SimpleNamespace(items={"chest": SimpleNamespace(phrase="chest pain or pressure"),
                                          "breathing": SimpleNamespace(phrase="trouble breathing")})}
    return SimpleNamespace(check=check, lang="en", screen=_Screen(SimpleNamespace(items=items, text=texts)),
                           facts=SimpleNamespace(num=lambda slot: 38.0))


def test_pending_checks_are_read_by_their_fields_and_answered_from_the_truth() -> None:
    kn = knowledge()
    truth = {"present": ["chest_pain", "sweating"], "rest": "absent", "numbers": {"temp_c": 38.5}}
    c = SimulatedCaller(case(truth=truth, phrasings={"sweating": "I'm all clammy"}), kn)
    ask = SimpleNamespace(items=("chest", "breathing"), answer_kind="yes_no", kind="bundle")
    bundle = pending_of(_checks_dialogue(ask))
    assert set(bundle.findings) == {"chest_pain", "pain_radiating", "sweating", "breathless", "severe_breathless"}
    assert c.reply(bundle, "").text == "yes, I'm all clammy"
    which = pending_of(_checks_dialogue(SimpleNamespace(items=("chest", "breathing"), answer_kind="free",
                                                        kind="which")))
    assert c.reply(which, "").text == "chest pain or pressure"
    follow = pending_of(_checks_dialogue(SimpleNamespace(items=("breathing",), answer_kind="yes_no", kind="follow")))
    assert follow.findings == ("severe_breathless",) and c.reply(follow, "").text.lower().startswith(("no", "nope"))
    number = pending_of(_checks_dialogue(SimpleNamespace(items=("age",), answer_kind="number", kind="number")))
    assert number.slot == "age_years"
    confirm = pending_of(_checks_dialogue(SimpleNamespace(finding="sweating", red_flag=True)))
    r = c.reply(confirm, "")
    assert r.confirmation and r.text == "yes, I'm all clammy"
    # "I heard 38, is that right?" when the caller said 38.5: no, and the figure again
    heard = pending_of(_checks_dialogue(SimpleNamespace(kind="number", key="temp_c", before=None)))
    assert c.reply(heard, "").text in ("no, it was 38.5", "no, about 38.5 degrees")
    denial = pending_of(_checks_dialogue(SimpleNamespace(kind="negation", key="pain_radiating", before=None)))
    assert c.reply(denial, "").text.lower().startswith(("no", "nope"))
    # a dialogue without checks: its own pending_question()
    assert pending_of(SimpleNamespace(pending_question=lambda: PendingQuestion("consent", "yes_no"))).id == "consent"
