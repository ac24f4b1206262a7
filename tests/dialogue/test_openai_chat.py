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


async def test_a_port_someone_already_answers_on_is_refused_not_shared() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LlamaServer(smollm2_gguf(), port=taken.getsockname()[1])
        with pytest.raises(LlamaServerError, match="already in use"):
            await server.start(timeout_s=30)


CHILD = """
import asyncio, sys
from dialogue.llama_server import LlamaServer
from voice.models import smollm2_gguf

async def main():
    server = LlamaServer(smollm2_gguf(), port=int(sys.argv[1]))
    await server.start(timeout_s=120)
    print(server._proc.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_the_embedded_llm_dies_with_a_server_that_is_killed(tmp_path) -> None:
    """kill -9 of `carecall serve` (or the OOM killer) leaves no llama.cpp orphan holding the port."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(free_port())], cwd=root,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # waits for the llama server to answer (its own bound)
        assert line.strip().isdigit(), f"the child did not start its llama server: {line!r}"
        llama_pid = int(line)
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its process group
        parent.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(llama_pid, 0)
            except ProcessLookupError:
                return
            with open(f"/proc/{llama_pid}/stat") as stat:  # a zombie waiting for init is gone too
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return
            time.sleep(0.2)
        os.kill(llama_pid, signal.SIGKILL)
        raise AssertionError("the llama.cpp server outlived the killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
