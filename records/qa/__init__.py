"""Conversation QA (对话质检) of every call. When a call ends the recorder runs `store_report`: the
checks below read the finished record (what the caller actually heard, the dialogue's result, the
turn timings and the recogniser's unsure words) and write a report to the call, one row per check.

    report = run_qa(view_of(call))      # pure: a CallView in, a QaReport out
    store_report(session, call)         # the recorder's hook at call end (and `records qa` re-runs)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from dialogue.knowledge import Knowledge, knowledge
from records.models import Call, QaCheck
from records.qa import clinical, conversation
from records.qa.config import QaConfig, qa_config
from records.qa.model import RESULTS, CheckResult, Evidence, QaReport
from records.qa.view import CallView, view_of

log = logging.getLogger("carecall.records.qa")

Check = Callable[[CallView, Knowledge, QaConfig], CheckResult]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("consent", conversation.consent),
    ("identity", conversation.identity),
    ("critical_questions", clinical.critical_questions),
    ("emergency_advice", clinical.emergency_advice),
    ("disposition", clinical.disposition),
    ("repeats", conversation.repeats),
    ("silence", conversation.silences),
    ("latency", conversation.latency),
    ("uncertain_words", conversation.uncertain),
    ("transfer", conversation.transfer),
    ("guard", conversation.guard),
)
CHECK_IDS: tuple[str, ...] = tuple(name for name, _ in CHECKS)


def run_qa(view: CallView, kn: Knowledge | None = None, cfg: QaConfig | None = None) -> QaReport:
    """Every check on one call. A check that fails to run is reported as a warning with the reason,
    never as a crash of the recorder (the call's record is already stored)."""
    kn = kn or knowledge()
    cfg = cfg or qa_config()
    results: list[CheckResult] = []
    for name, fn in CHECKS:
        try:
            results.append(fn(view, kn, cfg))
        except Exception as exc:
            log.exception("call %s: QA check %s failed to run", view.call_id[:8], name)
            results.append(CheckResult(name, "warn", f"check could not run ({type(exc).__name__})"))
    return QaReport(tuple(results))


def store_report(session: Session, call: Call) -> QaReport:
    """Compute and store the QA report of a finished call (replacing an earlier one)."""
    session.flush()
    session.refresh(call)
    report = run_qa(view_of(call))
    call.qa_report = report.to_dict()
    call.qa_result = report.result
    call.qa_at = datetime.now(UTC)
    call.qa_checks.clear()
    session.flush()
    for c in report.checks:
        call.qa_checks.append(QaCheck(check=c.check, result=c.result))
    return report


__all__ = ["CHECKS", "CHECK_IDS", "RESULTS", "CheckResult", "Evidence", "QaReport", "run_qa", "store_report", "view_of"]
