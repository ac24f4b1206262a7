"""How a call takes turns: its knobs and their defaults, written once.

`TurnTakingSettings` is the one place the defaults live (the endpointer's own come from
`voice.endpointer.EndpointerConfig`); it is nested in `settings.Settings` as `turn_taking`, so every
knob is set from the environment as `CARECALL_TURN_TAKING__<NAME>` (the older flat names such as
`CARECALL_ENDPOINT_SILENCE_MS` still work, see `LEGACY_ENV`). `TurnTaking` is what the call loop reads
(LiveKit-style: one typed object): the same knobs, plus the backchannel words read from prompts/,
built with `TurnTaking.from_settings`. A new knob is one field of `TurnTakingSettings`; the call loop
reads it as `TurnTaking.<name>`, and an endpointer knob reaches `EndpointerConfig` by its name.
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, ConfigDict, Field

from voice.endpointer import EndpointerConfig

_EP = EndpointerConfig()


class TurnTakingSettings(BaseModel):
    """The turn-taking knobs (nested in `Settings.turn_taking`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- endpointing (voice.endpointer) -------------------------------------------------------
    vad_aggressiveness: int = Field(default=_EP.aggressiveness, ge=0, le=3, description="webrtcvad mode 0-3")
    silence_ms: int = Field(default=_EP.silence_ms, gt=0, description="continuous silence that ends an utterance")
    pause_ms: int = Field(default=_EP.pause_ms, gt=0,
                          description="silence at which the final decode starts speculatively")
    min_speech_ms: int = Field(default=_EP.min_speech_ms, ge=0, description="shorter sounds are noise (coughs, clicks)")
    preroll_ms: int = Field(default=_EP.preroll_ms, ge=0, description="audio kept before speech starts")
    max_utterance_s: float = Field(default=_EP.max_utterance_s, gt=0, description="an utterance is cut after this long")
    unfinished_hold_ms: int = Field(default=_EP.unfinished_hold_ms, gt=0,
                                    description="silence wait after an unfinished clause ('and then my…')")
    # --- turns --------------------------------------------------------------------------------
    short_answer_silence_ms: int = Field(default=300, gt=0, description="silence that ends a short answer "
                                                                  "(after a yes/no or number question)")
    short_answer_max_s: float = Field(default=1.2, gt=0, description="...while the answer is this short; longer speech "
                                                              "is a sentence with pauses in it")
    barge_in_min_speech_ms: int = Field(default=600, ge=0, description="caller speech over the bot longer than this "
                                        "interrupts at once; shorter is transcribed first (backchannels do not)")
    barge_in_hold: bool = Field(default=True, description="hold the bot's audio the moment the caller starts "
                                "talking over it (a barge-in then cuts it; a backchannel or noise lets it go on), "
                                "so the caller's words never meet the bot's voice in an echo canceller")
    interjection_wait_ms: int = Field(default=1200, ge=0, description="a short turn begun over the bot (not a "
                                      "backchannel: 'Hello?', 'Sorry-') is answered once the caller has been quiet "
                                      "this long; one who interjects usually goes on, and is answered as one turn")
    interjection_max_s: float = Field(default=1.5, ge=0, description="...if its speech is at most this long")
    partial_interval_s: float = Field(default=0.6, ge=0,
                                      description="partial transcripts this often; 0 turns them off")
    speculative_decoding: bool = Field(default=True,
                                       description="start the final decode at a pause, before the endpoint")
    text_turn_end: bool = Field(default=True, description="end/hold a turn at a pause from its words (voice.turn_end)")
    uncertain_below: float = Field(default=0.5, ge=0, le=1, description="words recognised with a probability under "
                                                                 "this are CallerUtterance.uncertain_words")
    silence_reprompt_s: float = Field(default=8.0, gt=0, description="caller silence before the bot asks again")
    silence_reprompts_before_end: int = Field(default=2, ge=0, description="reprompts before a silent call ends")
    # --- bounds that hold whatever the bot is doing (issue 10 #2) ------------------------------
    max_call_s: float = Field(default=1800.0, gt=0, description=(
        "a call ends after this long, unless it was escalated (then a nurse or the caller ends it)"))
    max_silence_s: float = Field(default=120.0, gt=0, description="...or after the caller said nothing this long "
                                                          "(not once the call was escalated to a nurse)")
    max_reply_s: float = Field(default=120.0, gt=0,
                               description="one bot reply (text, synthesis, playout) at most this long")

    @property
    def endpointer(self) -> EndpointerConfig:
        """The endpointer's config: every field of `EndpointerConfig` that is a knob here, by name (the
        others keep the endpointer's own defaults)."""
        knobs = type(self).model_fields
        return EndpointerConfig(**{
            f.name: getattr(self, _KNOB.get(f.name, f.name))
            for f in dataclasses.fields(EndpointerConfig) if _KNOB.get(f.name, f.name) in knobs
        })  # fmt: skip


# EndpointerConfig fields whose knob has another name here.
_KNOB = {"aggressiveness": "vad_aggressiveness"}

# The environment names these knobs had before they were nested (still read; the nested
# `CARECALL_TURN_TAKING__<NAME>` wins when both are set).
LEGACY_ENV: dict[str, str] = {
    "CARECALL_VAD_AGGRESSIVENESS": "vad_aggressiveness",
    "CARECALL_ENDPOINT_SILENCE_MS": "silence_ms",
    "CARECALL_ENDPOINT_SHORT_ANSWER_SILENCE_MS": "short_answer_silence_ms",
    "CARECALL_ENDPOINT_MIN_SPEECH_MS": "min_speech_ms",
    "CARECALL_ENDPOINT_PREROLL_MS": "preroll_ms",
    "CARECALL_ENDPOINT_GAP_SMOOTHING_MS": "pause_ms",
    "CARECALL_MAX_UTTERANCE_S": "max_utterance_s",
    "CARECALL_BARGE_IN_MIN_SPEECH_MS": "barge_in_min_speech_ms",
    "CARECALL_SILENCE_REPROMPT_S": "silence_reprompt_s",
    "CARECALL_SILENCE_REPROMPTS_BEFORE_END": "silence_reprompts_before_end",
    "CARECALL_MAX_CALL_S": "max_call_s",
    "CARECALL_MAX_CALLER_SILENCE_S": "max_silence_s",
    "CARECALL_MAX_REPLY_S": "max_reply_s",
    "CARECALL_ASR_PARTIAL_INTERVAL_S": "partial_interval_s",
    "CARECALL_ASR_UNCERTAIN_BELOW": "uncertain_below",
}


class TurnTaking(TurnTakingSettings):
    """How the call takes turns, as the call loop reads it: every knob of `TurnTakingSettings` (so a new
    knob is written once, there, with its default) and what is read from prompts/ beside them."""

    # Short acknowledgements per language that must not interrupt the bot (prompts/<lang>/backchannels.txt).
    backchannels: dict[str, frozenset[str]] = Field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: TurnTakingSettings, backchannels: dict[str, frozenset[str]] | None = None,
                      ) -> TurnTaking:
        knobs = {name: getattr(s, name) for name in TurnTakingSettings.model_fields}
        return cls(**knobs, backchannels=dict(backchannels or {}))
