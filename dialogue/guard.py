"""A post-filter on any text a language model wrote for the caller: no diagnoses, no drug names or
doses, never telling a caller to skip care. When it trips, the caller hears the template instead."""

from __future__ import annotations

import re
from dataclasses import dataclass

from voice.languages import languages

_EN = {
    "dose": re.compile(
        r"\b\d+(?:\.\d+)?\s*(?:mg|mcg|µg|ml|g|grams?|milligrams?|tablets?|pills?|capsules?|puffs?|units?|drops?|teaspoons?)\b"
        r"|\b(?:take|taking|give|use|double)\s+(?:a\s+|an\s+|one\s+|two\s+|\d+\s+)?(?:dose|tablet|pill|capsule|puff)s?\b"
        r"|\bevery\s+\d+\s+hours\b|\btimes\s+(?:a|per)\s+day\b",
        re.IGNORECASE,
    ),
    "drug": re.compile(
        r"\b(?:paracetamol|acetaminophen|tylenol|ibuprofen|advil|motrin|aspirin|naproxen|antibiotics?|amoxicillin|penicillin|"
        r"codeine|morphine|tramadol|steroids?|prednisone|prednisolone|insulin|nitroglycerin|gtn|epinephrine|adrenaline|"
        r"antihistamines?|loratadine|cetirizine|diphenhydramine|benadryl|omeprazole|metformin|warfarin|opioids?)\b",
        re.IGNORECASE,
    ),
    "diagnosis": re.compile(
        r"\byou(?:'ve| have)?\s+(?:probably|likely|definitely|clearly|may|might|must)?\s*"
        r"(?:have|got|are suffering from|are having)\s+"
        r"(?:a|an)?\s*(?:\w+\s+)?(?:infection|attack|stroke|pneumonia|appendicitis|flu|influenza|cancer|disease|syndrome|"
        r"fracture|sepsis|meningitis|embolism|thrombosis|itis)\b"
        r"|\b(?:it|this|that)(?:'s| is| sounds like| looks like| could be| might be| may be| must be)\s+"
        r"(?:probably\s+|likely\s+|just\s+)?"
        r"(?:a|an)?\s*(?:\w+\s+)?(?:infection|heart attack|stroke|pneumonia|appendicitis|flu|influenza|cancer|migraine|"
        r"fracture|sepsis|meningitis|embolism|thrombosis|virus|\w+itis)\b"
        r"|\bdiagnos\w*|\bsounds like (?:a|an)\b|\bI think (?:it's|you have)",
        re.IGNORECASE,
    ),
    "skip_care": re.compile(
        r"\b(?:no need|don't need|do not need|needn't|not necessary)\s+(?:to\s+)?(?:see|call|go|visit|come)\b"
        r"|\b(?:don't|do not)\s+(?:go to|call|see)\s+(?:a|the)?\s*(?:doctor|hospital|emergency|ambulance|911|120)"
        r"|\bnothing to worry about\b|\bit's fine to wait\b",
        re.IGNORECASE,
    ),
}
_ZH = {
    "dose": re.compile(
        r"\d+(?:\.\d+)?\s*(?:毫克|毫升|克|片|粒|颗|支|单位|滴|mg|ml)|[一二两三四五六七八九十半]\s*(?:片|粒|颗|支|滴|毫克|毫升)"
        r"|每\s*\d+\s*小时|一天\s*[一二两三四\d]\s*次|每天\s*[一二两三四\d]\s*次"
    ),
    "drug": re.compile(
        r"布洛芬|对乙酰氨基酚|扑热息痛|泰诺|阿司匹林|抗生素|消炎药|头孢|阿莫西林|青霉素|激素|强的松|胰岛素|硝酸甘油|"
        r"肾上腺素|抗组胺|氯雷他定|西替利嗪|奥美拉唑|二甲双胍|华法林|吗啡|可待因|曲马多|退烧药|止痛药|感冒药"
    ),
    "diagnosis": re.compile(
        r"(?:您|你)?(?:得了|患了|患有|确诊)|诊断|(?:应该|可能|估计|大概|肯定|就)是.{0,8}?(?:炎|病|症|癌|感染|梗|中风|骨折|结石|流感|感冒|过敏)"
        r"|(?:这|那)是.{0,6}?(?:炎|病|症|癌|感染|梗|中风|骨折|结石|流感|感冒)"
    ),
    "skip_care": re.compile(
        r"不(?:用|需要|必)(?:去)?(?:看医生|去医院|就医|看病|打120|叫救护车|急诊)|没什么大不了|没事的|不要紧"
    ),
}


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    ok: bool
    reasons: tuple[str, ...] = ()


_RULES = {"zh": _ZH, "en": _EN}  # by voice.languages.LanguagePack.rules


def check(text: str, lang: str) -> GuardVerdict:
    code = languages.or_fallback(lang).rules
    reasons = tuple(name for name, rx in _RULES[code].items() if rx.search(text))
    if code != "en":  # callers (and models) mix English drug names into every other language
        reasons += tuple(f"en_{name}" for name in ("dose", "drug") if _EN[name].search(text))
    return GuardVerdict(not reasons, reasons)


def guarded(generated: str | None, template: str, lang: str) -> tuple[str, bool]:
    """The generated text when it passes the guard, else the template. Returns (text, used_generated)."""
    if not generated or not generated.strip():
        return template, False
    if not check(generated, lang).ok:
        return template, False
    return generated.strip(), True
