"""Mandarin (`zh`): its pack. Numbers both ways in `numbers`, the voice's text in `speech`."""

from __future__ import annotations

from voice.languages.pack import ClauseLengths, LanguagePack
from voice.languages.zh.numbers import read_numbers, zh_digits, zh_int, zh_number
from voice.languages.zh.speech import normalize

__all__ = ["PACK", "zh_digits", "zh_int", "zh_number"]


def finish_transcript(text: str) -> str:
    """Whisper's Mandarin as the records keep it: simplified characters, Chinese punctuation."""
    from voice.asr_terms import fullwidth_punctuation, to_simplified  # opencc and pypinyin load only here

    return fullwidth_punctuation(to_simplified(text)) if text else text


# Characters that make an answer a number without digits ("三十八度", "两天", "半年").
NUMBER_WORDS = frozenset("零一二两三四五六七八九十百半几")

PACK = LanguagePack(
    code="zh", name="Mandarin", asr_code="zh", spaced=False, list_separator="、", clause_separator="，",
    sentence_end="。", emergency_number="120", tts_engines=("fastspeech2", "coqui"),
    clause_lengths=ClauseLengths(4, 10, 60),
    spell_int=zh_int, spell_number=zh_number, spell_digits=zh_digits, normalize=normalize,
    number_words=NUMBER_WORDS, read_numbers=read_numbers, finish_transcript=finish_transcript,
)
