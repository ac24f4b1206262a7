"""The OpenAI-compatible ChatModel against the real llama.cpp server process (the embedded LLM)."""

from __future__ import annotations

import asyncio

import pytest

from bench.harness import free_port
from dialogue.llama_server import MODEL_ALIAS, LlamaServer, LlamaServerError
from dialogue.llm import LLMUnavailable
from dialogue.openai_chat import OpenAIChatModel
from voice.models import smollm2_gguf

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
async def llama():
    server = LlamaServer(smollm2_gguf(), port=free_port(), threads=1)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_streams_a_reply_from_the_real_server(llama: LlamaServer) -> None:
    model = OpenAIChatModel(llama.base_url, flavour="llamacpp")
    assert await model.model_name() == MODEL_ALIAS
    pieces = [p async for p in model.stream([{"role": "user", "content": "Say hello in one short sentence."}],
                                            max_tokens=24)]
    assert len(pieces) > 1  # streamed, not one blob
    assert "".join(pieces).strip()
    await model.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_json_object_with_schema_on_llamacpp(llama: LlamaServer) -> None:
    model = OpenAIChatModel(llama.base_url, model=MODEL_ALIAS, flavour="llamacpp")
    schema = {"type": "object", "properties": {"fever": {"type": "boolean"}}, "required": ["fever"]}
    value = await model.complete_json(
        [{"role": "user", "content": "The caller says: I have a fever. Answer in JSON."}], schema, max_tokens=40)
    assert isinstance(value.get("fever"), bool)
    await model.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_two_concurrent_streams_both_finish(llama: LlamaServer) -> None:
    """llama.cpp would cut the first stream off when the second arrives, without
    interrupt_requests=False; both calls must get whole replies."""
    model = OpenAIChatModel(llama.base_url, model=MODEL_ALIAS, flavour="llamacpp")

    async def reply(q: str) -> str:
        return "".join([p async for p in model.stream([{"role": "user", "content": q}], max_tokens=20)])

    a, b = await asyncio.gather(reply("Name a colour."), reply("Name a fruit."))
    assert a.strip() and b.strip()
    await model.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_vllm_flavour_sends_json_schema_which_llamacpp_rejects(llama: LlamaServer) -> None:
    """The documented difference: the vLLM form is refused by llama.cpp, and that surfaces as
    LLMUnavailable (the dialogue then carries on without the LLM) rather than a crash."""
    model = OpenAIChatModel(llama.base_url, model=MODEL_ALIAS, flavour="vllm")
    with pytest.raises(LLMUnavailable):
        await model.complete_json([{"role": "user", "content": "JSON please"}],
                                  {"type": "object", "properties": {"a": {"type": "string"}}}, max_tokens=10)
    await model.aclose()


async def test_unreachable_server_is_llm_unavailable() -> None:
    model = OpenAIChatModel(f"http://127.0.0.1:{free_port()}/v1", model="x", timeout_s=2)
    with pytest.raises(LLMUnavailable):
        _ = [p async for p in model.stream([{"role": "user", "content": "hi"}])]
    await model.aclose()


async def test_a_missing_model_file_fails_clearly(tmp_path) -> None:
    server = LlamaServer(tmp_path / "missing.gguf", port=free_port())
    with pytest.raises(LlamaServerError, match="exited"):
        await server.start(timeout_s=30)
