"""Four finals at once (two English, two Mandarin, as in bench/latency.py's 4-call rounds) through the real
recogniser, per batching setting (`DecodeBatcher` max_batch), interleaved so each setting sees the same load.

    python -m bench.asr_concurrent [--reps 4] [--max-batch 4 1]

Prints each request's latency from the common start and, per setting, the median latency (all, en, zh) and
the median of the slowest of the four. Exploration for issue 12's "4 calls at once": run it on a quiet
machine; at load average 15 on 2 cores one setting's figures varied fourfold between repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from settings import Settings
from voice.asr import WhisperRecognizer
from voice.asr_batch import DecodeBatcher
from voice.audio import Pcm
from voice.ports import RecognitionHints
from voice.resample import resample

LINES = [("en", "I have had a sore throat since yesterday."), ("zh", "我嗓子疼，从昨天开始的。"),
         ("en", "No, I don't have a fever."), ("zh", "没有发烧。")]


def clips(executor: ThreadPoolExecutor) -> list[tuple[str, Pcm]]:
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    settings = Settings()
    voices = {"en": PiperSynthesizer.from_settings(settings, executor),
              "zh": MandarinSynthesizer.from_settings(settings, executor)}
    return [(lang, resample(voices[lang].synthesize_blocking(text), 16000)) for lang, text in LINES]


async def four_at_once(asr: WhisperRecognizer, audio: list[tuple[str, Pcm]]) -> list[tuple[str, float]]:
    t0 = time.monotonic()

    async def one(lang: str, pcm: Pcm) -> tuple[str, float]:
        await asr.transcribe(pcm, lang, hints=RecognitionHints("free", ()))
        return lang, time.monotonic() - t0

    return list(await asyncio.gather(*(one(lang, pcm) for lang, pcm in audio)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--max-batch", type=int, nargs="+", default=[4, 1])
    args = parser.parse_args()
    executor = ThreadPoolExecutor(os.cpu_count() or 2)
    asr = WhisperRecognizer.from_settings(Settings(), executor)
    asr.warm_up()
    audio = clips(executor)
    runs: dict[int, list[list[tuple[str, float]]]] = {n: [] for n in args.max_batch}
    for rep in range(args.reps):
        for n in args.max_batch:
            asr._batcher = DecodeBatcher(asr._decoder.decode, executor, max_batch=n)  # the setting under test
            out = asyncio.run(four_at_once(asr, audio))
            runs[n].append(out)
            print(rep, f"max_batch={n}", [(lang, round(t, 2)) for lang, t in out],
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    for n, trials in runs.items():
        def med(lang: str | None, trials: list[list[tuple[str, float]]] = trials) -> float:
            return statistics.median(t for trial in trials for la, t in trial if lang in (None, la))
        worst = statistics.median(max(t for _, t in trial) for trial in trials)
        print(f"max_batch={n}: p50 {med(None):.2f} s, en {med('en'):.2f} s, zh {med('zh'):.2f} s, "
              f"slowest of four {worst:.2f} s")


if __name__ == "__main__":
    main()
