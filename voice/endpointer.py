"""Endpointing on webrtcvad: where the caller's speech starts, pauses and ends.

webrtcvad decides per 20 ms frame and splits words on gaps of ~100 ms, so speech start needs
several voiced frames in a short window, and speech end needs a continuous silence (the silence
wait, adjustable per turn: short after a yes/no question, longer mid-sentence). A pre-roll of
frames before the trigger is kept so the first syllable reaches the recogniser.

webrtcvad smooths its decisions: after a sound stops it goes on calling frames voiced for a while
(its hangover: 80 ms after a short sound, 120 ms after a sustained one at aggressiveness 2-3, 100 and
160 ms at 0-1). Every duration here counts VAD-voiced frames, hangover included, and the waits and
`min_speech_ms` are tuned that way: 200 ms of voiced span is ~100 ms of sound, so a Mandarin "不"
(140 ms of sound, 260 ms voiced) is an answer, while a click or knock (≤ 60 ms: ≤ 160 ms voiced) is
not. A 150 ms sound is as long as that "不": length alone cannot tell it from a word.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from voice.audio import Pcm

RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000


@dataclass(frozen=True, slots=True)
class EndpointerConfig:
    aggressiveness: int = 2  # webrtcvad mode 0-3
    start_window_ms: int = 200  # look at this much recent audio to decide speech started...
    start_voiced_ms: int = 120  # ...and need this much of it voiced
    silence_ms: int = 500  # continuous silence that ends an utterance
    pause_ms: int = 240  # silence after which a pause is announced (speculative decoding)
    min_speech_ms: int = 200  # a shorter voiced span (hangover included) is noise: clicks, knocks
    preroll_ms: int = 300
    max_utterance_s: float = 30.0
    unfinished_hold_ms: int = 1200  # silence wait after an unfinished clause ("and then my…", "然后…")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at_s: float  # stream time of the first voiced frame


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """Silence long enough that the utterance may be over: start decoding speculatively."""

    audio: Pcm
    speech_end_s: float


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    at_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    audio: Pcm  # pre-roll + speech (+ the trailing silence, trimmed to 100 ms)
    start_s: float
    speech_end_s: float  # stream time of the last voiced frame
    decided_s: float  # stream time when the silence wait ran out
    forced: bool = False  # cut at max_utterance_s


@dataclass(frozen=True, slots=True)
class SpeechDiscarded:
    """What started as speech was too short to be an utterance (a cough, a click)."""

    at_s: float


EndpointEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded | SpeechDiscarded


class Endpointer:
    """Feed 16 kHz PCM of any chunk size; get endpoint events back. Stream time is samples fed."""

    def __init__(self, config: EndpointerConfig) -> None:
        self.config = config
        self.silence_ms = config.silence_ms
        self._short_until_s: float | None = None
        # imported here, not at the top: settings (and so every process, the Coqui environment's
        # included) reads EndpointerConfig, and only a process that endpoints needs the VAD
        import webrtcvad

        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = 0
        window = max(1, config.start_window_ms // FRAME_MS)
        self._recent: deque[tuple[np.ndarray, bool]] = deque(maxlen=window + config.preroll_ms // FRAME_MS)
        self._window = window
        self._speech: list[np.ndarray] | None = None
        self._start_frame = 0
        self._last_voiced_frame = 0
        self._paused = False
        self._override_ms: int | None = None  # this pause's wait, decided from the words (decide())

    @property
    def in_speech(self) -> bool:
        return self._speech is not None

    @property
    def now_s(self) -> float:
        return self._frames_seen * FRAME_MS / 1000

    def speech_so_far(self) -> Pcm | None:
        if self._speech is None:
            return None
        return Pcm(np.concatenate(self._speech), RATE)

    def voiced_s(self) -> float:
        """How long the current utterance has been going (start → last voiced frame)."""
        if self._speech is None:
            return 0.0
        return (self._last_voiced_frame - self._start_frame + 1) * FRAME_MS / 1000

    def set_silence_ms(self, ms: int, *, up_to_speech_s: float | None = None) -> None:
        """The silence wait for the next utterance. With `up_to_speech_s`, the wait applies only while
        the utterance is that short ("yes", "三天"): a caller who goes on talking is mid-sentence, and
        a comma pause must not end their turn, so longer speech gets the configured wait."""
        self.silence_ms = ms
        self._short_until_s = up_to_speech_s

    def decide(self, verdict: str) -> None:
        """What the words said so far mean for the current pause (voice.turn_end): "complete" ends the
        utterance at the next frame, "unfinished" holds it open for `unfinished_hold_ms`, anything
        else keeps the silence wait. Speech that resumes cancels the decision."""
        if self._speech is None or not self._paused:
            return
        if verdict == "complete":
            self._override_ms = 0
        elif verdict == "unfinished":
            self._override_ms = max(self.config.unfinished_hold_ms, self.silence_ms)
        else:
            self._override_ms = None

    def reset(self) -> None:
        self._speech = None
        self._paused = False
        self._recent.clear()

    def feed(self, audio: Pcm) -> list[EndpointEvent]:
        if audio.sample_rate != RATE:
            raise ValueError(f"endpointer needs {RATE} Hz audio, got {audio.sample_rate} Hz")
        buf = np.concatenate([self._pending, audio.samples]) if len(self._pending) else audio.samples
        n = len(buf) // FRAME_SAMPLES
        self._pending = buf[n * FRAME_SAMPLES :].copy()
        events: list[EndpointEvent] = []
        for i in range(n):
            frame = buf[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            events.extend(self._frame(frame))
        return events

    def _frame(self, frame: np.ndarray) -> list[EndpointEvent]:
        index = self._frames_seen
        self._frames_seen += 1
        voiced = self._vad.is_speech(frame.tobytes(), RATE)
        cfg = self.config
        if self._speech is None:
            self._recent.append((frame, voiced))
            window = list(self._recent)[-self._window :]
            voiced_ms = sum(v for _, v in window) * FRAME_MS
            if not (voiced and voiced_ms >= cfg.start_voiced_ms):
                return []
            # Start at the first voiced frame of the window, keep pre-roll before it.
            first_voiced = next(i for i, (_, v) in enumerate(window) if v)
            self._start_frame = index - (len(window) - 1 - first_voiced)
            self._speech = [f for f, _ in self._recent]
            self._recent.clear()
            self._last_voiced_frame = index
            self._paused = False
            self._override_ms = None
            return [SpeechStarted(self._start_frame * FRAME_MS / 1000)]

        self._speech.append(frame)
        events: list[EndpointEvent] = []
        if voiced:
            self._last_voiced_frame = index
            if self._paused:
                self._paused = False
                self._override_ms = None
                events.append(SpeechResumed(index * FRAME_MS / 1000))
        silence_ms = (index - self._last_voiced_frame) * FRAME_MS
        wait_ms = self.silence_ms
        if self._short_until_s is not None and self.voiced_s() > self._short_until_s:
            wait_ms = max(wait_ms, cfg.silence_ms)
        if self._override_ms is not None and self._paused:
            wait_ms = self._override_ms
        too_long = (index - self._start_frame) * FRAME_MS / 1000 >= cfg.max_utterance_s
        if not self._paused and not voiced and silence_ms >= min(cfg.pause_ms, wait_ms):
            self._paused = True
            events.append(SpeechPaused(self._trimmed(), (self._last_voiced_frame + 1) * FRAME_MS / 1000))
        if silence_ms >= wait_ms or too_long:
            speech_ms = (self._last_voiced_frame - self._start_frame + 1) * FRAME_MS
            ended = SpeechEnded(
                audio=self._trimmed(),
                start_s=self._start_frame * FRAME_MS / 1000,
                speech_end_s=(self._last_voiced_frame + 1) * FRAME_MS / 1000,
                decided_s=(index + 1) * FRAME_MS / 1000,
                forced=too_long and silence_ms < wait_ms,
            )
            self._speech = None
            self._paused = False
            self._override_ms = None
            if speech_ms >= cfg.min_speech_ms or ended.forced:
                events.append(ended)
            else:
                events.append(SpeechDiscarded(ended.decided_s))
        return events

    def _trimmed(self) -> Pcm:
        """The utterance with trailing silence cut to 100 ms (Whisper decodes silence for nothing)."""
        assert self._speech is not None
        keep_frames = len(self._speech) - max(0, (self._frames_seen - 1 - self._last_voiced_frame) - 5)
        return Pcm(np.concatenate(self._speech[:keep_frames]), RATE)
