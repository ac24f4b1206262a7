"""Triage accuracy: `carecall eval` on the 45 Semigran vignettes (case text as the caller's statement)
and on our own held-out caller statements, next to the published figures of CLINICAL.md.

    python -m bench.triage_accuracy [--no-readme]

Writes bench/results/triage_accuracy.json and prints a markdown table. Also reports a "voice-fair"
Semigran variant without the sentences only a clinician could report (labs, imaging, vital signs,
bedside tests); it is crude (whole sentences go) and shows what is lost without those numbers."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").exists() else ROOT.parent.parent / "shared"  # or a worktree
SEMIGRAN = SHARED / "data" / "semigran45.jsonl"
DATA = ROOT / "tests" / "dialogue" / "data"
SEMIGRAN_ZH = DATA / "semigran45_zh.jsonl"  # our Chinese rendering of the same 45 vignettes
HELDOUT = [DATA / f"heldout{n}.jsonl" for n in ("", "2", "3", "4", "5", "6", "7", "8", "9", "_g1", "_g2", "_g3", "_g4")]
# Each set was run once before any rule or lexicon change it prompted (then gaps were fixed):
FIRST_RUNS = [
    ("heldout.jsonl (44, zh + en)", "84.1%", 5),
    ("heldout2.jsonl (40, zh + en)", "75.0%", 6),
    ("semigran45_zh.jsonl (45, zh)", "82.2%", 2),
    ("heldout3.jsonl (40, zh + en)", "62.5%", 9),
    ("heldout4.jsonl (40, zh + en)", "65.0%", 11),
    ("heldout5.jsonl (30 clinical vignettes, zh + en)", "73.3%", 5),
    ("heldout6.jsonl (30, zh + en)", "83.3%", 2),
    ("heldout7.jsonl (30, zh + en)", "63.3%", 0),
    ("heldout8.jsonl (20, zh + en)", "65.0%", 5),
    ("heldout9.jsonl (20, zh + en)", "65.0%", 6),
    # written as phone callers talk (third person, rambling, ASR slips), accuracy5 on first run in brackets
    ("heldout_g1.jsonl (40, zh + en; accuracy5 75.0%)", "77.5%", 4),
    ("heldout_g2.jsonl (40, zh + en; accuracy5 80.0%)", "85.0%", 5),
    ("heldout_g3.jsonl (40, zh + en; accuracy5 87.5%)", "87.5%", 1),
    # written after the general fail-safe mechanisms went in: the honest estimate for unseen wording
    ("heldout_g4.jsonl (20, zh + en, after the g1-g3 mechanisms; accuracy5 45.0%)", "65.0%", 5),
]
CARECALL = ROOT / ".venv" / "bin" / "carecall"
BLIND = ROOT / "tests" / "dialogue" / "blind"  # written fresh by the evaluation work; nobody tunes on them
BLIND_STATEMENTS = [
    "statements_red_flags.jsonl", "statements_false_alarms.jsonl", "statements_departments.jsonl",
    "statements_registers.jsonl",
]
CASES = ROOT / "prompts" / "cases"  # each protocol's own cases (`carecall eval --protocol ID`)

PUBLISHED = [
    ("Symptom checkers, Semigran et al. BMJ 2015 (23 apps)", "57%", "em 80%"),
    ("Symptom checkers 2020, Schmieding et al. JMIR 2022 (median of 22)", "55.8%", "several missed"),
    ("Best symptom-checker app 2020 (Schmieding et al.)", "66.7%", "-"),
    ("Physicians, Levine et al. (48 vignettes)", "91%", "-"),
]

# sentences only a clinician could report: labs, imaging, monitoring numbers, bedside tests
_EXAM = re.compile(
    r"laborator|\bserum\b|bilirubin|\binr\b|\balt\b|radiograph|x-ray|\bcxr\b|\bekg\b|\becg\b|otoscop|auscultat|"
    r"rapid antigen|dix-hallpike|centor|in study|physicians recommend|white-cell|saturation|respiratory rate|"
    r"heart rate|blood pressure of|\bbp\b|tachycardic|asterixis|icterus|tympanic|crackles|rales|egophony",
    re.IGNORECASE,
)


def voice_fair(text: str) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = [s for s in sentences if not _EXAM.search(s)]
    return " ".join(kept) or text


def run_eval(path: Path, command: str = "eval") -> tuple[list[str], dict[str, Any]]:
    p = subprocess.run(
        [str(CARECALL), command, str(path), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=1800,
        check=False,
    )
    if p.returncode != 0:
        sys.exit(f"carecall {command} failed on {path}: {p.stderr.strip()[-500:]}")
    lines = p.stdout.strip().splitlines()
    return lines[:-2], json.loads(lines[-1])


def _merged(paths: list[Path], tmp: str, name: str) -> Path:
    out = Path(tmp) / name
    out.write_text("".join(p.read_text(encoding="utf-8") for p in paths), encoding="utf-8")
    return out


def blind_figures() -> dict[str, Any]:
    """The blind sets and the protocol cases, each by itself, plus all blind statements together."""
    out: dict[str, Any] = {name: run_eval(BLIND / name)[1] for name in BLIND_STATEMENTS}
    out["zh_department_test.jsonl"] = run_eval(BLIND / "zh_department_test.jsonl")[1]
    out["conversations.jsonl (simulate)"] = run_eval(BLIND / "conversations.jsonl", "simulate")[1]
    with tempfile.TemporaryDirectory() as tmp:
        out["all blind statements"] = run_eval(_merged([BLIND / n for n in BLIND_STATEMENTS], tmp, "blind.jsonl"))[1]
        out["prompts/cases (every protocol)"] = run_eval(_merged(sorted(CASES.glob("*.jsonl")), tmp, "cases.jsonl"))[1]
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md's results section")
    args = ap.parse_args()

    semigran_lines, semigran = run_eval(SEMIGRAN)
    with tempfile.TemporaryDirectory() as tmp:
        fair_path = Path(tmp) / "semigran45_voice_fair.jsonl"
        rows = [json.loads(line) for line in SEMIGRAN.read_text(encoding="utf-8").splitlines() if line.strip()]
        fair_path.write_text(
            "\n".join(json.dumps({**r, "text": voice_fair(r["text"])}) for r in rows) + "\n", encoding="utf-8"
        )
        _, fair = run_eval(fair_path)
    _, semigran_zh = run_eval(SEMIGRAN_ZH)
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "heldout_all.jsonl"
        merged.write_text("".join(p.read_text(encoding="utf-8") for p in HELDOUT), encoding="utf-8")
        heldout_lines, heldout = run_eval(merged)
    per_set = {p.name: run_eval(p)[1] for p in HELDOUT}
    blind = blind_figures()

    results = {
        "semigran45": semigran,
        "semigran45_voice_fair": fair,
        "semigran45_zh": semigran_zh,
        "heldout": heldout,
        "heldout_per_set": per_set,
        "blind": blind,
        "semigran45_cases": semigran_lines,
        "heldout_cases": heldout_lines,
        "published": [{"who": w, "accuracy3": a, "emergencies": e} for w, a, e in PUBLISHED],
        "first_runs_before_fixes": [
            {"set": n, "accuracy3": a, "under_triaged_emergencies": u} for n, a, u in FIRST_RUNS
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "triage_accuracy.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    table = [
        "| triage of the 45 Semigran vignettes (em / ne / sc) | accuracy (3 levels) | emergencies |",
        "|---|---|---|",
        f"| **CareCall rules, no LLM** (full vignette text) | **{_pct(semigran['accuracy3'])}** | "
        f"{semigran['under_triaged_emergencies']} under-triaged; em {_pct(semigran['accuracy3_by_gold']['em'])} |",
        f"| CareCall, voice-fair text (labs, imaging, vital signs removed) | {_pct(fair['accuracy3'])} | "
        f"{fair['under_triaged_emergencies']} under-triaged |",
        f"| CareCall, the same 45 in Chinese (our rendering) | {_pct(semigran_zh['accuracy3'])} | "
        f"{semigran_zh['under_triaged_emergencies']} under-triaged |",
        *[f"| {w} | {a} | {e} |" for w, a, e in PUBLISHED],
        "",
        "CareCall on its own caller statements (tests/dialogue/data/heldout*.jsonl, zh + en, "
        f"n={heldout['n']}): "
        f"accuracy3 {_pct(heldout['accuracy3'])}, accuracy5 {_pct(heldout['accuracy5'])}, "
        f"{heldout['under_triaged_emergencies']} under-triaged emergencies. These sets shaped the lexicons: on first "
        "sight, before the fixes they prompted, they scored "
        + "; ".join(f"{n} {a} with {u} under-triaged" for n, a, u in FIRST_RUNS)
        + ". Unseen phrasings are the weak spot: expect lower on new wording.",
        "",
        "| set, now (after the fixes it prompted) | n | accuracy3 | accuracy5 | emergencies under-triaged |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {r['n']} | {_pct(r['accuracy3'])} | {_pct(r['accuracy5'])} | "
            f"{r['under_triaged_emergencies']} |"
            for name, r in per_set.items()
        ],
        "",
        "Blind sets (tests/dialogue/blind/, written by the evaluation work, never tuned on) and each protocol's "
        "own cases (prompts/cases/):",
        "",
        "| set | n | accuracy3 | accuracy5 | emergencies under-triaged | department top-1 | red-flag confirmation "
        "on non-emergencies | questions per call (median / p95) |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {r['n']} | {_pct(r['accuracy3'])} | {_pct(r['accuracy5'])} | "
            f"{r['under_triaged_emergencies']} | {_pct(r['department_accuracy'])} | "
            f"{_pct(r['confirmation_on_non_emergencies'])} | "
            + (f"{r['questions_median']} / {r['questions_p95']} |" if "questions_median" in r else "- |")
            for name, r in blind.items()
        ],
    ]
    body = "\n".join(table)
    print(body)
    if not args.no_readme:
        from bench.report import update_readme

        update_readme("triage_accuracy", body)


if __name__ == "__main__":
    main()
