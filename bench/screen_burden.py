"""The burden of the emergency screen (issue 9 §1): questions per triage call, median and p95, with and without
the screen, over whole text conversations with the real `TriageDialogue`.

    python -m bench.screen_burden [--json]

Each case's statement (tests/dialogue/data/heldout*.jsonl, both languages) opens a call after consent; a
simulated caller then denies everything it is asked ("no"), confirms every read-back and does not know any
number: the call's questions are what a caller with nothing more to report must answer. Counted after the
opening statement (the consent and "what is the problem?" prompts are the same with or without the screen).
Calls that escalate stop there. Writes bench/results/screen_burden.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "dialogue" / "data"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from dialogue.factory import build_dialogue_factory  # noqa: E402
from dialogue.readback import ReadBackAsk  # noqa: E402
from dialogue.screen import Screen, ScreenData  # noqa: E402
from voice.conversation import CallerUtterance, Escalate  # noqa: E402
from voice.events import CallInfo  # noqa: E402

ANSWERS = {
    "en": {"consent": "yes", "no": "no", "yes": "yes", "number": "I don't know"},
    "zh": {"consent": "好的", "no": "没有", "yes": "对", "number": "不知道"},
}


def _p95(xs: list[int]) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))])


async def one_call(case: dict[str, Any], screen: bool) -> dict[str, Any]:
    lang = "zh" if case["lang"] == "zh" else "en"
    a = ANSWERS[lang]
    factory = build_dialogue_factory(chat_model=None, emergency_numbers={"zh": "120", "en": "911"}, llm_capable=False)
    d: Any = factory(CallInfo(call_id=case["id"], language=lang, channel="text"))  # type: ignore[arg-type]
    if not screen:
        d.screen = Screen(lang, ScreenData(d.screen.data.items, [], d.screen.data.text))
    [o async for o in d.opening()]
    turn = 1
    [o async for o in d.respond(CallerUtterance(a["consent"], turn))]
    start = d.questions_put
    escalated = False
    text = case["text"]
    for _ in range(40):
        turn += 1
        out = [o async for o in d.respond(CallerUtterance(text, turn))]
        if any(isinstance(o, Escalate) and o.level != "nurse" for o in out) or d.ended:
            escalated = bool(d.escalated) or escalated
            break
        if isinstance(d.check, ReadBackAsk) and d.check.kind != "renumber":
            text = a["yes"]
        elif d.last_kind in ("number", "scale", "duration"):
            text = a["number"]
        else:
            text = a["no"]
    r = d.result()
    asked = d.questions_put - start - (1 if d.escalated and not d.transferred else 0)  # not the transfer offer
    return {
        "id": case["id"],
        "lang": lang,
        "questions": asked,
        "screen_questions": r.screen_questions,
        "readbacks": len(r.readbacks),
        "disposition": r.disposition,
        "escalated": bool(d.escalated),
    }


async def run() -> dict[str, Any]:
    cases = [json.loads(line) for p in sorted(DATA.glob("heldout*.jsonl")) for line in p.open(encoding="utf-8")]
    out: dict[str, Any] = {"cases": len(cases)}
    for screen in (True, False):
        calls = [await one_call(c, screen) for c in cases]
        key = "with_screen" if screen else "without_screen"
        for lang in ("all", "en", "zh"):
            sel = [c for c in calls if lang == "all" or c["lang"] == lang]
            qs = [c["questions"] for c in sel]
            out[f"{key}_{lang}"] = {
                "calls": len(sel),
                "questions_median": statistics.median(qs),
                "questions_p95": _p95(qs),
                "questions_max": max(qs),
                "screen_questions_median": statistics.median(c["screen_questions"] for c in sel),
                "readbacks_total": sum(c["readbacks"] for c in sel),
                "non_escalated_calls": sum(not c["escalated"] for c in sel),
            }
        non = [c for c in calls if not c["escalated"]]
        qs = [c["questions"] for c in non]
        out[f"{key}_non_escalated"] = {
            "calls": len(non),
            "questions_median": statistics.median(qs),
            "questions_p95": _p95(qs),
            "questions_max": max(qs),
            "screen_questions_median": statistics.median(c["screen_questions"] for c in non),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = ap.parse_args()
    summary = asyncio.run(run())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "screen_burden.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.json:
        print("| set | calls | median | p95 | max | screen q. median |")
        print("|---|---|---|---|---|---|")
        for key in ("with_screen", "without_screen"):
            for lang in ("all", "en", "zh", "non_escalated"):
                s = summary[f"{key}_{lang}"]
                print(f"| {key.replace('_', ' ')} ({lang}) | {s['calls']} | {s['questions_median']} | "
                      f"{s['questions_p95']} | {s['questions_max']} | {s['screen_questions_median']} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
