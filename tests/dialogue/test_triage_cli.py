"""`carecall triage` and `carecall eval` through the installed entry point, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARECALL = ROOT / ".venv" / "bin" / "carecall"
FIVE = {"emergency_ambulance", "emergency", "consultation_24", "consultation", "self_care"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CARECALL), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_triage_json_zh() -> None:
    p = run("triage", "--lang", "zh", "--json", "宝宝两个月大，发烧38度5")
    assert p.returncode == 0, p.stderr
    body = json.loads(p.stdout.strip().splitlines()[-1])
    assert body["disposition"] == "emergency" and body["department"] == "emergency"
    assert body["red_flags"] == ["infant_fever"]
    assert {"id": "fever", "present": True, "span": "发烧"} in body["findings"]


def test_triage_json_en_and_plain_output() -> None:
    p = run("triage", "--lang", "en", "--json", "I have a runny nose and a sore throat, no fever")
    body = json.loads(p.stdout)
    assert body["disposition"] in FIVE and body["disposition"] == "self_care"
    assert body["red_flags"] == []
    assert any(f["id"] == "fever" and f["present"] is False for f in body["findings"])
    p = run("triage", "--lang", "en", "crushing chest pain and sweating")
    assert p.returncode == 0 and "disposition: emergency_ambulance" in p.stdout


def test_eval_json_summary(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "a", "lang": "en", "text": "crushing chest pain spreading to my jaw", "gold": "emergency_ambulance"},
        {"id": "b", "lang": "zh", "text": "流鼻涕，打喷嚏，不发烧", "gold3": "sc"},
        {"id": "c", "lang": "en", "text": "I feel a little dizzy", "gold3": "em"},
        {"id": "d", "lang": "en", "text": "sore throat"},
    ]
    cases.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    p = run("eval", str(cases), "--json")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == len(rows) + 2  # a line per case, a summary line, the JSON line
    summary = json.loads(lines[-1])
    assert summary["n"] == 4
    assert summary["accuracy3"] == round(2 / 3, 4)
    assert summary["accuracy5"] == 1.0
    assert summary["under_triaged_emergencies"] == 1


def test_eval_without_gold_gives_null_accuracy(tmp_path: Path) -> None:
    cases = tmp_path / "nogold.jsonl"
    cases.write_text(json.dumps({"id": "x", "lang": "en", "text": "headache"}) + "\n", encoding="utf-8")
    summary = json.loads(run("eval", str(cases), "--json").stdout.strip().splitlines()[-1])
    assert summary["accuracy3"] is None and summary["accuracy5"] is None and summary["n"] == 1
