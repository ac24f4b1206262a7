"""English (`en`): its pack. Numbers both ways in `numbers`, the voice's text in `speech`."""

from __future__ import annotations

from voice.languages.en.numbers import ONES, TENS, en_digits, en_int, en_number, read_numbers
from voice.languages.en.speech import normalize
from voice.languages.pack import ClauseLengths, LanguagePack

__all__ = ["PACK", "en_digits", "en_int", "en_number"]


# Words that make an answer a number without digits ("about thirty", "a couple").
NUMBER_WORDS = frozenset(ONES + [t for t in TENS if t != "_"] + ["hundred", "half", "couple", "few"])

PACK = LanguagePack(
    code="en", name="English", asr_code="en", spaced=True, list_separator=", ", clause_separator=", ", sentence_end=".",
    emergency_number="911", tts_engines=("piper", "coqui"), clause_lengths=ClauseLengths(12, 40, 200),
    spell_int=en_int, spell_number=en_number, spell_digits=en_digits, normalize=normalize,
    number_words=NUMBER_WORDS, read_numbers=read_numbers,
)
