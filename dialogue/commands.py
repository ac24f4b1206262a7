"""`carecall triage`, `carecall eval` and `carecall simulate`: plain typer-compatible functions, registered
in cli.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from voice.languages import languages


def triage(
    lang: str = typer.Option("en", "--lang", help="a language code: " + ", ".join(languages)),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    text: str = typer.Argument(..., help="the caller's statement"),
) -> None:
    """Single-shot triage of one statement; what it does not say counts as not reported."""
    from dialogue.triage import triage_text

    if lang not in languages:
        raise typer.BadParameter(f"--lang must be one of {', '.join(languages)}")
    r = triage_text(text, lang)
    body = {
        "disposition": r.disposition,
        "department": r.department,
        "red_flags": list(r.red_flags),
        "findings": [
            {"id": f.id, "present": f.present, **({"span": f.evidence.span} if f.evidence else {})} for f in r.findings
        ],
        "chief_complaint": r.chief_complaint,
        "numbers": dict(r.numbers),
        "department_name": r.department_name,
    }
    if json_out:
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"disposition: {r.disposition}")
    typer.echo(f"department: {r.department} ({r.department_name})")
    typer.echo(f"chief complaint: {r.chief_complaint or '-'}")
    typer.echo(f"red flags: {', '.join(r.red_flags) or 'none'}")
    typer.echo("findings: " + ", ".join(("" if f.present else "no ") + f.id for f in r.findings))


def _load(file: Path | None, protocol: str | None, kind: str) -> tuple[Path, list[Any]]:
    from dialogue.evaluation.cases import CaseError, load_cases
    from dialogue.knowledge import PROMPTS_DIR, knowledge

    kn = knowledge()
    if protocol is not None:
        if file is not None:
            raise typer.BadParameter("give a case FILE or --protocol, not both")
        if protocol not in kn.protocols:
            raise typer.BadParameter(f"--protocol: unknown protocol {protocol!r} (see prompts/protocols/)")
        file = PROMPTS_DIR / "cases" / f"{protocol}.jsonl"
        if not file.exists():
            raise typer.BadParameter(f"--protocol: {file} has no cases yet")
    if file is None:
        raise typer.BadParameter("give a case FILE (JSONL) or --protocol ID")
    try:
        return file, load_cases(file, kind, kn)  # type: ignore[arg-type]
    except CaseError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _case_line(x: Any) -> str:
    verdict = "-" if x.ok3 is None else ("ok" if x.ok3 else ("UNDER" if x.under_triaged_emergency else "miss"))
    gold = x.gold or x.gold3 or "-"
    line = f"{x.id}\t{x.lang}\t{x.pred}\tdept={x.department}\tgold={gold}\t{verdict}"
    if x.dept_ok is not None:
        line += "\tdept_ok" if x.dept_ok else f"\tdept_miss(want {'|'.join(x.departments)})"
    if x.confirmation_asked:
        line += "\tconfirm"
    if x.questions is not None:
        line += f"\tq={x.questions}\tflags={','.join(x.red_flags) or '-'}"
    return line


def _summary_line(s: dict[str, Any]) -> str:
    return (
        f"n={s['n']} accuracy3={_pct(s['accuracy3'])} accuracy5={_pct(s['accuracy5'])} "
        f"under_triaged_emergencies={s['under_triaged_emergencies']} "
        f"department_accuracy={_pct(s['department_accuracy'])} (n={s['department_n']}) "
        f"confirmation_asked={s['confirmation_asked']} "
        f"confirmation_on_non_emergencies={_pct(s['confirmation_on_non_emergencies'])}"
    )


def eval_cmd(
    file: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help='JSONL: {"id","lang","text","gold"?,"gold3"?,"departments"?}'
    ),
    protocol: str | None = typer.Option(None, "--protocol", help="run prompts/cases/<protocol>.jsonl"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON summary line"),
) -> None:
    """Triage every case of FILE as one statement; print a line per case and a summary."""
    from dialogue.evaluation.metrics import summarise
    from dialogue.evaluation.statements import evaluate_statements

    _, cases = _load(file, protocol, "statement")
    rows = evaluate_statements(cases)
    for x in rows:
        typer.echo(_case_line(x))
    summary = summarise(rows)
    typer.echo(_summary_line(summary))
    if json_out:
        typer.echo(json.dumps(summary, ensure_ascii=False))


def simulate_cmd(
    file: Path | None = typer.Argument(None, exists=True, dir_okay=False, help="JSONL conversation cases"),
    protocol: str | None = typer.Option(None, "--protocol", help="the conversation cases of prompts/cases/<id>.jsonl"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON summary line"),
    voice: bool = typer.Option(False, "--voice", help="through the real server: synthesised speech, real ASR"),
    show: bool = typer.Option(False, "--show", help="print each conversation"),
) -> None:
    """Simulated callers hold whole triage conversations (answers from each case's truth)."""
    import asyncio

    from dialogue.evaluation.metrics import summarise_conversations

    _, cases = _load(file, protocol, "conversation")
    if voice:
        from dialogue.evaluation.voice import simulate_voice

        try:
            convs = asyncio.run(simulate_voice(cases))
        except (OSError, RuntimeError, TimeoutError) as e:  # models missing, port taken, the server gave up
            typer.echo(f"error: the voice run could not complete: {e}", err=True)
            raise typer.Exit(1) from None
    else:
        from dialogue.simulate import simulate

        convs = asyncio.run(simulate(cases))
    for c in convs:
        typer.echo(_case_line(c.row))
        if show:
            for who, text in c.turns:
                typer.echo(f"    {who:>6}: {text}")
    summary = summarise_conversations([c.row for c in convs])
    summary["caller_fallbacks"] = sum(c.fallbacks for c in convs)
    typer.echo(_summary_line(summary))
    typer.echo(
        f"questions per call: median {summary['questions_median']} p95 {summary['questions_p95']}; "
        f"caller had to guess a question {summary['caller_fallbacks']} times"
    )
    for flag, r in summary["red_flag_recall"].items():
        missed = f" missed: {', '.join(r['missed'])}" if r["missed"] else ""
        typer.echo(f"red flag {flag}: recall {_pct(r['recall'])} of {r['n']}{missed}")
    if json_out:
        typer.echo(json.dumps(summary, ensure_ascii=False))
