"""The endpointer on real speech from the project's own voice."""

from __future__ import annotations

import pytest

from voice.audio import Pcm
from voice.endpointer import (
    Endpointer,
    EndpointerConfig,
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from voice.resample import resample

pytestmark = pytest.mark.models


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


def test_silence_wait_is_adjustable_per_turn(sentence: Pcm) -> None:
    ep = Endpointer(EndpointerConfig(silence_ms=800))
    ep.set_silence_ms(300)
    events = feed_all(ep, Pcm.concat([Pcm.silence(0.3, 16000), sentence, Pcm.silence(1.0, 16000)], 16000))
    end = next(e for e in events if isinstance(e, SpeechEnded))
    assert end.decided_s - end.speech_end_s == pytest.approx(0.3, abs=0.03)


def test_a_click_is_not_an_utterance(sentence: Pcm) -> None:
    blip = Pcm(sentence.samples[8000:8000 + 2400], 16000)  # 150 ms of voice
    events = feed_all(Endpointer(EndpointerConfig(min_speech_ms=250)),
                      Pcm.concat([Pcm.silence(0.5, 16000), blip, Pcm.silence(1.0, 16000)], 16000))
    assert not [e for e in events if isinstance(e, SpeechEnded)]
    assert [e for e in events if isinstance(e, SpeechDiscarded)] or not [
        e for e in events if isinstance(e, SpeechStarted)]


def test_wrong_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        Endpointer(EndpointerConfig()).feed(Pcm.silence(0.1, 8000))


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
