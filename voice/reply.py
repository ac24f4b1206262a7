"""One bot utterance as one object (LiveKit's SpeechHandle is the model): its task, its clauses as
they were synthesised, its timing, whether it may be interrupted now, and what the caller heard.

The call loop's bot side (voice/bot_replies.py) makes one `Reply` per dialogue answer, opening, re-prompt or key-press
answer; barge-in, the record and `dialogue.heard()` all read it, instead of loose attributes on the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from voice.conversation import EndCall, Transfer
from voice.events import TurnMetrics
from voice.languages import LanguagePack, languages


@dataclass
class ReplyTiming:
    """Clock readings (voice.clock) of one reply's stages, for the turn's metrics."""

    speech_end: float  # the caller stopped speaking
    endpoint: float  # the endpointer decided
    transcript: float  # final transcript ready
    first_text: float | None = None
    first_clause: float | None = None
    first_synth: float | None = None
    first_sent: float | None = None

    def metrics(self) -> TurnMetrics:
        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000, 1)

        return TurnMetrics(
            endpoint_wait_ms=ms(self.speech_end, self.endpoint),
            asr_ms=ms(self.endpoint, self.transcript),
            llm_first_token_ms=ms(self.transcript, self.first_text),
            tts_first_audio_ms=ms(self.first_clause, self.first_synth),
            voice_to_voice_ms=ms(self.speech_end, self.first_sent),
        )


@dataclass(frozen=True, slots=True)
class SpokenClause:
    text: str
    start_s: float  # offset in the reply's audio
    duration_s: float
    protected: bool = False

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(eq=False)
class Reply:
    kind: str  # opening | response | silence | dtmf
    timing: ReplyTiming | None = None
    task: asyncio.Task[None] | None = None
    text_parts: list[str] = field(default_factory=list)
    clauses: list[SpokenClause] = field(default_factory=list)
    after: list[EndCall | Transfer] = field(default_factory=list)  # act once the speech has been heard
    start_s: float | None = None  # call time of its first audio
    sent_s: float = 0.0  # seconds of its audio handed to the transport
    last_word_s: float = 0.0  # where its last word so far ends in its audio (after it: the voice's silence)
    complete: bool = False  # every clause has been handed to the transport
    pending_protected: list[str] = field(default_factory=list)  # protected clauses not synthesised yet
    heard_s: float | None = None  # set when it was cut: seconds the caller heard
    caller_waiting: bool = False  # the caller spoke over protected advice; their turn follows it
    recorded: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a clause was synthesised

    @property
    def done(self) -> bool:
        return self.task is None or self.task.done()

    @property
    def text(self) -> str:
        return "".join(self.text_parts).strip()

    def add_text(self, part: str, language: LanguagePack) -> None:
        """Append what the dialogue said, joined as the language writes it."""
        last = self.text_parts[-1] if self.text_parts else ""
        self.text_parts += [p for p in (language.continue_text(last, part), part) if p]

    def words_heard(self, played_s: float) -> bool:
        """The caller has heard every word of it; only the voice's trailing silence may still be playing."""
        return self.complete and played_s >= self.last_word_s

    @property
    def interrupted(self) -> bool:
        return self.heard_s is not None

    @property
    def protected(self) -> bool:
        return bool(self.pending_protected) or any(c.protected for c in self.clauses)

    def protected_end_s(self) -> float:
        """Where the last protected clause synthesised so far ends in the reply's audio (0: none)."""
        return max((c.end_s for c in self.clauses if c.protected), default=0.0)

    def protected_left_s(self, played_s: float) -> float | None:
        """Seconds of protected advice still to be played, or None while some is not synthesised
        yet (its length is unknown); 0 when the caller may take the turn now."""
        if self.pending_protected:
            return None
        return max(0.0, self.protected_end_s() - played_s)

    def unheard_protected(self) -> list[str]:
        """Protected clauses the caller did not hear in full (to be repeated)."""
        heard = self.heard_s if self.heard_s is not None else float("inf")
        return [c.text for c in self.clauses if c.protected and c.end_s > heard + 1e-6] + self.pending_protected

    def heard_text(self, language: str) -> str:
        """The part of the reply the caller heard (whole clauses, and the heard share of the clause
        that was playing when it was cut)."""
        if self.heard_s is None:
            return self.text
        heard: list[str] = []
        for c in self.clauses:
            if self.heard_s >= c.end_s - 1e-6:
                heard.append(c.text)
            elif self.heard_s > c.start_s and c.duration_s > 0:
                share = (self.heard_s - c.start_s) / c.duration_s
                heard.append(c.text[: int(len(c.text) * share)])
                break
            else:
                break
        return languages[language].join(heard)
