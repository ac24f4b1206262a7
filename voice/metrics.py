"""Prometheus metrics for every call of this process: per-turn latencies (the LiveKit-style report
in one place), calls, barge-ins and escalations. No patient data: only numbers and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voice.conversation import Escalate
from voice.events import ActionTaken, CallEnded, CallEvent, CallStarted, TurnRecorded

_LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class CallMetrics:
    """A CallObserver feeding a Prometheus registry (one per app, so tests can have several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter("carecall_calls", "Calls started", ["channel", "language", "mode"], registry=r)
        self.active = Gauge("carecall_calls_active", "Calls in progress", registry=r)
        self.ended = Counter("carecall_calls_ended", "Calls ended", ["reason"], registry=r)
        self.stage = Histogram("carecall_turn_stage_seconds", "Per-turn latency of each stage", ["stage", "language"],
                               buckets=_LATENCY_BUCKETS, registry=r)
        self.barge_ins = Counter("carecall_barge_ins", "Bot turns interrupted by the caller", ["language"], registry=r)
        self.escalations = Counter("carecall_escalations", "Red flags and nurse escalations", ["level"], registry=r)
        self._languages: dict[str, str] = {}

    async def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            info = event.info
            self._languages[event.call_id] = info.language
            self.calls.labels(info.channel, info.language, info.mode).inc()
            self.active.inc()
        elif isinstance(event, CallEnded):
            self._languages.pop(event.call_id, None)
            self.active.dec()
            self.ended.labels(_reason_label(event.reason)).inc()
        elif isinstance(event, TurnRecorded) and event.turn.speaker == "bot":
            lang = self._languages.get(event.call_id, "?")
            if event.turn.interrupted:
                self.barge_ins.labels(lang).inc()
            m = event.turn.metrics
            if m is not None:
                for stage, ms in (
                    ("endpoint_wait", m.endpoint_wait_ms),
                    ("asr", m.asr_ms),
                    ("llm_first_token", m.llm_first_token_ms),
                    ("tts_first_audio", m.tts_first_audio_ms),
                    ("voice_to_voice", m.voice_to_voice_ms),
                ):
                    if ms is not None:
                        self.stage.labels(stage, lang).observe(ms / 1000)
        elif isinstance(event, ActionTaken) and isinstance(event.action, Escalate):
            self.escalations.labels(event.action.level).inc()


def _reason_label(reason: str) -> str:
    """Reasons are free text; keep the label set small."""
    for known in ("completed", "caller", "transferred", "internal error", "shutting down", "silence"):
        if known in reason:
            return known
    return "other"
