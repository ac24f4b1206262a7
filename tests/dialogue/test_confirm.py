"""Confirmation of suspected findings (issue 9 §2): a suspected red flag is confirmed at once in one short
question in the caller's language; yes escalates, no records it absent, "not sure" or silence counts as
present; never dropped. Other suspicions are confirmed before the disposition. The suspicions come from a
hand-built `Extraction` with `suspected` (the semantic layer's field, until it produces them itself)."""

from __future__ import annotations

import pytest

from dialogue.confirm import confirm_text, red_flag_suspicions, suspect_pictures, would_fire
from dialogue.facts import Facts
from dialogue.knowledge import knowledge
from dialogue.triage import triage_text
from tests.dialogue.screen_driver import Call

FACE = {"en": "my mum's face looks a bit funny", "zh": "我妈妈的脸看着怪怪的"}
SPAN = {"en": "face looks a bit funny", "zh": "脸看着怪怪的"}
CONSENT = {"en": "yes", "zh": "好的"}
YES = {"en": "yes", "zh": "对"}
NO = {"en": "no", "zh": "不是"}
UNSURE = {"en": "I'm not sure", "zh": "不知道"}


async def _suspected_face(lang: str) -> tuple[Call, list[object]]:
    c = Call(lang, {FACE[lang]: [("face_droop", SPAN[lang])]})
    await c.open()
    await c.say(CONSENT[lang])
    out = await c.say(FACE[lang])
    return c, out


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_suspected_red_flag_is_confirmed_at_once_and_yes_escalates(lang: str) -> None:
    c, out = await _suspected_face(lang)
    question = c.last_question()
    assert question == {"en": "So the face looks droopy on one side, is that right?",
                        "zh": "您是说一边的脸歪了、嘴角下垂，对吗？"}[lang]
    assert c.text(out) == question  # nothing else first: no protocol question, no complaint prompt
    assert not c.escalated()
    await c.say(YES[lang])
    assert c.escalated()
    r = c.d.result().to_json()
    assert "stroke_signs" in r["red_flags"] and r["disposition"] == "emergency_ambulance"
    (conf,) = r["confirmations"]
    assert conf["finding"] == "face_droop" and conf["red_flag"] and conf["outcome"] == "confirmed"
    assert conf["question"] == question and conf["asked_turn"] == 2 and conf["answer_turn"] == 3
    face = next(f for f in r["findings"] if f["id"] == "face_droop")
    assert face["present"] and face["source"] == "confirmed" and face["evidence"]["span"] == SPAN[lang]
    assert r["suspected"][0]["status"] == "confirmed"


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_no_records_the_suspected_finding_absent_and_the_call_goes_on(lang: str) -> None:
    c, _ = await _suspected_face(lang)
    await c.say(NO[lang])
    assert not c.escalated() and not c.ended()
    r = c.d.result().to_json()
    face = next(f for f in r["findings"] if f["id"] == "face_droop")
    assert face["present"] is False and face["source"] == "confirmed"
    assert r["confirmations"][0]["outcome"] == "denied"
    assert "face_droop" not in c.d.facts.suspected()


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_not_sure_counts_as_present(lang: str) -> None:
    c, _ = await _suspected_face(lang)
    await c.say(UNSURE[lang])
    assert c.escalated()
    r = c.d.result().to_json()
    assert r["confirmations"][0]["outcome"] == "unsure: treated as present"
    assert next(f for f in r["findings"] if f["id"] == "face_droop")["source"] == "assumed"


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_silence_to_a_red_flag_confirmation_escalates(lang: str) -> None:
    c, _ = await _suspected_face(lang)
    out = await c.silence(1)
    assert c.escalated() and "stroke_signs" in c.d.result().to_json()["red_flags"]
    assert c.d.result().to_json()["confirmations"][0]["answer"] == "no answer"
    assert not c.ended() and out


async def test_an_unclear_answer_is_asked_once_more_then_counts_as_present() -> None:
    c, _ = await _suspected_face("en")
    await c.say("well she was fine this morning")
    assert c.last_question() == "Sorry, I need to be sure: the face looks droopy on one side, yes or no?"
    assert not c.escalated()
    await c.say("hmm, what do you mean")
    assert c.escalated()


async def test_the_caller_s_own_words_answer_the_confirmation() -> None:
    c, _ = await _suspected_face("en")
    await c.say("there's no facial droop, her face is just puffy")
    r = c.d.result().to_json()
    face = next(f for f in r["findings"] if f["id"] == "face_droop")
    assert face["present"] is False and not c.escalated()


async def test_other_suspicions_are_confirmed_before_the_disposition() -> None:
    text = "I've had a sore throat for two days"
    c = Call("en", {text: [("fever", "feel a bit warm")]})
    await c.open()
    await c.say("yes")
    out = await c.say(text)
    assert c.last_question() == "So there is a fever now, is that right?" and not c.escalated()
    assert "saliva" not in c.text(out)
    await c.say("yes")
    assert c.d.facts.present("fever")
    await c.answer_until_done("no")
    r = c.d.result().to_json()
    assert r["confirmations"][0]["finding"] == "fever" and r["confirmations"][0]["red_flag"] is False
    assert r["disposition"] == "consultation"  # sore throat with fever


async def test_an_unsure_non_red_flag_suspicion_is_left_unstated_not_invented() -> None:
    text = "I've had a sore throat for two days"
    c = Call("en", {text: [("fever", "feel a bit warm")]})
    await c.open()
    await c.say("yes")
    await c.say(text)
    await c.say("not sure")
    assert not c.d.facts.known("fever")
    assert c.d.result().to_json()["confirmations"][0]["outcome"] == "unsure: left unstated"


async def test_a_suspected_red_flag_in_an_unclear_answer_comes_before_the_re_asked_question() -> None:
    opening = "I've had a sore throat for two days"
    odd = "well my husband says my face looks odd"
    c = Call("en", {odd: [("face_droop", "my face looks odd")]})
    await c.open()
    await c.say("yes")
    await c.say(opening)
    saliva = c.last_question()
    await c.say(odd)  # neither yes nor no to the protocol question, and a half-heard stroke sign
    assert c.last_question() == "So the face looks droopy on one side, is that right?"
    await c.say("no")
    assert c.last_question() == saliva  # the set-aside question comes back


async def test_suspicions_are_not_asked_once_escalated() -> None:
    text = "chest pain spreading to my left arm and I'm sweating"
    c = Call("en", {text: [("face_droop", "face")]})
    await c.open()
    await c.say("yes")
    await c.say(text)
    assert c.escalated() and not c.d.result().to_json()["confirmations"]
    assert "droopy" not in c.text(c.log)


def _lone_red_flag_findings() -> dict[str, str]:
    """For each red flag, a finding that alone raises it on an empty call (when one exists)."""
    kn = knowledge()
    out: dict[str, str] = {}
    lay = confirm_text()["en"].lay
    for rf in kn.red_flags:
        rule = rf.condition("triage")
        if rule is None:
            continue
        for fid in sorted(rule.finding_ids()):
            if fid in lay and would_fire(Facts(), kn, fid):
                f = Facts()
                f.set_finding(fid, True, 0, "", "")
                from dialogue.engine import red_flags

                f.derive(kn.catalog)
                if rf.id in {h.id for h in red_flags(f, kn)}:
                    out[rf.id] = fid
                    break
    return out


LONE = _lone_red_flag_findings()


def test_most_red_flags_can_be_suspected_from_one_finding() -> None:
    assert len(LONE) >= 12, LONE


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("flag", "finding"), sorted(LONE.items()))
async def test_no_suspected_red_flag_is_ever_dropped(lang: str, flag: str, finding: str) -> None:
    """Whatever the red flag, a suspicion of it is asked at once and an unsure caller is escalated."""
    opening = {"en": "something is not right with my dad", "zh": "我爸爸有点不对劲"}[lang]
    c = Call(lang, {opening: [(finding, "not right")]})
    await c.open()
    await c.say(CONSENT[lang])
    await c.say(opening)
    assert c.d.check is not None and c.d.check.finding == finding, c.last_question()
    assert confirm_text()[lang].lay[finding] in c.last_question()
    await c.say(UNSURE[lang])
    assert c.escalated() and flag in c.d.result().to_json()["red_flags"]


async def test_a_red_flag_made_of_two_half_heard_findings_is_confirmed_and_kept_when_unsure() -> None:
    text = "I feel funny in the middle and it is odd"
    c = Call("en", {text: [("chest_pain", "funny in the middle"), ("pain_radiating", "it is odd")]})
    await c.open()
    await c.say("yes")
    await c.say(text)
    assert c.d.check.finding == "chest_pain" and c.d.check.red_flag
    await c.say("not sure")
    assert not c.escalated() and c.d.check.finding == "pain_radiating"
    await c.say("yes")
    assert c.escalated() and "cardiac_chest_pain" in c.d.result().to_json()["red_flags"]


async def test_a_suspicion_completing_a_red_flag_with_what_was_said_is_asked_at_once() -> None:
    text = "I have chest pain and I feel a bit odd"
    c = Call("en", {text: [("sweating", "a bit odd")]})
    await c.open()
    await c.say("yes")
    await c.say(text)
    assert c.last_question() == "So there is sweating or a cold sweat, is that right?"


def test_every_red_flag_finding_has_lay_wording_in_both_languages() -> None:
    ct = confirm_text()
    for fid in LONE.values():
        assert fid in ct["zh"].lay and fid in ct["en"].lay
    assert set(ct["zh"].lay) == set(ct["en"].lay)


def test_facts_keep_suspicions_until_the_finding_is_stated() -> None:
    f = Facts()
    f.suspect("seizure", 1, "my son had a fit two years ago", "had a fit", 0.61)
    assert f.suspected() == ["seizure"] and not f.present("seizure")
    kn = knowledge()
    assert red_flag_suspicions(f, kn) == ["seizure"]
    f.set_finding("seizure", False, 2, "no", "no")
    assert f.suspected() == [] and f.suspicion("seizure") is not None
    f.suspect("seizure", 3, "again", "fit")  # already stated: not suspected again
    assert f.suspected() == []


def test_single_statement_results_carry_the_suspicions() -> None:
    from dialogue.extract import Mention
    from dialogue.result import assessed
    from tests.dialogue.screen_driver import SuspectingExtraction
    from voice.result import Suspicion

    kn = knowledge()
    facts = Facts()
    facts.add(SuspectingExtraction((), (), (Mention("face_droop", True, "face funny", score=0.7),)), 0, "face funny")
    r = assessed("en", facts, __import__("dialogue.engine").engine.assess(facts, kn), kn)
    assert r.suspected == (Suspicion("face_droop", 0, "face funny", 0.7, red_flag=True),)
    assert r.red_flags == () and r.confirmations == ()
    assert triage_text("sore throat", "en").suspected == ()


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "crushing pain going down my left arm and I'm sweating"),
        ("zh", "疼得往左胳膊上窜，浑身冒冷汗"),
    ],
)
async def test_a_red_flag_picture_without_its_key_finding_asks_it_at_once(lang: str, text: str) -> None:
    """Pain spreading to the arm or jaw with sweating, and not a word of the chest: the red flag's picture
    (prompts/red_flags.yaml `pictures`) makes chest pain a suspected red flag, asked before anything else;
    "yes" escalates. A caller who denies it goes on with the triage."""
    r = triage_text(text, lang)
    assert "cardiac_chest_pain" not in r.red_flags
    assert any(s.finding == "chest_pain" and s.red_flag for s in r.suspected), r.suspected
    c = Call(lang)
    await c.open()
    await c.say(CONSENT[lang])
    out = await c.say(text)
    assert c.d.check.finding == "chest_pain" and c.d.check.red_flag
    assert c.text(out) == c.last_question() == confirm_text()[lang].texts["confirm"].format(
        lay=confirm_text()[lang].lay["chest_pain"])
    assert c.d.facts.suspicion("chest_pain").source == "picture:cardiac_chest_pain"
    await c.say(YES[lang])
    assert c.escalated() and "cardiac_chest_pain" in c.d.result().to_json()["red_flags"]
    denied = Call(lang)
    await denied.open()
    await denied.say(CONSENT[lang])
    await denied.say(text)
    await denied.say(NO[lang])
    assert not denied.escalated() and not denied.ended()
    assert denied.d.facts.findings["chest_pain"].present is False


CARDIAC = ("chest_pain", "cardiac_chest_pain")
STROKE = ("sudden_onset", "stroke_signs")  # two of balance, eyes and a weak limb: did it come on suddenly?


@pytest.mark.parametrize(
    ("picture", "said", "suspected"),
    [
        (CARDIAC, {"pain_radiating": True, "sweating": True}, True),
        (CARDIAC, {"pain_radiating": True, "nausea": True}, True),
        (CARDIAC, {"pain_radiating": True}, False),  # pain down the arm alone is no cardiac picture
        (CARDIAC, {"sweating": True, "nausea": True}, False),  # nor sweating and sickness without it
        (CARDIAC, {"pain_radiating": True, "sweating": True, "chest_pain": False}, False),  # chest already denied
        (STROKE, {"vision_loss": True, "balance_loss": True}, True),
        (STROKE, {"balance_loss": True, "limb_weakness": True}, True),
        (STROKE, {"vision_loss": True}, False),  # one sign alone is asked about by its complaint
        (STROKE, {"vision_loss": True, "balance_loss": True, "sudden_onset": False}, False),  # a slow start said
    ],
)
def test_a_picture_needs_its_whole_picture_and_an_unsettled_key_finding(
    picture: tuple[str, str], said: dict[str, bool], suspected: bool
) -> None:
    ask, flag = picture
    kn = knowledge()
    facts = Facts()
    for fid, present in said.items():
        facts.set_finding(fid, present, 1, "", "")
    suspect_pictures(facts, kn, turn=1)
    assert (ask in facts.suspected()) is suspected
    if suspected:
        assert facts.suspicion(ask).source == f"picture:{flag}"
        assert red_flag_suspicions(facts, kn) == [ask]

