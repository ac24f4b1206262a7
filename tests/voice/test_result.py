"""voice.result.CallResult: the stored form keeps the keys older versions wrote, so their rows read
back field by field, and a malformed row loses a field, never the call."""

from __future__ import annotations

from voice.result import Answer, CallResult, Evidence, Finding, Sbar, ScreenAnswer, Suspicion, TakeoverStep

# a triage row and a follow-up row as dialogue/triage.py and dialogue/followup.py stored them
# before the result was typed (dict results, keys as in records/results.py's old docstring)
OLD_TRIAGE_ROW = {
    "language": "en", "disposition": "emergency_ambulance", "department": "emergency",
    "red_flags": ["cardiac_chest_pain"],
    "findings": [
        {"id": "chest_pain", "present": True, "source": "rules",
         "evidence": {"turn": 1, "text": "my chest hurts", "span": "chest hurts"}},
        {"id": "adult", "present": True, "source": "derived"},
    ],
    "chief_complaint": "chest_pain", "complaints": [{"protocol": "chest_pain", "disposition": "emergency_ambulance"}],
    "numbers": {"age_years": 58.0}, "reasons": ["red flag"], "department_name": "Emergency department",
    "chief_complaint_name": "Chest pain",
    "suspected": [{"finding": "sweating", "turn": 1, "span": "clammy", "score": 0.61, "red_flag": True,
                   "status": "confirmed"}],
    "confirmations": [{"finding": "sweating", "red_flag": True, "question": "Are you sweating?", "asked_turn": 2,
                       "answer": "yes", "answer_turn": 3, "outcome": "confirmed", "score": 0.61}],
    "summary": {"situation": "S", "background": "B", "assessment": "A", "recommendation": "R", "text": "S: S"},
    "mode": "triage", "call_id": "old-1", "escalated": True, "escalation_level": "emergency_ambulance",
    "transferred": False, "questions_asked": ["chest_pain.radiating"], "questions_total": 3,
    "held_for_nurse": False, "end_reason": "red_flag", "llm_disagreements": [],
    "screen": [], "screen_questions": 0, "readbacks": [],
    "takeovers": [{"event": "takeover", "by": "nina", "at_s": 12.5}],
}  # fmt: skip
OLD_FOLLOWUP_ROW = {
    "mode": "followup", "call_id": "old-2", "language": "zh", "identity_confirmed": True, "consent": True,
    "department": "cardiology",
    "outcomes": {
        "pain": {"section": "pain_wound", "answer": None, "value": 8, "turn": 5, "text": "八分", "alarm": True},
        "has_meds": {"section": "medicines", "answer": "yes", "value": True, "turn": 7, "text": "有", "alarm": False},
    },
    "alarms": ["pain"], "red_flags": [], "escalated": True, "escalation_level": "nurse", "transferred": False,
    "findings": [], "action_taken": ["护士回电"], "summary": {"situation": "s", "background": "b",
    "assessment": "a", "recommendation": "r", "text": "S: s"}, "end_reason": "completed", "complete": True,
}  # fmt: skip


def test_an_old_triage_row_reads_field_by_field() -> None:
    r = CallResult.from_json(OLD_TRIAGE_ROW)
    assert (r.mode, r.disposition, r.department, r.chief_complaint_name) == (
        "triage", "emergency_ambulance", "emergency", "Chest pain"
    )
    assert r.finding("chest_pain") == Finding("chest_pain", True, "rules", Evidence(1, "my chest hurts", "chest hurts"))
    assert r.finding("adult") == Finding("adult", True, "derived", None)
    assert r.red_flags == ("cardiac_chest_pain",) and r.numbers == {"age_years": 58.0}
    assert r.suspected[0].status == "confirmed" and r.confirmations[0].answer_turn == 3
    assert r.summary == Sbar("S", "B", "A", "R", "S: S")
    assert r.takeovers == (TakeoverStep("takeover", "nina", 12.5),)


def test_an_old_followup_row_reads_its_answers() -> None:
    r = CallResult.from_json(OLD_FOLLOWUP_ROW)
    assert r.mode == "followup" and r.identity_confirmed and r.consent and r.complete
    assert r.answer("pain") == Answer("pain", "pain_wound", None, 8.0, 5, "八分", alarm=True)
    assert r.answer("has_meds") is not None and r.answer("has_meds").value is True  # type: ignore[union-attr]
    assert r.alarms == ("pain",) and r.actions == ("护士回电",) and r.disposition is None


def test_the_stored_form_keeps_every_key_older_rows_had() -> None:
    for row in (OLD_TRIAGE_ROW, OLD_FOLLOWUP_ROW):
        stored = CallResult.from_json(row).to_json()
        assert set(row) <= set(stored), set(row) - set(stored)
        assert CallResult.from_json(stored) == CallResult.from_json(row)  # a round trip loses nothing
    triage = CallResult.from_json(OLD_TRIAGE_ROW).to_json()
    assert triage["findings"] == OLD_TRIAGE_ROW["findings"]
    assert triage["confirmations"] == OLD_TRIAGE_ROW["confirmations"]
    followup = CallResult.from_json(OLD_FOLLOWUP_ROW).to_json()
    assert followup["outcomes"]["has_meds"] == OLD_FOLLOWUP_ROW["outcomes"]["has_meds"]


def test_a_malformed_or_missing_row_reads_as_defaults_never_raises() -> None:
    assert CallResult.from_json(None, mode="followup") == CallResult(mode="followup")
    r = CallResult.from_json(
        {"findings": [{"id": 3, "evidence": "x"}, "chest_pain"], "complaints": "??", "numbers": {"temp_c": "hot"},
         "outcomes": [], "red_flags": [{"flag": "stroke_signs"}, 7], "summary": "free text", "questions_total": "x"}
    )  # fmt: skip
    assert r.findings == () and r.complaints == () and r.numbers == {} and r.answers == ()
    assert r.red_flags == ("stroke_signs",) and r.summary == Sbar("", "", "", "", "free text")
    assert r.questions_total == 0


def test_every_flat_part_round_trips_and_a_mistyped_field_reads_as_its_default() -> None:
    row = {
        **OLD_TRIAGE_ROW,
        "screen": [{"item": "breathing", "question": "bundle", "asked_turn": 4, "answer_turn": 5,
                    "reason": "airway (before a self_care disposition)", "answer": "no"}],
        "screen_questions": 1,
        "readbacks": [{"kind": "number", "what": "temp_c", "question": "39, is that right?", "asked_turn": 6,
                       "answer": "yes", "answer_turn": 7, "outcome": "kept"}],
        "llm_disagreements": [{"rules_only": ["fever"], "llm_only": [], "conflict": ["cough"],
                               "red_flag_related": []}],
        "takeovers": [{"event": "takeover", "by": "nina", "at_s": 12.5},
                      {"event": "handback", "by": "nina", "at_s": 30.0, "why": "connection ended"}],
    }  # fmt: skip
    r = CallResult.from_json(row)
    assert r.screen[0].item == "breathing" and r.screen[0].answer_turn == 5
    assert r.readbacks[0].what == "temp_c" and r.readbacks[0].outcome == "kept"
    assert r.llm_disagreements[0].conflict == ("cough",) and r.takeovers[1].why == "connection ended"
    stored = r.to_json()
    for key in ("screen", "readbacks", "llm_disagreements", "takeovers", "suspected", "confirmations"):
        assert stored[key] == row[key], key
    assert CallResult.from_json(stored) == r
    bad = CallResult.from_json({"suspected": [{"finding": "sweating", "turn": "two", "score": "high"}, "x"],
                                "screen": [{"item": 7, "asked_turn": 1.0}]})  # fmt: skip
    assert bad.suspected == (Suspicion("sweating", None, "", 0.0, False, "open"),)
    assert bad.screen == (ScreenAnswer("7", "", 1, None, "", ""),)
