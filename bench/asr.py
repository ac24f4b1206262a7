"""ASR accuracy and speed on real human speech: CER (Mandarin) and WER (English), at 16 kHz and
through the 8 kHz phone band (G.711 μ-law), with ASR time per clip, whether each final kept its
last words, and what batching concurrent calls' decodes gains.

    python -m bench.asr [--configs fitted zh_beam3 ...] [--synthetic] [--batch 4] [--heldout]

Clips: shared/data/real_speech_dev/ (transcripts.tsv). HELD_OUT clips are not used while choosing
settings: run with --heldout once at the end, and report them apart. Figures on the shared 2-core
machine are noisy (other processes load it): compare configurations within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from voice.asr import DecodeOptions, WhisperRecognizer
from voice.asr_decode import WindowPolicy
from voice.audio import Pcm
from voice.g711 import ulaw_decode, ulaw_encode
from voice.languages import languages

_REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("CARECALL_REAL_SPEECH", "")) if os.environ.get("CARECALL_REAL_SPEECH") else next(
    (p / "data" / "real_speech_dev" for p in (_REPO / "shared", _REPO.parent / "shared", _REPO.parent.parent / "shared")
     if (p / "data" / "real_speech_dev").is_dir()), _REPO.parent / "shared" / "data" / "real_speech_dev")
RESULTS = Path(__file__).resolve().parent / "results"
# Never looked at while choosing settings (see docs/guides/voice.md).
HELD_OUT = {"en_librispeech_1995-1837-0001.wav", "zh_aishell1_BAC009S0724W0121.wav"}

# Short triage answers spoken by the project's Mandarin voice (--synthetic): what a call most depends on.
SYNTHETIC_ZH = ["是。", "不是。", "没有。", "有。", "三十八度五。", "两天了。", "我胸口疼。", "左边胳膊麻。",
                "没有发烧。", "大概三个小时。"]
SYNTHETIC_EN = ["Yes.", "No.", "Thirty eight point five.", "About two days.", "My chest hurts.",
                "Mend the coat before you go out."]


def configs() -> dict[str, DecodeOptions]:
    fitted = WindowPolicy()
    base = dict(beam_size=5, beam_by_language=(("en", 1), ("zh", 5)))
    return {
        # What CareCall did before: English 10 s window, Mandarin Whisper's full 30 s window.
        "before": DecodeOptions(**base, window=WindowPolicy(min_window_s=30, margin_s=0, coverage_gap_s=99,
                                                            repetition_retry=False)),
        "en_10s": DecodeOptions(**base, window=WindowPolicy(min_window_s=10, max_window_s=10, margin_s=0,
                                                            coverage_gap_s=99)),
        "fitted": DecodeOptions(**base, window=fitted),
        "zh_beam3": DecodeOptions(beam_size=5, beam_by_language=(("en", 1), ("zh", 3)), window=fitted),
        "zh_beam1": DecodeOptions(beam_size=5, beam_by_language=(("en", 1), ("zh", 1)), window=fitted),
        "margin1": DecodeOptions(**base, window=WindowPolicy(margin_s=1.0)),
    }


@dataclass
class Clip:
    name: str
    language: str
    reference: str
    audio: Pcm


def load_wav(path: Path) -> Pcm:
    with wave.open(str(path)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit mono")
        return Pcm(np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate())


def real_clips(held_out: bool) -> list[Clip]:
    with open(REAL / "transcripts.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Clip(r["file"], r["lang"], r["reference"], load_wav(REAL / r["file"]))
            for r in rows if (r["file"] in HELD_OUT) == held_out]


def phone_band(audio: Pcm) -> Pcm:
    """What a phone line delivers: 8 kHz, μ-law coded."""
    narrow = soxr.resample(audio.to_float(), audio.sample_rate, 8000, quality="HQ")
    coded = ulaw_decode(ulaw_encode(Pcm.from_float(narrow, 8000).samples))
    return Pcm(coded, 8000)


# --- scoring ---------------------------------------------------------------------------------
def normalise(text: str, language: str) -> list[str]:
    """The units scored: characters where the language writes no spaces (CER), else words (WER); numbers
    spelled as the language's pack spells them."""
    pack = languages[language]
    if not pack.spaced:
        text = pack.finish_transcript(text)  # simplified characters (its punctuation is dropped below)
        text = re.sub(r"\d+(?:\.\d+)?", lambda m: pack.spell_number(m.group()), text)
        return [c for c in text if c.isalnum()]
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: " " + pack.spell_number(m.group()) + " ", text.lower())
    text = text.replace("-", " ")
    return re.sub(r"[^a-z' ]+", " ", text).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def kept_ending(reference: str, hypothesis: str, language: str) -> bool:
    """The final is not truncated: the reference's last word (en) or last two characters (zh: a language
    written without spaces) appear in the hypothesis' last few units."""
    ref, hyp = normalise(reference, language), normalise(hypothesis, language)
    if not ref:
        return True
    if not languages[language].spaced:
        tail = ref[-2:]
        window = hyp[-4:]
        return sum(c in window for c in tail) >= 1
    return ref[-1] in hyp[-3:]


# --- runs -----------------------------------------------------------------------------------------
def run_config(rec: WhisperRecognizer, clips: list[Clip], band: str) -> dict:
    per: list[dict] = []
    errs = {"zh": [0, 0], "en": [0, 0]}
    times = {"zh": [], "en": []}
    for clip in clips:
        audio = clip.audio if band == "16k" else phone_band(clip.audio)
        transcript, res = rec.transcribe_blocking(audio, clip.language)
        ref, hyp = normalise(clip.reference, clip.language), normalise(transcript.text, clip.language)
        e = edits(ref, hyp)
        errs[clip.language][0] += e
        errs[clip.language][1] += len(ref)
        times[clip.language].append(transcript.processing_s)
        per.append({"clip": clip.name, "audio_s": round(clip.audio.duration, 2),
                    "asr_s": round(transcript.processing_s, 3),
                    "errors": e, "units": len(ref), "kept_ending": kept_ending(clip.reference, transcript.text,
                                                                                clip.language),
                    "window_s": res.window_s, "retried": res.retried, "text": transcript.text})
    out: dict = {"clips": per}
    for lang in ("zh", "en"):
        if errs[lang][1]:
            out[f"{'cer' if lang == 'zh' else 'wer'}_{lang}"] = round(100 * errs[lang][0] / errs[lang][1], 1)
            out[f"asr_s_median_{lang}"] = round(statistics.median(times[lang]), 3)
            out[f"asr_s_total_{lang}"] = round(sum(times[lang]), 2)
    out["truncated_finals"] = sum(not p["kept_ending"] for p in per)
    return out


def run_batching(rec: WhisperRecognizer, clips: list[Clip], n: int) -> dict:
    """n calls' utterances at once: one after another vs one batched encoder pass."""
    out = {}
    for lang in ("zh", "en"):
        same = [c.audio for c in clips if c.language == lang][:n]
        if len(same) < 2:
            continue
        started = time.monotonic()
        for a in same:
            rec.transcribe_blocking(a, lang)
        sequential = time.monotonic() - started
        started = time.monotonic()
        rec.decode_batch_blocking(same, lang)
        batched = time.monotonic() - started
        out[lang] = {"utterances": len(same), "sequential_s": round(sequential, 2), "batched_s": round(batched, 2)}
    return out


def synthetic_clips() -> list[Clip]:
    from settings import Settings
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    ex = ThreadPoolExecutor(1)
    settings = Settings()
    zh = MandarinSynthesizer.from_settings(settings, ex)
    en = PiperSynthesizer.from_settings(settings, ex)
    clips = [Clip(f"tts_zh_{i}", "zh", t, zh.synthesize_blocking(t)) for i, t in enumerate(SYNTHETIC_ZH)]
    clips += [Clip(f"tts_en_{i}", "en", t, en.synthesize_blocking(t)) for i, t in enumerate(SYNTHETIC_EN)]
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["before", "fitted"], choices=sorted(configs()))
    parser.add_argument("--bands", nargs="+", default=["16k", "8k"], choices=["16k", "8k"])
    parser.add_argument("--synthetic", action="store_true", help="add short answers in the project's voices")
    parser.add_argument("--heldout", action="store_true", help="score the held-out clips instead of the dev ones")
    parser.add_argument("--batch", type=int, default=0, help="also time N utterances batched vs sequential")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from settings import Settings
    from voice.models import whisper_dir

    clips = real_clips(args.heldout)
    if args.synthetic:
        clips += synthetic_clips()
    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M"), "clips": "held-out" if args.heldout else "dev",
                     "runs": {}}
    executor = ThreadPoolExecutor(1)
    for name in args.configs:
        rec = WhisperRecognizer(whisper_dir(Settings().models_dir), executor, cpu_threads=args.threads,
                                options=configs()[name])
        rec.transcribe_blocking(Pcm.silence(1.0, 16000), "en")  # warm-up
        for band in args.bands:
            r = run_config(rec, clips, band)
            results["runs"][f"{name}/{band}"] = r
            summary = {k: v for k, v in r.items() if k != "clips"}
            print(f"{name:9s} {band:3s} {json.dumps(summary, ensure_ascii=False)}", flush=True)
        if args.batch:
            b = run_batching(rec, clips, args.batch)
            results["runs"][f"{name}/batching"] = b
            print(f"{name:9s} batching {json.dumps(b)}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    suffix = "_heldout" if args.heldout else ""
    (RESULTS / f"asr{suffix}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
