"""Conversation QA on recorded calls with known defects: each call is made by the real dialogue from
scripted caller lines (tests/records/conversations.py), stored through the real CallRecorder on
SQLite and PostgreSQL, and the report the recorder wrote at call end is read back from the database."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from records.models import Call, QaCheck
from records.qa import CHECK_IDS, run_qa
from records.qa.view import CallView, TurnView
from records.recorder import CallRecorder
from records.repository import get_call
from tests.records.conversations import (
    CHEST_PAIN,
    CLEAN_TRIAGE,
    FOLLOWUP_LINES,
    FOLLOWUP_PARAMS,
    Script,
    scripted_call,
)
from voice.events import CallEnded, Turn, TurnRecorded
from voice.result import CallResult


def record(database, events) -> dict:
    recorder = CallRecorder(database)
    for event in events:
        recorder.write(event)
    call_id = events[0].call_id
    with database.session() as s:
        call = get_call(s, call_id)
        rows = {r.check: r.result for r in s.scalars(select(QaCheck).where(QaCheck.call_id == call_id))}
        assert call.qa_report is not None, "the recorder writes a QA report when the call ends"
        assert rows == {c["check"]: c["result"] for c in call.qa_report["checks"]}, "one row per check"
        return {
            "result": call.qa_result,
            "checks": {c["check"]: c for c in call.qa_report["checks"]},
            "tags": [t.tag for t in call.tags],
            "turns": {t.idx: t for t in call.turns},
        }


def check(report: dict, name: str) -> tuple[str, str, list[dict]]:
    c = report["checks"][name]
    return c["result"], c["summary"], c["evidence"]


def test_a_clean_triage_call_passes_every_check(database):
    report = record(database, scripted_call("qa-clean", CLEAN_TRIAGE))
    assert set(report["checks"]) == set(CHECK_IDS)
    failing = {k: v["summary"] for k, v in report["checks"].items() if v["result"] in ("warn", "fail")}
    assert failing == {} and report["result"] == "pass"
    result, summary, evidence = check(report, "critical_questions")
    assert result == "pass" and "asked or settled" in summary
    assert all(e["turn"] is not None and e["words"].startswith("asked:") for e in evidence)
    assert check(report, "consent")[2][0] == {"turn": 0, "words": check(report, "consent")[2][0]["words"]}
    assert report["checks"]["identity"]["result"] == "na" and report["checks"]["transfer"]["result"] == "na"


def test_a_skipped_critical_question_fails_and_names_it(database):
    events = scripted_call("qa-skip", CLEAN_TRIAGE)
    end = events[-1]
    assert isinstance(end, CallEnded)
    asked = tuple(q for q in end.result.questions_asked if q != "sore_throat.breathing")
    assert len(asked) < len(end.result.questions_asked), "the clean call asked the breathing question"
    # a dialogue that never asked it: the question is gone from the transcript and from the result
    skipped_turns = [e for e in events if isinstance(e, TurnRecorded) and "breathing" in e.turn.text.lower()]
    findings = tuple(f for f in end.result.findings if f.id != "breathless")
    events = [e for e in events[:-1] if e not in skipped_turns] + [
        CallEnded(end.call_id, end.reason, dataclasses.replace(end.result, questions_asked=asked, findings=findings))
    ]
    report = record(database, events)
    result, summary, evidence = check(report, "critical_questions")
    assert result == "fail" and "sore_throat.breathing" in summary
    assert any(e["words"].startswith("NOT asked: Is your breathing difficult") for e in evidence)
    assert report["result"] == "fail"


def test_an_interrupted_emergency_instruction_fails(database):
    clean = record(database, scripted_call("qa-er-ok", CHEST_PAIN))
    assert check(clean, "emergency_advice")[0] == "pass"
    advice_turn = next(i for i, t in clean["turns"].items() if "ambulance now" in t.text)
    report = record(database, scripted_call("qa-er-cut", CHEST_PAIN, script=Script(interrupt_at={advice_turn: 0.3})))
    assert report["turns"][advice_turn].interrupted, "the recorder kept the barge-in"
    result, summary, evidence = check(report, "emergency_advice")
    assert result == "fail" and "never heard in full" in summary
    assert evidence[0]["turn"] == advice_turn and evidence[0]["words"].startswith("cut off, caller heard only:")
    assert "ambulance" not in evidence[0]["words"], "the evidence is what the caller heard, not what was meant"
    assert report["result"] == "fail"


def test_a_slow_turn_is_a_latency_failure_with_its_turn(database):
    report = record(database, scripted_call("qa-slow", CLEAN_TRIAGE, script=Script(latency_ms={4: 6200.0})))
    result, summary, evidence = check(report, "latency")
    assert result == "fail" and "slowest 6200 ms" in summary
    assert evidence == [{"turn": 4, "words": "voice-to-voice 6200 ms (limit 5000 ms)"}]
    warn = record(database, scripted_call("qa-slowish", CLEAN_TRIAGE, script=Script(latency_ms={6: 2900.0})))
    assert check(warn, "latency")[0] == "warn" and check(warn, "latency")[2][0]["turn"] == 6


def test_a_misheard_word_is_marked_with_its_turn_and_probability(database):
    script = Script(uncertain={3: (("throat", 0.21), ("days", 0.93))})
    report = record(database, scripted_call("qa-word", CLEAN_TRIAGE, script=script))
    assert report["turns"][3].uncertain_words == [{"word": "throat", "p": 0.21}, {"word": "days", "p": 0.93}]
    result, _summary, evidence = check(report, "uncertain_words")
    assert result == "warn" and evidence == [{"turn": 3, "words": "throat (p=0.21)"}]
    assert report["result"] == "warn"


def test_a_recording_notice_cut_off_by_a_barge_in_fails_consent(database):
    report = record(database, scripted_call("qa-notice", CLEAN_TRIAGE, script=Script(interrupt_at={0: 0.2})))
    result, summary, evidence = check(report, "consent")
    assert result == "fail" and "cut off" in summary and evidence[0]["turn"] == 0


def test_long_silence_and_repeat_requests(database):
    lines = ["yes", "sorry, what did you say?", "I have had a sore throat for two days", *CLEAN_TRIAGE[2:]]
    report = record(database, scripted_call("qa-quiet", lines, script=Script(gap_before_s={3: 25.0})))
    result, _summary, evidence = check(report, "silence")
    assert result == "fail" and evidence[0]["turn"] == 3 and "caller silent" in evidence[0]["words"]
    result, _, evidence = check(report, "repeats")
    assert result == "warn" and evidence == [{"turn": 3, "words": "sorry, what did you say?"}]


@pytest.mark.parametrize("works", [True, False])
def test_a_transfer_asked_for_and_whether_it_happened(database, works):
    events = scripted_call(
        f"qa-transfer-{works}", ["yes", "I want to speak to a nurse"], script=Script(transfer_works=works)
    )
    report = record(database, events)
    result, summary, evidence = check(report, "transfer")
    assert evidence[0] == {"turn": 3, "words": "I want to speak to a nurse"}
    assert (result, "put through" in summary) == (("pass", True) if works else ("fail", True))
    if works:
        assert "outcome:transferred" in report["tags"]


def test_under_triage_is_caught_by_replaying_the_findings(database):
    events = [e for e in scripted_call("qa-under", CHEST_PAIN) if type(e).__name__ != "ActionTaken"]
    end = events[-1]
    assert isinstance(end, CallEnded)
    wrong = dataclasses.replace(end.result, disposition="consultation", red_flags=())
    events[-1] = CallEnded(end.call_id, "completed", wrong)
    report = record(database, events)
    result, _, evidence = check(report, "disposition")
    words = [e["words"] for e in evidence]
    assert result == "fail"
    assert "red flag the findings raise but the call did not: cardiac_chest_pain" in words
    assert "under-triage: the findings call for emergency_ambulance" in words


def test_guard_trips_on_what_the_bot_said(database):
    events = scripted_call("qa-guard", CLEAN_TRIAGE)
    bad = Turn(3, "bot", "It sounds like tonsillitis, take 400 mg ibuprofen.", 9.0, 11.0)
    events = [TurnRecorded(e.call_id, bad) if isinstance(e, TurnRecorded) and e.turn.index == 3 else e for e in events]
    result, _, evidence = check(record(database, events), "guard")
    assert result == "fail" and evidence[0]["turn"] == 3
    assert {"dose", "drug", "diagnosis"} <= set(evidence[0]["words"].split(":")[0].split(", "))


def test_follow_up_calls_check_identity_consent_and_screening(database):
    report = record(database, scripted_call("qa-fu", FOLLOWUP_LINES, mode="followup", params=FOLLOWUP_PARAMS))
    assert check(report, "identity")[0] == "pass" and check(report, "consent")[0] == "pass"
    assert check(report, "critical_questions")[0] == "pass"
    assert "followup:wound" in report["tags"]  # "yes" to a red, hot wound
    stranger = record(database, scripted_call("qa-fu-no", ["no", "no"], mode="followup", params=FOLLOWUP_PARAMS))
    assert check(stranger, "identity")[:2] == (
        "pass",
        "identity not confirmed; the call ended without health questions",
    )
    assert check(stranger, "consent")[0] == "na" and check(stranger, "critical_questions")[0] == "na"
    assert stranger["tags"] == ["outcome:not_reached"]


def test_a_mandarin_red_flag_call(database):
    lines = ["好的", "我胸口疼", "是的，疼到左胳膊"]
    report = record(database, scripted_call("qa-zh", lines, language="zh"))
    assert check(report, "emergency_advice")[0] == "pass", report["checks"]["emergency_advice"]
    assert check(report, "consent")[0] == "pass"
    assert "complaint:chest_pain" in report["tags"] and "red_flag:cardiac_chest_pain" in report["tags"]


def test_a_malformed_result_gives_warnings_not_a_lost_record(database):
    events = scripted_call("qa-bad", CLEAN_TRIAGE)
    end = events[-1]
    # a stored row of the wrong shape reads field by field; what is malformed reads as its default
    malformed = CallResult.from_json({"findings": [{"id": 3, "evidence": "x"}], "complaints": "??",
                                      "numbers": {"temp_c": "hot"}, "outcomes": []})  # fmt: skip
    events[-1] = CallEnded(end.call_id, "completed", malformed)
    report = record(database, events)
    assert report["result"] in ("pass", "warn", "fail") and set(report["checks"]) == set(CHECK_IDS)
    with database.session() as s:
        assert s.get(Call, "qa-bad").status == "ended"


def test_checks_are_pure_functions_of_a_call_view():
    t = [
        TurnView(0, "bot", "Hello. This call is recorded for your safety. Is it all right to continue?",
                 "Hello. This call is", True, 0.0, 1.0),
        TurnView(1, "caller", "yes", "yes", False, 1.5, 2.0),
    ]  # fmt: skip
    view = CallView("v1", "triage", "en", "completed", None, (), CallResult(mode="triage"), False, {}, tuple(t))
    report = run_qa(view)
    assert report.get("consent").result == "fail" and report.result == "fail"
    healed = dataclasses.replace(view, turns=(dataclasses.replace(t[0], interrupted=False, heard=t[0].text), t[1]))
    assert run_qa(healed).get("consent").result == "pass"
