"""The Coqui engine on tiny random-weight models built here (no Coqui model can be downloaded).

Runs INSIDE the coqui environment (scripts/install-coqui.sh), started by tests/voice/test_coqui.py
from the main suite; torch and TTS exist only there. The models are noise generators, so these tests
check loading, rates, chunking and the Synthesizer seam, not how the speech sounds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from voice.audio import Pcm
from voice.ports import Synthesizer
from voice.tts.coqui import CoquiSynthesizer, CoquiUnavailable

pytestmark = pytest.mark.models

VITS_RATE = 16_000


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="coqui-test")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1-layer, 16-channel VITS on characters (no phonemiser), saved as coqui-tts saves one."""
    from TTS.tts.configs.shared_configs import BaseAudioConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    torch.manual_seed(0)
    hop = 64
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=[4, 4, 4],  # product == hop_length
        upsample_kernel_sizes_decoder=[8, 8, 8],
        upsample_initial_channel_decoder=16,
        out_channels=129,  # fft_size // 2 + 1
        use_sdp=False,
        init_discriminator=False,
    )
    audio = BaseAudioConfig(sample_rate=VITS_RATE, hop_length=hop, win_length=256, fft_size=256, num_mels=20)
    model = Vits(VitsConfig(model_args=args, audio=audio, use_phonemes=False, text_cleaner="basic_cleaners"))
    folder = tmp_path_factory.mktemp("vits")
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    model.config.save_json(str(folder / "config.json"))  # model.config: the characters the model filled in
    return folder / "model.pth", folder / "config.json"


@pytest.fixture(scope="module")
def tiny_xtts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XTTS-v2-shaped model with a 1-layer, 64-channel GPT and a character-level vocab.json; the
    HiFi-GAN decoder and speaker encoder keep their fixed sizes (~90 MB on disk)."""
    from tokenizers import Tokenizer, models
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts, XttsArgs

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("xtts")
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[zh-cn]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;")
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(folder / "vocab.json"))

    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=64,
        gpt_n_heads=2,
        decoder_input_dim=64,  # the GPT's width: the decoder reads its latents
        gpt_number_text_tokens=len(vocab),
        gpt_start_text_token=vocab["[START]"],
        gpt_stop_text_token=vocab["[STOP]"],
        # Random weights rarely say stop: cap a clause at 15 audio tokens, streamed as 5 chunks of 3 (each
        # chunk re-decodes every token so far through the full-size HiFi-GAN: the cost is in the decoder).
        gpt_max_audio_tokens=15,
        gpt_max_text_tokens=200,
        gpt_use_perceiver_resampler=True,  # as XTTS-v2
        gpt_use_masking_gt_prompt_approach=True,
    )
    config = XttsConfig(model_args=args)
    model = Xtts(config)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def reference_voice(seconds: float = 3.0, rate: int = 22_050) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * rate)) / rate
    voiced = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return voiced.astype(np.float32), rate


async def collect(synth: Synthesizer, text: str) -> list[Pcm]:
    return [chunk async for chunk in synth.synthesize(text)]


# --- plain model (VITS) ---------------------------------------------------------------------------


async def test_vits_loads_from_local_paths_and_speaks_clause_by_clause(tiny_vits, executor) -> None:
    model_path, config_path = tiny_vits
    started = time.monotonic()
    synth = CoquiSynthesizer(model_path, config_path, executor, language="en", device="cpu", threads=1)
    assert time.monotonic() - started < 10
    assert isinstance(synth, Synthesizer)
    assert not synth.is_xtts
    assert synth.language == "en" and synth.sample_rate == VITS_RATE

    chunks = await collect(synth, "Your temperature is 38.5 degrees. Please drink some water, and rest.")
    assert len(chunks) >= 2  # one per clause, each out as soon as it is rendered
    for chunk in chunks:
        assert chunk.sample_rate == VITS_RATE
        assert chunk.samples.dtype == np.int16 and len(chunk) > 0
    assert await collect(synth, " ... ") == []  # nothing speakable: nothing synthesised
    whole = synth.synthesize_blocking("Hello there.")
    assert whole.sample_rate == VITS_RATE and len(whole) > 0


async def test_vits_synthesis_runs_off_the_event_loop(tiny_vits, executor) -> None:
    synth = CoquiSynthesizer(*tiny_vits, executor, language="en", threads=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await collect(synth, "One clause here. Another clause there. And a third one, for good measure.")
    task.cancel()
    assert ticks > 3  # the loop kept turning while the model ran


def test_missing_files_name_the_settings_to_fix(tmp_path, executor) -> None:
    with pytest.raises(CoquiUnavailable, match="CARECALL_COQUI_MODEL_PATH"):
        CoquiSynthesizer(tmp_path / "nope.pth", tmp_path / "config.json", executor, language="en")


def test_from_settings_reads_paths_and_device(tiny_vits, executor, monkeypatch) -> None:
    from settings import Settings

    model_path, config_path = tiny_vits
    monkeypatch.setenv("CARECALL_COQUI_MODEL_PATH", str(model_path))
    monkeypatch.setenv("CARECALL_COQUI_CONFIG_PATH", str(config_path))
    monkeypatch.setenv("CARECALL_COQUI_DEVICE", "cpu")
    synth = CoquiSynthesizer.from_settings(Settings(), executor, language="en")
    assert synth.sample_rate == VITS_RATE

    monkeypatch.delenv("CARECALL_COQUI_MODEL_PATH")
    with pytest.raises(CoquiUnavailable, match="CARECALL_COQUI_MODEL_PATH is not set"):
        CoquiSynthesizer.from_settings(Settings(), executor, language="en")


# --- XTTS-v2, streamed ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xtts_en(tiny_xtts, executor) -> CoquiSynthesizer:
    return CoquiSynthesizer(
        tiny_xtts, None, executor, language="en", speaker_wav=reference_voice(), stream_chunk_size=3, threads=1
    )


async def test_xtts_streams_several_chunks_per_clause(xtts_en) -> None:
    assert isinstance(xtts_en, Synthesizer)
    assert xtts_en.is_xtts and xtts_en.sample_rate == 24_000

    started = time.monotonic()
    first_at = None
    chunks: list[Pcm] = []
    async for chunk in xtts_en.synthesize("Hello, how are you feeling today?"):
        first_at = first_at or time.monotonic() - started
        chunks.append(chunk)
    total = time.monotonic() - started
    assert len(chunks) >= 3, "inference_stream should hand over audio chunk by chunk"
    assert all(c.sample_rate == 24_000 and len(c) > 0 for c in chunks)
    assert first_at is not None and first_at < total  # the first chunk came before the clause was done


async def test_xtts_stream_stops_cleanly_when_the_caller_barges_in(xtts_en) -> None:
    stream = xtts_en.synthesize("Please tell me where it hurts.")
    first = await anext(stream)
    assert len(first) > 0
    await stream.aclose()  # barge-in: the consumer stops after one chunk
    assert not xtts_en._turn.locked()  # the model is free again at once for the next turn
    chunks = await asyncio.wait_for(collect(xtts_en, "Thank you."), timeout=60)
    assert chunks


async def test_xtts_call_cancelled_mid_chunk_leaves_the_model_free(xtts_en) -> None:
    first = asyncio.Event()

    async def speak() -> None:
        async for _ in xtts_en.synthesize("Where does it hurt the most?"):
            first.set()

    task = asyncio.create_task(speak())
    await first.wait()  # the next chunk is being computed on an executor thread now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not xtts_en._turn.locked()  # released only once the running step had finished
    assert await asyncio.wait_for(collect(xtts_en, "Thank you."), timeout=60)


async def test_xtts_mandarin_goes_through_pinyin(tiny_xtts, executor) -> None:
    synth = CoquiSynthesizer(
        tiny_xtts, None, executor, language="zh", speaker_wav=reference_voice(), stream_chunk_size=3, threads=1
    )
    chunks = await collect(synth, "您好，请问哪里不舒服？")
    assert chunks and all(c.sample_rate == 24_000 for c in chunks)


def test_xtts_finds_a_reference_wav_beside_the_model(tiny_xtts, executor, tmp_path) -> None:
    import shutil

    import soundfile

    folder = tmp_path / "xtts"
    shutil.copytree(tiny_xtts, folder)
    with pytest.raises(CoquiUnavailable, match=r"reference\.wav"):
        CoquiSynthesizer(folder, None, executor, language="en")
    waveform, rate = reference_voice()
    soundfile.write(str(folder / "reference.wav"), waveform, rate)
    synth = CoquiSynthesizer(folder / "model.pth", folder / "config.json", executor, language="en")
    assert synth.is_xtts


def test_saved_config_is_the_models_own(tiny_vits) -> None:
    config = json.loads(tiny_vits[1].read_text())
    assert config["model"] == "vits" and config["characters"]["characters"]
