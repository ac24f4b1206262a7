"""The figures of the console's dashboard over a date range (days are UTC calendar days): calls per
day by channel and mode, dispositions, departments, red flags, transfers and takeovers, follow-up
reach and problems found, QA results; and, for administrators, the service figures: QA pass rate
per check, voice-to-voice p50/p95 per day and the recogniser's unsure words per day.

Rows are read once for the range and counted here (the same code on SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from records.models import DISPOSITIONS, Call, CallTag, QaCheck, Review, Turn

MAX_DAYS = 366
DEFAULT_DAYS = 14


class StatsError(ValueError):
    """A date range the dashboard cannot show; the message says why."""


@dataclass(frozen=True, slots=True)
class DateRange:
    start: date
    end: date  # inclusive

    @classmethod
    def parse(cls, date_from: str | None, date_to: str | None, today: date | None = None) -> DateRange:
        today = today or datetime.now(UTC).date()
        try:
            end = date.fromisoformat(date_to) if date_to else today
            start = date.fromisoformat(date_from) if date_from else end - timedelta(days=DEFAULT_DAYS - 1)
        except ValueError:
            raise StatsError("dates must look like 2026-12-01") from None
        if start > end:
            raise StatsError("the start date is after the end date")
        if (end - start).days + 1 > MAX_DAYS:
            raise StatsError(f"a range of at most {MAX_DAYS} days")
        return cls(start, end)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        return datetime.combine(self.start, time.min, UTC), datetime.combine(
            self.end + timedelta(days=1), time.min, UTC
        )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def dashboard(session: Session, span: DateRange, *, service: bool) -> dict[str, Any]:
    lo, hi = span.bounds()
    calls = list(session.scalars(select(Call).where(Call.started_at >= lo, Call.started_at < hi)))
    ids = [c.id for c in calls]
    day_of = {c.id: c.started_at.astimezone(UTC).date().isoformat() for c in calls}
    days = [d.isoformat() for d in span.days()]
    index = {d: i for i, d in enumerate(days)}

    def per_day(key: Any) -> dict[str, list[int]]:
        series: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
        for c in calls:
            series[key(c) or "unknown"][index[day_of[c.id]]] += 1
        return dict(sorted(series.items()))

    tags = _in_chunks(
        session, ids, lambda chunk: select(CallTag.call_id, CallTag.tag).where(CallTag.call_id.in_(chunk))
    )

    def takeovers(chunk: list[str]) -> Any:
        return select(Review.call_id).where(Review.call_id.in_(chunk), Review.kind == "takeover")

    takeover_ids = {cid for (cid,) in _in_chunks(session, ids, takeovers)}
    followups = [c for c in calls if c.mode == "followup"]
    reached = [c for c in followups if c.call_result.identity_confirmed]
    dispositions = Counter(c.effective_disposition or "none" for c in calls)
    out: dict[str, Any] = {
        "range": {"from": span.start.isoformat(), "to": span.end.isoformat()},
        "days": days,
        "calls_by_channel": per_day(lambda c: c.channel),
        "calls_by_mode": per_day(lambda c: c.mode),
        "totals": {
            "calls": len(calls),
            "triage": sum(1 for c in calls if c.mode == "triage"),
            "followup": len(followups),
            "red_flag_calls": sum(1 for c in calls if c.has_red_flags),
            "transfers": sum(1 for c in calls if c.end_reason == "transferred"),
            "takeovers": len(takeover_ids | {c.id for c in calls if c.end_reason == "taken_over"}),
        },
        "dispositions": {d: dispositions[d] for d in (*DISPOSITIONS, "none") if dispositions[d]},
        "departments": dict(Counter(c.department for c in calls if c.department).most_common()),
        "red_flags": dict(Counter(t.split(":", 1)[1] for _, t in tags if t.startswith("red_flag:")).most_common()),
        "followup": {
            "calls": len(followups),
            "reached": len(reached),
            "reach_rate": round(len(reached) / len(followups), 4) if followups else None,
            "problems": dict(Counter(t.split(":", 1)[1] for _, t in tags if t.startswith("followup:")).most_common()),
        },
        "qa": {r: sum(1 for c in calls if c.qa_result == r) for r in ("pass", "warn", "fail")},
    }
    if service:
        out["service"] = _service(session, calls, ids, days, day_of, index)
    return out


def _service(
    session: Session, calls: list[Call], ids: list[str], days: list[str], day_of: dict[str, str], index: dict[str, int]
) -> dict[str, Any]:
    checks: dict[str, Counter[str]] = defaultdict(Counter)
    for check, result in _in_chunks(
        session, ids, lambda chunk: select(QaCheck.check, QaCheck.result).where(QaCheck.call_id.in_(chunk))
    ):
        checks[check][result] += 1
    rates = {}
    for check, n in checks.items():
        applied = n["pass"] + n["warn"] + n["fail"]
        rates[check] = {
            **{r: n[r] for r in ("pass", "warn", "fail", "na")},
            "pass_rate": round(n["pass"] / applied, 4) if applied else None,
        }
    latency: list[list[float]] = [[] for _ in days]
    caller_turns = [0] * len(days)
    unsure = [0] * len(days)
    for call_id, speaker, v2v, words in _in_chunks(
        session, ids,
        lambda chunk: select(Turn.call_id, Turn.speaker, Turn.voice_to_voice_ms, Turn.uncertain_words).where(
            Turn.call_id.in_(chunk)
        ),
    ):  # fmt: skip
        i = index[day_of[call_id]]
        if speaker == "bot" and v2v is not None:
            latency[i].append(float(v2v))
        elif speaker == "caller":
            caller_turns[i] += 1
            unsure[i] += len(words or [])
    all_latency = [v for day in latency for v in day]
    return {
        "qa_checks": dict(sorted(rates.items())),
        "latency": {
            "p50": [percentile(v, 50) for v in latency],
            "p95": [percentile(v, 95) for v in latency],
            "overall_p50": percentile(all_latency, 50),
            "overall_p95": percentile(all_latency, 95),
            "turns": len(all_latency),
        },
        "asr_uncertain": {
            "per_100_caller_turns": [
                round(100 * u / n, 2) if n else None for u, n in zip(unsure, caller_turns, strict=True)
            ],
            "words": sum(unsure),
            "caller_turns": sum(caller_turns),
        },
    }


def _in_chunks(session: Session, ids: list[str], query: Any, size: int = 500) -> list[Any]:
    """Rows for many call ids without one giant IN list."""
    rows: list[Any] = []
    for i in range(0, len(ids), size):
        rows += list(session.execute(query(ids[i : i + size])))
    return rows
