"""Red-flag recall on a table of phrasings, clinical and lay, in both languages; and no false alarms
on ordinary complaints. Every red flag of CLINICAL.md appears at least once per language."""

from __future__ import annotations

import pytest

from dialogue.triage import triage_text

RED_FLAGS = [
    # chest pain spreading / with sweating
    ("en", "I've got chest pain going down my left arm", "cardiac_chest_pain"),
    ("en", "there's a pressure on my chest and I'm all sweaty and clammy", "cardiac_chest_pain"),
    ("en", "my chest feels tight and I'm short of breath", "cardiac_chest_pain"),
    ("zh", "胸口疼，疼到左胳膊和下巴", "cardiac_chest_pain"),
    ("zh", "心口疼得厉害，还出冷汗", "cardiac_chest_pain"),
    ("zh", "胸闷，喘不上气，一身虚汗", "cardiac_chest_pain"),
    # tearing
    ("en", "a sudden tearing pain in my chest going through to my back", "tearing_pain"),
    ("zh", "胸口和后背撕裂一样地疼", "tearing_pain"),
    # stroke (BE-FAST)
    ("en", "his face is drooping on one side", "stroke_signs"),
    ("en", "my mum's speech is slurred and she can't lift her left arm", "stroke_signs"),
    ("en", "he suddenly lost his balance and his vision went blurry", "stroke_signs"),
    ("zh", "我爸嘴歪了，说话也不清楚", "stroke_signs"),
    ("zh", "她左边胳膊突然没劲了，抬不起来", "stroke_signs"),
    ("zh", "突然看东西重影，走路不稳", "stroke_signs"),
    # anaphylaxis
    ("en", "after the bee sting her tongue is swelling", "anaphylaxis"),
    ("en", "I ate shrimp and now my throat is closing up", "anaphylaxis"),
    ("en", "I'm allergic to penicillin, I took some and now I'm wheezing", "anaphylaxis"),
    ("zh", "吃了海鲜以后嘴唇肿了", "anaphylaxis"),
    ("zh", "打了针以后喉咙发紧，喘不上气", "anaphylaxis"),
    # severe breathing
    ("en", "I can't breathe, I can't even finish a sentence", "severe_breathing"),
    ("en", "his lips are turning blue", "severe_breathing"),
    ("zh", "喘得说不出话来", "severe_breathing"),
    ("zh", "孩子嘴唇发紫", "severe_breathing"),
    # collapse, unconscious, seizure, confusion
    ("en", "my husband collapsed and he's not responding", "collapse_or_unconscious"),
    ("en", "she passed out in the kitchen", "collapse_or_unconscious"),
    ("en", "my son is having a seizure", "collapse_or_unconscious"),
    ("en", "grandad is confused and doesn't recognise us today", "new_confusion"),
    ("zh", "我老公突然晕倒了，叫不醒", "collapse_or_unconscious"),
    ("zh", "孩子抽搐了，口吐白沫", "collapse_or_unconscious"),
    ("zh", "老人今天突然糊涂了，说胡话", "new_confusion"),
    ("en", "my 10 month old is floppy and barely responding", "floppy_child"),
    ("en", "my chest is killing me", "cardiac_chest_pain"),
    ("en", "her face has gone lopsided", "stroke_signs"),
    ("en", "he can't move his right side", "stroke_signs"),
    ("en", "my throat feels like it's closing", "anaphylaxis"),
    ("en", "he's out cold on the floor", "collapse_or_unconscious"),
    ("en", "my dad doesn't know what day it is", "new_confusion"),
    ("en", "there's blood everywhere, it's soaked through the towel", "major_bleeding"),
    ("en", "I just want to end it", "suicide_risk"),
    ("en", "my son drank weedkiller", "overdose_or_poisoning"),
    ("en", "my 4 week old feels really hot", "infant_fever"),
    ("en", "grandad isn't breathing properly and his lips look a bit purple", "severe_breathing"),
    ("zh", "心口堵得慌，出了一身汗", "cardiac_chest_pain"),
    ("zh", "一边手脚都动不了", "stroke_signs"),
    ("zh", "嘴巴歪了", "stroke_signs"),
    ("zh", "喉咙像被掐住了，喘不上气", "anaphylaxis"),
    ("zh", "孩子抽起来了", "collapse_or_unconscious"),
    ("zh", "孩子发烧，身上有紫色的点", "non_blanching_rash"),
    ("zh", "血流了一地", "major_bleeding"),
    ("zh", "我想结束自己", "suicide_risk"),
    ("zh", "奶奶怎么摇都没反应", "collapse_or_unconscious"),
    ("en", "I think I'm having a heart attack", "cardiac_chest_pain"),
    ("en", "I think my dad is having a stroke", "stroke_signs"),
    ("en", "high fever, a rash, and the light hurts his eyes", "meningism"),
    ("zh", "我怀疑自己心梗了", "cardiac_chest_pain"),
    ("zh", "我妈好像中风了", "stroke_signs"),
    ("zh", "发高烧，起了皮疹，眼睛怕光", "meningism"),
    ("zh", "孩子软绵绵的，叫他反应很差", "floppy_child"),
    # thunderclap headache, headache with stiff neck
    ("en", "the worst headache of my life came on all of a sudden", "thunderclap_headache"),
    ("en", "bad headache and my neck is stiff", "meningism"),
    ("zh", "突然头疼得要炸了，从来没有这么疼过", "thunderclap_headache"),
    ("zh", "头疼，脖子发硬，低不了头", "meningism"),
    # non-blanching rash with fever
    ("en", "she has a fever and a rash that doesn't fade when I press a glass on it", "non_blanching_rash"),
    ("zh", "孩子发烧，身上有出血点，按压不褪色", "non_blanching_rash"),
    # sepsis
    ("en", "he has a fever, his skin is mottled and he hasn't peed all day", "sepsis_signs"),
    ("zh", "发高烧，皮肤发花，手脚冰凉", "sepsis_signs"),
    # bleeding
    ("en", "I cut my arm and it won't stop bleeding", "major_bleeding"),
    ("en", "I've been vomiting blood", "gi_bleeding"),
    ("en", "my poo is black and tarry", "gi_bleeding"),
    ("zh", "手割破了，血止不住", "major_bleeding"),
    ("zh", "我吐血了", "gi_bleeding"),
    ("zh", "大便是黑色的，像柏油", "gi_bleeding"),
    # pregnancy
    ("en", "I'm 12 weeks pregnant and I'm bleeding", "pregnancy_emergency"),
    ("en", "I'm 34 weeks pregnant and the baby isn't moving as much", "pregnancy_emergency"),
    ("en", "I'm pregnant and have severe pain in my tummy", "pregnancy_emergency"),
    ("zh", "怀孕八周，下面出血了", "pregnancy_emergency"),
    ("zh", "孕36周，今天胎动减少了", "pregnancy_emergency"),
    # clot: one swollen leg plus chest pain or breathlessness
    ("en", "my left leg is swollen and now I'm breathless", "clot_leg_and_chest"),
    ("zh", "右腿肿了好几天，今天胸口疼", "clot_leg_and_chest"),
    # suicide, self-harm, overdose, poisoning
    ("en", "I want to kill myself", "suicide_risk"),
    ("en", "I've been cutting myself", "suicide_risk"),
    ("en", "I took a whole bottle of paracetamol", "overdose_or_poisoning"),
    ("en", "my toddler drank some bleach", "overdose_or_poisoning"),
    ("zh", "我不想活了", "suicide_risk"),
    ("zh", "他吃了一整瓶安眠药", "overdose_or_poisoning"),
    ("zh", "孩子误服了老鼠药", "overdose_or_poisoning"),
    # infants
    ("en", "my 6 week old has a temperature of 38.4", "infant_fever"),
    ("en", "my newborn feels feverish", "infant_fever"),
    ("en", "my 8 month old has no wet nappies since this morning and sunken eyes", "infant_dehydration"),
    ("zh", "宝宝两个月大，发烧三十八度三", "infant_fever"),
    ("zh", "宝宝十个月，拉肚子，尿布是干的，哭没有眼泪", "infant_dehydration"),
    # testicular, DKA, head injury on blood thinners
    ("en", "sudden pain in my testicle", "testicular_sudden"),
    ("en", "my blood sugar is very high and I'm really drowsy", "dka_signs"),
    ("en", "she's on warfarin and she hit her head", "head_injury_anticoagulant"),
    ("zh", "突然睾丸疼", "testicular_sudden"),
    ("zh", "血糖很高，人昏昏沉沉的，还呕吐", "dka_signs"),
    ("zh", "吃华法林的老人摔到头了", "head_injury_anticoagulant"),
    # after discharge
    ("en", "I have a fever and pus is coming out of my wound", "wound_infection_fever"),
    ("en", "I'm on blood thinners and my nose won't stop bleeding", "bleeding_on_anticoagulant"),
    ("zh", "伤口流脓，还发烧", "wound_infection_fever"),
    ("zh", "吃着抗凝药，尿里有血", "bleeding_on_anticoagulant"),
    ("en", "I had my hip replaced last week and now my calf is swollen and sore", "calf_pain_after_discharge"),
    ("en", "since I was discharged on Monday I can't lie flat at night", "heart_failure_signs"),
    ("zh", "上周做完手术出院，这两天小腿肚子疼", "calf_pain_after_discharge"),
    ("zh", "刚出院一个礼拜，体重长了五斤，晚上躺不平", "heart_failure_signs"),
]


@pytest.mark.parametrize(("lang", "text", "flag"), RED_FLAGS, ids=[f"{r[0]}-{i}" for i, r in enumerate(RED_FLAGS)])
def test_red_flag_recall(lang: str, text: str, flag: str) -> None:
    r = triage_text(text, lang)
    assert flag in r.red_flags, (r.red_flags, [f.id for f in r.findings if f.present])
    assert r.disposition in ("emergency", "emergency_ambulance")
    assert r.department == "emergency"


def test_every_red_flag_is_covered_in_both_languages() -> None:
    from dialogue.knowledge import knowledge

    triage_flags = {rf.id for rf in knowledge().red_flags if "triage" in rf.modes}
    for lang in ("zh", "en"):
        covered = {flag for lng, _, flag in RED_FLAGS if lng == lang}
        assert triage_flags - covered == set(), lang


ORDINARY = [
    ("en", "I've had a runny nose and sneezing for two days"),
    ("en", "my back aches after gardening, no numbness and no trouble peeing"),
    ("en", "I have a mild headache, no fever and no stiff neck"),
    ("en", "I feel a bit dizzy when I stand up quickly"),
    ("en", "I took my tablets this morning as usual"),
    ("en", "I need to take my pills before dinner"),
    ("en", "my dad had a heart attack years ago, today I just have a cold"),
    ("en", "no chest pain and my breathing is fine"),
    ("en", "she had a fever yesterday but it has gone away now"),
    ("en", "I'm not breathless, I just have a cough"),
    ("en", "my lips are dry and cracked"),
    ("en", "I have a sore throat but I can swallow fine"),
    ("zh", "有点流鼻涕，打喷嚏，不发烧"),
    ("zh", "腰有点酸，腿不麻，大小便正常"),
    ("zh", "头有点疼，没有发烧，脖子也不硬"),
    ("zh", "嘴唇也不肿，就是身上有点痒"),
    ("zh", "我按时吃药了"),
    ("zh", "没有呼吸困难，就是咳嗽"),
    ("zh", "我有哮喘，最近控制得挺好"),
    ("zh", "担心孩子脱水，但是他尿挺多的，也能喝水"),
    ("zh", "嗓子有点疼，能咽东西"),
]


@pytest.mark.parametrize(("lang", "text"), ORDINARY)
def test_no_red_flag_on_ordinary_complaints(lang: str, text: str) -> None:
    r = triage_text(text, lang)
    assert r.red_flags == (), (r.red_flags, [f.id for f in r.findings if f.present])
    assert r.disposition not in ("emergency", "emergency_ambulance")
