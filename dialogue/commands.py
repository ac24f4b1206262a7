"""`carecall triage` and `carecall eval`: plain typer-compatible functions, registered in cli.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

TO3 = {"emergency_ambulance": "em", "emergency": "em", "consultation_24": "ne", "consultation": "ne", "self_care": "sc"}


def triage(
    lang: str = typer.Option("en", "--lang", help="zh or en"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    text: str = typer.Argument(..., help="the caller's statement"),
) -> None:
    """Single-shot triage of one statement; what it does not say counts as not reported."""
    from dialogue.triage import triage_text

    if lang not in ("zh", "en"):
        raise typer.BadParameter("--lang must be zh or en")
    r = triage_text(text, lang)
    body = {
        "disposition": r.disposition,
        "department": r.department,
        "red_flags": r.red_flags,
        "findings": [
            {"id": f["id"], "present": f["present"], **({"span": f["evidence"]["span"]} if "evidence" in f else {})}
            for f in r.findings
        ],
        "chief_complaint": r.chief_complaint,
        "numbers": r.numbers,
        "department_name": r.department_name,
    }
    if json_out:
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"disposition: {r.disposition}")
    typer.echo(f"department: {r.department} ({r.department_name})")
    typer.echo(f"chief complaint: {r.chief_complaint or '-'}")
    typer.echo(f"red flags: {', '.join(r.red_flags) or 'none'}")
    typer.echo("findings: " + ", ".join(("" if f["present"] else "no ") + f["id"] for f in r.findings))


def evaluate(cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Triage every case; returns per-case rows and the summary (`n`, `accuracy3`, `accuracy5`, ...)."""
    from dialogue.triage import triage_text

    rows: list[dict[str, Any]] = []
    for c in cases:
        r = triage_text(str(c["text"]), str(c.get("lang", "en")))
        gold5 = c.get("gold")
        gold3 = c.get("gold3") or (TO3.get(gold5) if gold5 else None)
        pred3 = TO3[r.disposition]
        rows.append(
            {
                "id": c.get("id"),
                "lang": c.get("lang", "en"),
                "pred": r.disposition,
                "pred3": pred3,
                "gold": gold5,
                "gold3": gold3,
                "ok3": None if gold3 is None else pred3 == gold3,
                "ok5": None if gold5 is None else r.disposition == gold5,
                "under_triaged_emergency": gold3 == "em" and pred3 in ("ne", "sc"),
                "red_flags": r.red_flags,
            }
        )
    with3 = [x for x in rows if x["ok3"] is not None]
    with5 = [x for x in rows if x["ok5"] is not None]
    per_class = {}
    for k in ("em", "ne", "sc"):
        sub = [x for x in with3 if x["gold3"] == k]
        per_class[k] = round(sum(x["ok3"] for x in sub) / len(sub), 4) if sub else None
    summary = {
        "n": len(rows),
        "accuracy3": round(sum(x["ok3"] for x in with3) / len(with3), 4) if with3 else None,
        "accuracy5": round(sum(x["ok5"] for x in with5) / len(with5), 4) if with5 else None,
        "under_triaged_emergencies": sum(x["under_triaged_emergency"] for x in rows),
        "over_triaged": sum(
            1 for x in with3 if ("em", "ne", "sc").index(x["pred3"]) < ("em", "ne", "sc").index(x["gold3"])
        ),
        "accuracy3_by_gold": per_class,
    }
    return rows, summary


def eval_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help='JSONL: {"id","lang","text","gold"?,"gold3"?}'),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON summary line"),
) -> None:
    """Triage every case of FILE; print a line per case and a summary."""
    cases = []
    for i, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                cases.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise typer.BadParameter(f"{file}:{i}: not JSON: {e}") from None
    rows, summary = evaluate(cases)
    for x in rows:
        verdict = (
            "-" if x["ok3"] is None else ("ok" if x["ok3"] else ("UNDER" if x["under_triaged_emergency"] else "miss"))
        )
        gold = x["gold"] or x["gold3"] or "-"
        typer.echo(f"{x['id']}\t{x['lang']}\t{x['pred']}\tgold={gold}\t{verdict}")
    acc3 = "n/a" if summary["accuracy3"] is None else f"{summary['accuracy3']:.1%}"
    acc5 = "n/a" if summary["accuracy5"] is None else f"{summary['accuracy5']:.1%}"
    typer.echo(
        f"n={summary['n']} accuracy3={acc3} accuracy5={acc5} "
        f"under_triaged_emergencies={summary['under_triaged_emergencies']}"
    )
    if json_out:
        typer.echo(json.dumps(summary, ensure_ascii=False))
