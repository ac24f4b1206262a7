"""How long a phrase takes on the line: its clauses split and synthesised exactly as a call speaks them
(voice.playout: ClauseSplitter, then one `synthesize` per clause, each with the voice's own pauses), and
where its last word ends. The greeting's length is measured with this (tests/voice/test_greeting.py,
bench/greeting.py), not with a one-shot synthesis of the whole text, which leaves out the pauses between
clauses that the caller hears."""

from __future__ import annotations

from dataclasses import dataclass

from voice.audio import Pcm, speech_end_s
from voice.ports import Synthesizer
from voice.tts.warm import clauses_of


@dataclass(frozen=True)
class Spoken:
    text: str
    clauses: tuple[tuple[str, float], ...]  # (clause, seconds of audio) in the order they are played
    seconds: float  # all the audio a call sends for the phrase
    speech_end_s: float  # where the last word ends; after it only silence (the question has been asked)


async def spoken(synthesizer: Synthesizer, text: str, language: str) -> Spoken:
    clauses: list[tuple[str, float]] = []
    audio: list[Pcm] = []
    for clause in clauses_of(text, language):
        parts = [chunk async for chunk in synthesizer.synthesize(clause)]
        clauses.append((clause, round(sum(p.duration for p in parts), 3)))
        audio += parts
    whole = Pcm.concat(audio, synthesizer.sample_rate)
    return Spoken(text, tuple(clauses), round(whole.duration, 3), round(speech_end_s(whole), 3))
