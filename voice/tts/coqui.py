"""Coqui TTS (the maintained `coqui-tts` fork, import `TTS`) for GPU deployments: the `[coqui]` extra.

Two kinds of model, both loaded from LOCAL files only (`TTS(model_path=..., config_path=...)`, never a
hub name: nothing is downloaded):
- a plain model (VITS and the like): text is normalised, split into clauses, and each clause is one
  inference in the executor, yielded as soon as it is done;
- XTTS-v2: each clause goes through `Xtts.inference_stream`, and every chunk it yields (a few tenths
  of a second of audio) is passed on at once, so the first audio is out long before the clause ends.
  The voice is computed once from a reference waveform (or one of the model's built-in speakers);
  a waveform rather than a file path, because coqui-tts reads files through torchcodec.

torch and TTS are imported when a synthesizer is built, never at module import, so the core product
(and its main virtual environment) never needs torch. `make coqui` builds a separate environment
with the extra (scripts/install-coqui.sh); a GPU host installs `carecall[coqui]` into its own.
Device: `settings.coqui_device` ("cuda" in production, "cpu" here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from voice.audio import Pcm
from voice.models import ModelMissing
from voice.textnorm import ClauseSplitter, normalize

if TYPE_CHECKING:
    from settings import Settings

T = TypeVar("T")

INSTALL_FIX = "run `make coqui` (a separate environment), or `pip install 'carecall[coqui]'` on a GPU host"
PATHS_FIX = (
    "set CARECALL_COQUI_MODEL_PATH (a checkpoint file, or an XTTS folder) and CARECALL_COQUI_CONFIG_PATH "
    "(its config.json) to local files"
)
XTTS_LANGUAGES = {"en": "en", "zh": "zh-cn"}  # CareCall's language codes -> XTTS's
_REFERENCE_NAMES = ("reference.wav", "speaker.wav")  # looked for beside an XTTS model without a voice given


class CoquiUnavailable(ModelMissing):
    """The Coqui engine cannot start: the extra is not installed, or the model files are not there."""

    def __init__(self, what: str, detail: str, fix: str) -> None:
        RuntimeError.__init__(self, f"{what}: {detail}. To fix: {fix}.")
        self.what = what
        self.fix = fix


def _require_coqui() -> tuple[Any, Any]:
    """(torch, TTS.api.TTS), or `CoquiUnavailable` naming the fix."""
    try:
        import torch
        from TTS.api import TTS
    except ImportError as exc:  # ModuleNotFoundError, or a torch/torchaudio mismatch
        raise CoquiUnavailable("Coqui TTS", f"the [coqui] extra is not importable here ({exc})", INSTALL_FIX) from exc
    return torch, TTS


class CoquiSynthesizer:
    """`voice.ports.Synthesizer` on a local Coqui TTS model, for one language.

    Build once per process and share between calls. XTTS keeps per-stream state inside the model (its
    GPT's prefix embedding), so streams through one synthesizer take turns, clause by clause; a plain
    model has no such state and serves calls side by side.
    """

    def __init__(
        self,
        model_path: Path,
        config_path: Path | None,
        executor: Executor,
        *,
        language: str,
        device: str = "cpu",
        speaker: str | None = None,
        speaker_wav: tuple[np.ndarray, int] | None = None,
        stream_chunk_size: int = 20,
        threads: int | None = None,
    ) -> None:
        """`model_path`: a checkpoint file (plain models) or an XTTS folder (model.pth, vocab.json,
        config.json). `speaker`: a built-in speaker name; `speaker_wav`: (mono float waveform, rate)
        of the voice to clone (XTTS). `threads` caps torch's CPU threads (the cores are shared)."""
        torch, tts_cls = _require_coqui()
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else _config_beside(model_path)
        for what, path in (("model", model_path), ("config", config_path)):
            if not path.exists():
                raise CoquiUnavailable(f"Coqui TTS {what}", f"{path} does not exist", PATHS_FIX)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CoquiUnavailable("Coqui TTS", f"device {device!r} asked for but torch sees no CUDA GPU",
                                   "set CARECALL_COQUI_DEVICE=cpu, or install torch's CUDA build")
        if threads is not None and not device.startswith("cuda"):
            torch.set_num_threads(threads)
        self.is_xtts = json.loads(config_path.read_text(encoding="utf-8")).get("model") == "xtts"
        if self.is_xtts:  # check what needs no model before loading one (seconds, and GBs on a GPU)
            if language not in XTTS_LANGUAGES:
                raise ValueError(f"XTTS has no language for {language!r}; CareCall speaks {sorted(XTTS_LANGUAGES)}")
            if speaker is None and speaker_wav is None:
                speaker_wav = _reference_beside(model_path)  # None: the model's first built-in speaker

        self.language = language
        self._torch = torch
        self._executor = executor
        self._api = tts_cls(model_path=str(model_path), config_path=str(config_path), progress_bar=False).to(device)
        self._model = self._api.synthesizer.tts_model
        self.sample_rate: int = int(self._api.synthesizer.output_sample_rate)
        self._stream_chunk_size = stream_chunk_size
        self._turn = asyncio.Lock()  # XTTS: one stream through the model at a time
        self._step_lock = threading.Lock()
        if self.is_xtts:
            self._xtts_language = XTTS_LANGUAGES[language]
            self._latents, self._speaker_embedding = self._xtts_voice(speaker, speaker_wav)
        else:
            speakers = (self._api.speakers or []) if self._api.is_multi_speaker else []
            self._speaker = speaker or (speakers[0] if speakers else None)
            self._model_language = None
            if self._api.is_multi_lingual:
                languages = self._api.languages or []
                self._model_language = next((name for name in languages if name.startswith(language)), None)
                if self._model_language is None:
                    raise ValueError(f"the Coqui model at {model_path} speaks {languages}, not {language!r}")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        executor: Executor,
        *,
        language: str,
        speaker: str | None = None,
        speaker_wav: tuple[np.ndarray, int] | None = None,
        threads: int | None = 1,
    ) -> CoquiSynthesizer:
        """The model `coqui_model_path`/`coqui_config_path` name, on `coqui_device`. Raises
        `CoquiUnavailable` (a `voice.models.ModelMissing`) with the fix when it cannot start."""
        if settings.coqui_model_path is None:
            _require_coqui()  # a missing extra is the first thing to fix
            raise CoquiUnavailable("Coqui TTS model", "CARECALL_COQUI_MODEL_PATH is not set", PATHS_FIX)
        return cls(
            settings.coqui_model_path,
            settings.coqui_config_path,
            executor,
            language=language,
            device=settings.coqui_device,
            speaker=speaker,
            speaker_wav=speaker_wav,
            threads=threads,
        )

    # --- the seam ---------------------------------------------------------------------------

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        for clause in self._clauses(text):
            if self.is_xtts:
                async with contextlib.aclosing(self._xtts_clause(clause)) as pcms:  # closed at once on barge-in
                    async for pcm in pcms:
                        yield pcm
            else:
                yield await asyncio.get_running_loop().run_in_executor(self._executor, self._render, clause)

    def synthesize_blocking(self, text: str) -> Pcm:
        """The whole text at once, on the calling thread (prompt pre-rendering, tests, tools); not
        while streams run through the same XTTS synthesizer."""
        parts: list[Pcm] = []
        for clause in self._clauses(text):
            if self.is_xtts:
                with self._step_lock:
                    parts.extend(self._to_pcm(chunk) for chunk in self._xtts_start(clause))
            else:
                parts.append(self._render(clause))
        return Pcm.concat(parts, self.sample_rate)

    # --- plain models -----------------------------------------------------------------------

    def _clauses(self, text: str) -> list[str]:
        splitter = ClauseSplitter(self.language)
        return [*splitter.push(normalize(text, self.language)), *splitter.flush()]

    def _render(self, clause: str) -> Pcm:
        wav = self._api.tts(clause, speaker=self._speaker, language=self._model_language, split_sentences=False)
        return Pcm.from_float(np.asarray(wav, dtype=np.float32).reshape(-1), self.sample_rate)

    # --- XTTS -------------------------------------------------------------------------------

    async def _xtts_clause(self, clause: str) -> AsyncIterator[Pcm]:
        async with self._turn:
            chunks = await self._step(self._xtts_start, clause)
            try:
                while (pcm := await self._step(self._next_pcm, chunks)) is not None:
                    yield pcm
            finally:
                with contextlib.suppress(ValueError):  # "already executing" only if cancelled twice mid-step
                    chunks.close()  # no step is running (see _step): frees the stream's GPU tensors now

    def _xtts_start(self, clause: str) -> Iterator[Any]:
        return self._model.inference_stream(
            clause,
            self._xtts_language,
            self._latents,
            self._speaker_embedding,
            stream_chunk_size=self._stream_chunk_size,
            enable_text_splitting=False,  # clauses are already short enough (ClauseSplitter.max_chars)
        )

    async def _step(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the executor. If the call is cancelled (barge-in) mid-step, wait for the step
        to end before giving up the model, so the next stream never overlaps a running one."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._locked, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._step_lock:
            return fn(*args)

    def _next_pcm(self, chunks: Iterator[Any]) -> Pcm | None:
        chunk = next(chunks, None)  # a tensor on the model's device; .cpu() waits for the GPU: not on the loop
        return None if chunk is None else self._to_pcm(chunk)

    def _to_pcm(self, chunk: Any) -> Pcm:
        return Pcm.from_float(chunk.detach().float().cpu().numpy().reshape(-1), self.sample_rate)

    def _xtts_voice(self, speaker: str | None, speaker_wav: tuple[np.ndarray, int] | None) -> tuple[Any, Any]:
        """(GPT conditioning latents, speaker embedding) for the voice, computed once."""
        if speaker_wav is None:
            manager = getattr(self._model, "speaker_manager", None)
            names = list(manager.speakers) if manager is not None else []
            speaker = speaker or (names[0] if names else None)
            if speaker not in names:
                raise ValueError(f"the XTTS model has no built-in speaker {speaker!r} (it has {names[:5]}...)")
            voice = manager.speakers[speaker]
            return voice["gpt_cond_latent"], voice["speaker_embedding"]
        waveform, rate = speaker_wav
        torch = self._torch
        audio = torch.from_numpy(np.asarray(waveform, dtype=np.float32).reshape(1, -1))
        audio = audio[:, : rate * 30].to(self._model.device)  # at most 30 s, as coqui-tts itself does
        with torch.inference_mode():
            embedding = self._model.get_speaker_embedding(audio, rate)
            latents = self._model.get_gpt_cond_latents(audio, rate, length=6, chunk_length=6)
        return latents, embedding


def _config_beside(model_path: Path) -> Path:
    return (model_path if model_path.is_dir() else model_path.parent) / "config.json"


def _reference_beside(model_path: Path) -> tuple[np.ndarray, int] | None:
    """The reference recording stored with an XTTS model; None when it has built-in speakers instead."""
    folder = model_path if model_path.is_dir() else model_path.parent
    for name in _REFERENCE_NAMES:
        if (folder / name).is_file():
            return _read_wav(folder / name)
    if (folder / "speakers_xtts.pth").is_file():
        return None
    raise CoquiUnavailable(
        "Coqui XTTS voice",
        f"no reference voice ({' or '.join(_REFERENCE_NAMES)}) and no built-in speakers file in {folder}",
        f"put a mono reference recording at {folder / 'reference.wav'}",
    )


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile  # a coqui-tts dependency; reads WAV/FLAC without torchcodec

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(rate)
