"""ChatModel over any OpenAI-compatible server: vLLM in production, llama.cpp's server embedded.

The two servers differ in small ways (FIELD-NOTES): vLLM takes `response_format` of type
`json_schema`, llama.cpp answers 500 to that and wants `json_object` with a `schema`; llama.cpp
may cut a stream short. Both are handled here so the dialogue never sees them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from dialogue.llm import LLMUnavailable

log = logging.getLogger("carecall.llm")

Flavour = Literal["vllm", "llamacpp"]


class OpenAIChatModel:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "carecall-local",
        model: str = "",
        flavour: Flavour = "vllm",
        capable: bool = False,
        timeout_s: float = 20.0,
    ) -> None:
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self._model = model
        self.flavour: Flavour = flavour
        self._capable = capable

    @property
    def capable(self) -> bool:
        return self._capable

    async def model_name(self) -> str:
        if not self._model:
            try:
                models = await self._client.models.list()
            except openai.OpenAIError as exc:
                raise LLMUnavailable(f"cannot list models: {type(exc).__name__}") from exc
            if not models.data:
                raise LLMUnavailable("the LLM server serves no model")
            self._model = models.data[0].id
        return self._model

    async def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 200, temperature: float = 0.3
    ) -> AsyncIterator[str]:
        model = await self.model_name()
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            finished = False
            async with stream:
                async for chunk in stream:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
                    if choice.finish_reason:
                        finished = True
        except openai.OpenAIError as exc:
            raise LLMUnavailable(f"chat stream failed: {type(exc).__name__}") from exc
        if not finished:
            # llama.cpp ends a stream without finish_reason when another request preempts it.
            raise LLMUnavailable("chat stream was cut off before it finished")

    async def complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, max_tokens: int = 400
    ) -> dict[str, Any]:
        model = await self.model_name()
        if self.flavour == "vllm":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": "extraction", "schema": schema, "strict": True},
            }
        else:
            response_format = {"type": "json_object", "schema": schema}
        try:
            response = await self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=0.0,
                response_format=response_format,  # type: ignore[arg-type]
            )
        except openai.OpenAIError as exc:
            raise LLMUnavailable(f"JSON completion failed: {type(exc).__name__}") from exc
        content = response.choices[0].message.content or ""
        try:
            value = json.loads(content)
        except json.JSONDecodeError as exc:
            raise LLMUnavailable("the LLM returned invalid JSON") from exc
        if not isinstance(value, dict):
            raise LLMUnavailable("the LLM returned JSON that is not an object")
        return value

    async def aclose(self) -> None:
        await self._client.close()
