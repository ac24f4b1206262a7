"""Model assembly: idempotent and cheap the second time; a missing or damaged model fails with
`ModelMissing` naming what is missing and `make models`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voice.models import (
    MANIFEST_NAME,
    WHISPER_FILES,
    ModelMissing,
    read_manifest,
    record_file,
    whisper_dir,
    write_manifest,
    zh_tts_dir,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "assemble_models.py"


def load_assembler():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("assemble_models", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_whisper(folder: Path) -> Path:
    """A folder shaped like the assembled model (small files), with its manifest."""
    folder.mkdir(parents=True)
    for i, name in enumerate(WHISPER_FILES):
        (folder / name).write_bytes(bytes([i]) * (1000 + i))
    write_manifest(folder, {n: record_file(folder / n) for n in WHISPER_FILES}, {"test": True})
    return folder / ".."


def test_unassembled_models_name_the_fix(tmp_path: Path) -> None:
    for lookup, what in ((whisper_dir, "Whisper"), (zh_tts_dir, "Mandarin TTS")):
        with pytest.raises(ModelMissing) as err:
            lookup(tmp_path)
        assert what in str(err.value)
        assert "make models" in str(err.value)


def test_intact_folder_passes_the_cheap_check(tmp_path: Path) -> None:
    fake_whisper(tmp_path / "whisper-base")
    assert whisper_dir(tmp_path) == tmp_path / "whisper-base"


def test_truncated_model_is_reported_damaged(tmp_path: Path) -> None:
    fake_whisper(tmp_path / "whisper-base")
    with (tmp_path / "whisper-base" / "model.bin").open("r+b") as f:
        f.truncate(10)
    with pytest.raises(ModelMissing, match=r"model\.bin.*damaged.*make models"):
        whisper_dir(tmp_path)


def test_deleted_file_is_reported_missing(tmp_path: Path) -> None:
    fake_whisper(tmp_path / "whisper-base")
    (tmp_path / "whisper-base" / "tokenizer.json").unlink()
    with pytest.raises(ModelMissing, match=r"tokenizer\.json is missing.*make models"):
        whisper_dir(tmp_path)


def test_half_written_folder_without_manifest_is_missing(tmp_path: Path) -> None:
    fake_whisper(tmp_path / "whisper-base")
    (tmp_path / "whisper-base" / MANIFEST_NAME).unlink()
    with pytest.raises(ModelMissing, match="not been assembled"):
        whisper_dir(tmp_path)


@pytest.mark.models
def test_whisper_assembly_repairs_damage_and_skips_when_intact(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assembler = load_assembler()
    models = tmp_path / "models"
    dest = assembler.assemble_whisper(models)
    first = read_manifest(dest)
    assert whisper_dir(models) == dest
    assert first is not None
    size = first["files"]["model.bin"]["size"]  # type: ignore[index]
    assert size > 100_000_000  # both halves are in

    def no_reading(*args: object) -> None:
        raise AssertionError("an intact model folder was read again")

    with monkeypatch.context() as m:  # intact: a few stat calls, nothing hashed or joined
        m.setattr(assembler, "sha256_of", no_reading)
        m.setattr(assembler.hashlib, "sha256", no_reading)
        assembler.assemble_whisper(models)
    assert read_manifest(dest) == first

    os.utime(dest / "config.json")  # touched, same bytes: re-hashed once, stamp refreshed, no rebuild
    assembler.assemble_whisper(models)
    assert whisper_dir(models) == dest
    assert read_manifest(dest)["files"]["model.bin"] == first["files"]["model.bin"]  # type: ignore[index]

    with (dest / "model.bin").open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ModelMissing, match="damaged"):
        whisper_dir(models)
    assembler.assemble_whisper(models)  # rebuilt from the parts
    assert whisper_dir(models) == dest
    assert read_manifest(dest)["files"]["model.bin"]["sha256"] == first["files"]["model.bin"]["sha256"]  # type: ignore[index]
    shutil.rmtree(models)


@pytest.mark.models
def test_make_models_second_run_is_fast_and_changes_nothing(models_dir: Path) -> None:
    """`make models` on an assembled cache: no conversion, no join, no re-hash."""
    env = {**os.environ, "CARECALL_CACHE": str(models_dir.parent)}
    before = {p.name: read_manifest(p) for p in models_dir.iterdir() if p.is_dir()}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stderr
    # what makes a first run slow, none of it again (how long it takes is not asserted: the machine may be busy)
    assert not any(w in done.stderr for w in ("joining", "converting", "converter")), done.stderr
    assert {p.name: read_manifest(p) for p in models_dir.iterdir() if p.is_dir()} == before
    assert not (models_dir.parent / "tmp" / "tfconvert").exists()  # the TensorFlow venv is gone


@pytest.mark.models
def test_located_models_exist() -> None:
    from voice.models import piper_voice, smollm2_gguf

    voice = piper_voice()
    assert voice.onnx.suffix == ".onnx" and voice.config.suffix == ".json"
    assert smollm2_gguf().suffix == ".gguf"


def test_engines_refuse_to_start_without_models(tmp_path: Path) -> None:
    """What a fresh checkout sees at server start: an instruction, not a CTranslate2 stack trace."""
    from concurrent.futures import ThreadPoolExecutor

    from settings import Settings
    from voice.asr import WhisperRecognizer
    from voice.tts.mandarin import MandarinSynthesizer

    settings = Settings(cache_dir=tmp_path)
    with ThreadPoolExecutor(1) as executor:
        with pytest.raises(ModelMissing, match=r"Whisper.*make models"):
            WhisperRecognizer.from_settings(settings, executor)
        with pytest.raises(ModelMissing, match=r"Mandarin.*make models"):
            MandarinSynthesizer.from_settings(settings, executor)
