"""The LLM seam: an OpenAI-compatible chat model (vLLM in production, llama.cpp's server embedded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class LLMUnavailable(RuntimeError):
    """The chat server cannot be reached or failed; the dialogue must go on without it."""


class ChatModel(Protocol):
    """Streamed chat completions and JSON extraction. `messages` are OpenAI chat messages."""

    @property
    def capable(self) -> bool:
        """True when the model may be trusted with extraction and phrasing (a settings flag: the
        embedded SmolLM2 is not; a vLLM-served instruct model is)."""
        ...

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 200, temperature: float = 0.3
    ) -> AsyncIterator[str]:
        """Yield text deltas as they arrive. Raises LLMUnavailable on connection/server errors."""
        ...

    async def complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, max_tokens: int = 400
    ) -> dict[str, Any]:
        """One JSON object the server constrained to `schema` (parsed; not yet validated by us)."""
        ...
