"""Red-flag recall and false-alarm burden on every DEV statement file (issue 9), per file and in total:

    python -m bench.redflags [--json] [--misses] [FILE ...]

Per file: n, accuracy3, emergencies, under-triaged emergencies (gold `em`, disposition below emergency and
no red-flag confirmation asked: `Row.under_triaged_emergency`), red-flag recall (emergencies whose call
raised a red flag or would ask a red-flag confirmation), and on non-emergencies the red-flag confirmation
rate and the *alarmed* rate (an emergency disposition or a red-flag confirmation: what `test_blind_eval`
bounds). DEV only: the blind sets (`tests/dialogue/blind/`, `tests/dialogue/heldout_20261202/`) are never
read here. `--misses` lists the under-triaged and alarmed case ids with their text, to decide a change."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialogue.evaluation.cases import StatementCase, load_cases  # noqa: E402
from dialogue.evaluation.metrics import Row  # noqa: E402
from dialogue.evaluation.statements import evaluate_statements  # noqa: E402
from dialogue.knowledge import knowledge  # noqa: E402

BLIND = ("tests/dialogue/blind", "tests/dialogue/heldout_20261202")
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").exists() else ROOT.parent.parent / "shared"  # or a worktree


def dev_files() -> list[Path]:
    t = ROOT / "tests" / "dialogue"
    files = [
        *sorted((t / "dev_false_alarms").glob("*.jsonl")),
        *sorted((t / "dev_redflags").glob("*.jsonl")),
        *sorted((t / "data").glob("heldout*.jsonl")),
        SHARED / "data" / "semigran45.jsonl",
        t / "data" / "semigran45_zh.jsonl",
        *sorted((ROOT / "prompts" / "cases").glob("*.jsonl")),
    ]
    return [f for f in files if f.exists()]


def figures(rows: list[Row]) -> dict[str, Any]:
    em = [r for r in rows if r.gold3 == "em"]
    non = [r for r in rows if r.gold3 in ("ne", "sc")]
    scored = [r for r in rows if r.gold3 is not None]
    caught = [r for r in em if r.red_flags or r.confirmation_asked or r.pred3 == "em"]
    alarmed = [r for r in non if r.pred3 == "em" or r.confirmation_asked]

    def frac(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "n": len(rows),
        "accuracy3": frac(sum(bool(r.ok3) for r in scored), len(scored)),
        "emergencies": len(em),
        "under_triaged": sum(r.under_triaged_emergency for r in rows),
        "red_flag_recall": frac(len(caught), len(em)),
        "non_emergencies": len(non),
        "confirmation_on_non_emergencies": frac(sum(r.confirmation_asked for r in non), len(non)),
        "alarmed": len(alarmed),
        "alarmed_on_non_emergencies": frac(len(alarmed), len(non)),
    }


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--json", action="store_true", help="one JSON object: per file and total")
    ap.add_argument("--misses", action="store_true", help="list under-triaged and alarmed cases")
    args = ap.parse_args(argv)
    files = args.files or dev_files()
    if any(_rel(f).startswith(BLIND) for f in files):
        ap.error("the blind sets are not DEV: measure them with `carecall eval` once, at the end")
    kn = knowledge()
    per: dict[str, dict[str, Any]] = {}
    every: list[Row] = []
    texts: dict[str, str] = {}
    for f in files:
        cases = load_cases(f, "statement", kn)
        texts.update({c.id: c.text for c in cases if isinstance(c, StatementCase)})
        rows = evaluate_statements(cases, kn)  # type: ignore[arg-type]
        per[_rel(f)] = figures(rows)
        every += rows
        if args.misses:
            for r in rows:
                if r.under_triaged_emergency:
                    print(f"UNDER   {r.id}: {texts[r.id]} -> {r.pred}", file=sys.stderr)
                elif r.gold3 in ("ne", "sc") and (r.pred3 == "em" or r.confirmation_asked):
                    why = ",".join(r.red_flags) or "confirmation"
                    print(f"ALARMED {r.id}: {texts[r.id]} -> {r.pred} [{why}]", file=sys.stderr)
    total = figures(every)
    if args.json:
        print(json.dumps({"files": per, "total": total}, ensure_ascii=False))
        return 0
    cols = ["n", "accuracy3", "emergencies", "under_triaged", "red_flag_recall", "alarmed_on_non_emergencies"]
    print(f"{'file':58} " + " ".join(f"{c[:12]:>12}" for c in cols))
    for name, fig in [*per.items(), ("TOTAL", total)]:
        print(f"{name[-58:]:58} " + " ".join(f"{'-' if fig[c] is None else fig[c]!s:>12}" for c in cols))
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
