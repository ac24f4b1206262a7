"""The one entry point the rest of CareCall uses: a factory that makes a dialogue for each call."""

from __future__ import annotations

from dataclasses import dataclass, field

from dialogue.assist import LLMAssist
from dialogue.followup import FollowUpDialogue
from dialogue.knowledge import Knowledge, knowledge
from dialogue.llm import ChatModel
from dialogue.triage import TriageDialogue
from voice.conversation import DialogueFactory, DialogueManager
from voice.events import CallInfo
from voice.languages import languages


@dataclass(frozen=True)
class _Factory:
    chat_model: ChatModel | None
    emergency_numbers: dict[str, str]
    llm_capable: bool
    kn: Knowledge = field(repr=False)
    silence_reprompts: int | None = None  # settings.turn_taking.silence_reprompts_before_end; None: the dialogue's

    def __call__(self, info: CallInfo) -> DialogueManager:
        number = self.emergency_numbers.get(info.language) or languages.or_fallback(info.language).emergency_number
        assist = None
        # the LLM touches clinical content only when both the settings and the model say it is capable
        if self.chat_model is not None and self.llm_capable and getattr(self.chat_model, "capable", False):
            assist = LLMAssist(self.chat_model, call_id=info.call_id)
        cls = FollowUpDialogue if info.mode == "followup" else TriageDialogue
        extra = {} if self.silence_reprompts is None else {"max_silence_reprompts": self.silence_reprompts}
        return cls(info, emergency_number=number, assist=assist, kn=self.kn, **extra)


def build_dialogue_factory(
    *, chat_model: ChatModel | None, emergency_numbers: dict[str, str], llm_capable: bool,
    silence_reprompts: int | None = None,
) -> DialogueFactory:
    """Loads and validates prompts/ once (raises `dialogue.protocols.ProtocolError` if malformed).
    `silence_reprompts`: how often the dialogue asks again into silence before it ends the call."""
    return _Factory(chat_model, dict(emergency_numbers), llm_capable, knowledge(), silence_reprompts)
