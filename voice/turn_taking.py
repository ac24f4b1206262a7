"""How a call takes turns: one typed object with documented defaults (LiveKit-style), built from the
settings in server.py and read by the call loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from voice.endpointer import EndpointerConfig


@dataclass(frozen=True, slots=True)
class TurnTaking:
    """How the call takes turns (LiveKit-style: one typed object with documented defaults)."""

    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    # Silence that ends a short answer (after a yes/no or number question).
    short_answer_silence_ms: int = 300
    # ...but only while the answer is this short; longer speech is a sentence with pauses in it.
    short_answer_max_s: float = 1.2
    # Caller speech over the bot longer than this interrupts it at once; shorter speech is
    # transcribed first and interrupts only if it is not a backchannel ("mm-hm", "嗯").
    barge_in_min_speech_ms: int = 600
    backchannels: dict[str, frozenset[str]] = field(default_factory=dict)
    partial_interval_s: float = 0.6  # 0 turns partial transcripts off
    speculative_decoding: bool = True  # start the final decode at a pause, before the endpoint
    silence_reprompt_s: float = 8.0
    # Bounds that hold whatever the bot is doing (issue 10 #2): the call ends after this long, or
    # after the caller said nothing for this long (not once the call was escalated to a nurse).
    max_call_s: float = 1800.0
    max_silence_s: float = 120.0
    max_reply_s: float = 120.0  # one reply (text, synthesis and playout) may take this long
    uncertain_below: float = 0.5  # word probability under which a word is reported as uncertain
    text_turn_end: bool = True  # end/hold a turn at a pause from the words decoded there (voice.turn_end)
