"""The endpointer on real speech from the project's own voice, and on the harmonic vowel of
tests/voice/fakes.py where a test needs sound of an exact length (any TTS voice pauses differently)."""

from __future__ import annotations

import numpy as np
import pytest
import webrtcvad

from tests.voice.fakes import vowel
from voice.audio import Pcm
from voice.endpointer import (
    FRAME_SAMPLES,
    Endpointer,
    EndpointerConfig,
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from voice.resample import resample

models = pytest.mark.models  # the tests on speech from the project's own voice


def feed_all(ep: Endpointer, audio: Pcm, chunk_s: float = 0.032) -> list[object]:
    """Feed in odd-sized chunks, as transports deliver them."""
    step = int(audio.sample_rate * chunk_s)
    events: list[object] = []
    for i in range(0, len(audio), step):
        events += ep.feed(Pcm(audio.samples[i : i + step], audio.sample_rate))
    return events


@pytest.fixture(scope="module")
def sentence(say) -> Pcm:
    return resample(say("I have had a headache since yesterday morning.", "en"), 16000)


@models
def test_one_utterance_starts_and_ends_once(sentence: Pcm) -> None:
    lead = Pcm.silence(1.0, 16000)
    audio = Pcm.concat([lead, sentence, Pcm.silence(1.2, 16000)], 16000)
    events = feed_all(Endpointer(EndpointerConfig(silence_ms=500)), audio)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == 1 and len(ends) == 1
    end = ends[0]
    # pre-roll keeps the first syllable: the utterance audio begins before the detected start
    assert end.audio.duration >= sentence.duration * 0.8
    assert 0.9 <= starts[0].at_s <= 1.3
    # the end is decided one silence wait after the last voiced frame
    assert end.decided_s - end.speech_end_s == pytest.approx(0.5, abs=0.03)
    assert end.speech_end_s <= 1.0 + sentence.duration + 0.1
    assert any(isinstance(e, SpeechPaused) for e in events)


@models
def test_short_gaps_are_smoothed_and_long_ones_split(sentence: Pcm) -> None:
    gap = lambda s: Pcm.silence(s, 16000)  # noqa: E731  (a one-line helper reads better inline here)
    two_with_short_gap = Pcm.concat([gap(0.5), sentence, gap(0.25), sentence, gap(1.0)], 16000)
    ends = [e for e in feed_all(Endpointer(EndpointerConfig(silence_ms=500)), two_with_short_gap)
            if isinstance(e, SpeechEnded)]
    assert len(ends) == 1
    two_with_long_gap = Pcm.concat([gap(0.5), sentence, gap(1.0), sentence, gap(1.0)], 16000)
    ends = [e for e in feed_all(Endpointer(EndpointerConfig(silence_ms=500)), two_with_long_gap)
            if isinstance(e, SpeechEnded)]
    assert len(ends) == 2


@models
def test_silence_wait_is_adjustable_per_turn(sentence: Pcm) -> None:
    ep = Endpointer(EndpointerConfig(silence_ms=800))
    ep.set_silence_ms(300)
    events = feed_all(ep, Pcm.concat([Pcm.silence(0.3, 16000), sentence, Pcm.silence(1.0, 16000)], 16000))
    end = next(e for e in events if isinstance(e, SpeechEnded))
    assert end.decided_s - end.speech_end_s == pytest.approx(0.3, abs=0.03)


def loudest(audio: Pcm, seconds: float) -> Pcm:
    """The `seconds` of `audio` with the most energy: the middle of a vowel, whichever voice spoke."""
    n = round(seconds * audio.sample_rate)
    energy = np.cumsum(np.concatenate([[0.0], audio.samples.astype(np.float64) ** 2]))
    start = int(np.argmax(energy[n:] - energy[:-n]))
    return Pcm(audio.samples[start : start + n], audio.sample_rate)


def vowel_for(seconds: float) -> Pcm:
    return Pcm(vowel(150.0, 0, round(seconds * 16000)), 16000)


def between_silences(audio: Pcm) -> Pcm:
    return Pcm.concat([Pcm.silence(0.5, 16000), audio, Pcm.silence(1.0, 16000)], 16000)


# Frames webrtcvad goes on calling voiced after a sound stops (its hangover), per aggressiveness, after
# a short (≤ 100 ms) and a sustained sound: the margin min_speech_ms and the silence waits are tuned on.
HANGOVER_FRAMES = {0: (5, 8), 1: (5, 8), 2: (4, 6), 3: (4, 6)}


@pytest.mark.parametrize("mode", sorted(HANGOVER_FRAMES))
def test_the_vad_hangover_the_thresholds_are_tuned_on(mode: int) -> None:
    for seconds, hangover in zip((0.06, 0.3), HANGOVER_FRAMES[mode], strict=True):
        vad = webrtcvad.Vad(mode)
        audio = between_silences(vowel_for(seconds)).samples
        flags = [vad.is_speech(audio[i : i + FRAME_SAMPLES].tobytes(), 16000)
                 for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
        voiced = [i for i, v in enumerate(flags) if v]
        assert voiced == list(range(25, 25 + round(seconds / 0.02) + hangover)), (seconds, voiced)


def test_a_click_is_noise_and_a_monosyllable_is_an_utterance() -> None:
    def events(seconds: float) -> list[object]:
        return feed_all(Endpointer(EndpointerConfig()), between_silences(vowel_for(seconds)))

    # a 60 ms click or knock: 140 ms voiced, hangover included, under min_speech_ms
    assert [type(e) for e in events(0.06)] == [SpeechStarted, SpeechPaused, SpeechDiscarded]
    # 140 ms of sound, as long as a Mandarin "不" (260 ms voiced): an answer, never dropped as noise
    (end,) = [e for e in events(0.14) if isinstance(e, SpeechEnded)]
    assert end.speech_end_s == pytest.approx(0.5 + 0.14 + HANGOVER_FRAMES[2][1] * 0.02, abs=0.001)


@models
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_click_cut_from_speech_is_not_an_utterance(say, lang: str) -> None:
    text = "I have had a headache since yesterday morning." if lang == "en" else "我从昨天早上开始头疼。"
    blip = loudest(resample(say(text, lang), 16000), 0.06)  # 60 ms from the middle of a vowel, whatever the voice
    events = feed_all(Endpointer(EndpointerConfig()), between_silences(blip))
    # heard as speech starting (at most 4 frames of sound, at most 4 of hangover), then discarded
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechDiscarded]


@models
def test_a_one_syllable_no_is_an_utterance(say) -> None:
    bu = resample(say("不。", "zh"), 16000)
    (end,) = [e for e in feed_all(Endpointer(EndpointerConfig()), between_silences(bu)) if isinstance(e, SpeechEnded)]
    assert end.audio.duration >= 0.2


def test_wrong_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        Endpointer(EndpointerConfig()).feed(Pcm.silence(0.1, 8000))


@models
def test_the_short_answer_wait_only_applies_to_short_answers(sentence: Pcm, say) -> None:
    gap = Pcm.silence(0.4, 16000)  # longer than the short wait, shorter than the normal one
    ep = Endpointer(EndpointerConfig(silence_ms=600))
    ep.set_silence_ms(300, up_to_speech_s=1.0)
    long_with_pause = Pcm.concat([Pcm.silence(0.3, 16000), sentence, gap, sentence, Pcm.silence(1.0, 16000)], 16000)
    assert len([e for e in feed_all(ep, long_with_pause) if isinstance(e, SpeechEnded)]) == 1
    ep = Endpointer(EndpointerConfig(silence_ms=600))
    ep.set_silence_ms(300, up_to_speech_s=1.0)
    no = resample(say("No.", "en"), 16000)
    end = next(e for e in feed_all(ep, Pcm.concat([Pcm.silence(0.3, 16000), no, Pcm.silence(1.0, 16000)], 16000))
               if isinstance(e, SpeechEnded))
    assert end.decided_s - end.speech_end_s == pytest.approx(0.3, abs=0.03)
