"""The language registry (voice.languages): one pack per language, read by admission, settings,
the voices and the call loop; what clinicians may change is data in prompts/<code>/language.yaml."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from settings import Settings
from voice import admission
from voice.languages import LanguageData, LanguageRegistry, UnknownLanguage, languages
from voice.languages.zh import PACK as ZH


def test_admission_speaks_exactly_the_registered_languages() -> None:
    assert admission.LANGUAGES == languages.codes == ("zh", "en")
    for code in languages:
        admission.validate(admission.CallRequest("sip", language=code))
    with pytest.raises(admission.AdmissionRefused) as refused:
        admission.validate(admission.CallRequest("sip", language="yue"))
    assert refused.value.code == "bad_language" and "zh, en" in refused.value.message


@pytest.mark.parametrize("code", languages.codes)
def test_every_pack_has_its_editable_data_and_says_its_own_numbers(code: str) -> None:
    pack = languages[code]
    assert set(pack.dtmf_words) >= {"1", "2", "0"} and all(pack.dtmf_words.values())
    assert pack.default_hospital
    assert pack.spell_int(120) and pack.spell_digits(pack.emergency_number)
    assert not any(ch.isdigit() for ch in pack.normalize("38.5 120/80 14:30"))  # the voice gets words
    assert pack.clause_lengths.first_min_chars < pack.clause_lengths.min_chars < pack.clause_lengths.max_chars


def test_the_packs_differ_where_the_languages_do() -> None:
    zh, en = languages["zh"], languages["en"]
    assert zh.join(["我头疼", "从昨天开始"]) == "我头疼从昨天开始"
    assert en.join(["my head hurts", "since yesterday"]) == "my head hurts since yesterday"
    assert (zh.spell_digits("120"), en.spell_digits("911")) == ("幺二零", "nine one one")
    assert (zh.dtmf_words["1"], en.dtmf_words["1"]) == ("是", "yes")  # YAML's `yes` stays a word


def test_a_new_language_is_one_more_pack() -> None:
    yue = dataclasses.replace(ZH, code="yue", name="Cantonese", asr_code="yue", emergency_number="999")
    registry = LanguageRegistry((ZH, yue), fallback="zh")
    assert registry.codes == ("zh", "yue") and registry["yue"].emergency_number == "999"
    assert registry.or_fallback("fr").code == "zh" and registry.or_fallback(None).code == "zh"
    with pytest.raises(UnknownLanguage):
        registry["fr"]
    with pytest.raises(ValueError, match="share a code"):
        LanguageRegistry((ZH, ZH), fallback="zh")


def test_a_table_a_language_lacks_is_read_in_the_language_it_takes_its_rules_from() -> None:
    yue = dataclasses.replace(ZH, code="yue", name="Cantonese", rules_from="zh")
    en = languages["en"]
    registry = LanguageRegistry((ZH, en, yue), fallback="en")
    assert registry.lookup_order("yue") == ("yue", "zh", "en") and registry.lookup_order("zh") == ("zh", "en")
    assert registry.lookup_order("fr") == registry.lookup_order(None) == ("en",)
    names = {"zh": "主诉", "en": "Chief complaint"}
    assert (registry.pick(names, "yue"), registry.pick(names, "en"), registry.pick(names, "fr")) == (
        "主诉", "Chief complaint", "Chief complaint")
    assert registry.pick({**names, "yue": "主訴"}, "yue") == "主訴"
    with pytest.raises(UnknownLanguage):
        registry.pick({"zh": "主诉"}, "en")


def test_the_editable_data_is_checked_when_read(tmp_path: Path) -> None:
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "language.yaml").write_text('dtmf_words: {"12": "yes"}\ndefault_hospital: H\n')
    with pytest.raises(ValueError, match="single keys"):
        LanguageData.load("xx", tmp_path)
    (tmp_path / "xx" / "language.yaml").write_text('dtmf_words: {"1": "yes"}\n')
    with pytest.raises(ValueError, match="default_hospital"):
        LanguageData.load("xx", tmp_path)


def test_per_language_settings_default_to_the_pack_and_keep_their_older_names(monkeypatch: pytest.MonkeyPatch,
                                                                              ) -> None:
    for key in ("CARECALL_EMERGENCY_NUMBER_ZH", "CARECALL_EMERGENCY_NUMBERS", "CARECALL_TTS_ENGINE_EN",
                "CARECALL_TTS_ENGINES"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert (s.emergency_number("zh"), s.emergency_number("en")) == ("120", "911")
    assert (s.tts_engine("zh"), s.tts_engine("en")) == ("fastspeech2", "piper")
    monkeypatch.setenv("CARECALL_EMERGENCY_NUMBER_ZH", "119")
    monkeypatch.setenv("CARECALL_TTS_ENGINE_EN", "coqui")
    s = Settings()
    assert s.emergency_number("zh") == "119" and s.emergency_number("en") == "911" and s.tts_engine("en") == "coqui"
    with pytest.raises(ValueError, match="no language pack for fr"):
        Settings(emergency_numbers={"fr": "112"})
    with pytest.raises(ValueError, match="zh speaks with fastspeech2 or coqui"):
        Settings(tts_engines={"zh": "piper"})
    with pytest.raises(ValueError, match="sip_default_language"):
        Settings(sip_default_language="fr")
