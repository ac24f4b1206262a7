"""QA checks on how the conversation went: consent and recording notice, identity (follow-up),
repeats and misunderstandings, long silences, slow turns, words the recogniser was unsure of, a
transfer the caller asked for, and guard trips on what the bot said. Pure functions of a CallView."""

from __future__ import annotations

import itertools
from statistics import median

from dialogue.answers import answer_reader
from dialogue.guard import check as guard_check
from dialogue.knowledge import Knowledge
from records.qa.config import QaConfig
from records.qa.model import CheckResult, Evidence
from records.qa.view import CallView, contains_any, excerpt, says


def consent(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """The recording notice was heard (not only meant) and the caller was asked to go on."""
    markers = cfg.recording_notice.get(v.lang, [])
    bot = v.bot()
    if v.mode == "followup":
        if v.result.identity_confirmed is False:
            return CheckResult("consent", "na", "identity not confirmed: the consent question is never reached")
        template = kn.followup_text[v.lang].texts["consent"]
    else:
        template = kn.phrases[v.lang].texts["greeting"]
    noticed = [t for t in bot if contains_any(t.text, markers)]
    if not noticed:
        return CheckResult("consent", "fail", "no recording notice was given", (Evidence(None, excerpt(template)),))
    heard = [t for t in noticed if contains_any(t.heard, markers)]
    if not heard:
        t = noticed[0]
        return CheckResult(
            "consent", "fail", "the recording notice was cut off before the caller heard it",
            (Evidence(t.idx, f"heard: {excerpt(t.heard) or '(nothing)'}"),),
        )  # fmt: skip
    t = heard[0]
    answer = next((c for c in v.caller() if c.idx > t.idx), None)
    if answer is None:
        return CheckResult(
            "consent",
            "warn",
            "the notice was heard but the caller never answered",
            (Evidence(t.idx, excerpt(t.heard)),),
        )
    decided = v.result.consent if v.mode == "followup" else v.end_reason != "consent_declined"
    what = "consent given" if decided is not False else "consent declined and the call ended"
    return CheckResult(
        "consent", "pass", f"recording notice heard; {what}",
        (Evidence(t.idx, excerpt(t.heard)), Evidence(answer.idx, excerpt(answer.text))),
    )  # fmt: skip


def identity(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """Follow-up calls: no health questions before the person on the line is confirmed."""
    if v.mode != "followup":
        return CheckResult("identity", "na", "triage calls do not check identity")
    confirmed = v.result.identity_confirmed
    outcomes = v.result.answers
    greeting = v.bot()[0] if v.bot() else None
    ev = (Evidence(greeting.idx, excerpt(greeting.heard)),) if greeting else ()
    if confirmed:
        answer = next((c for c in v.caller() if greeting is None or c.idx > greeting.idx), None)
        return CheckResult(
            "identity", "pass", "identity confirmed before any health question",
            ev + ((Evidence(answer.idx, excerpt(answer.text)),) if answer else ()),
        )  # fmt: skip
    if outcomes:
        return CheckResult("identity", "fail", "health questions were answered without a confirmed identity", ev)
    if v.end_reason == "identity_not_confirmed":
        return CheckResult("identity", "pass", "identity not confirmed; the call ended without health questions", ev)
    return CheckResult("identity", "warn", "the call ended before the identity was confirmed", ev)


def repeats(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """The caller asked for a repeat or said they did not understand; the bot could not understand an answer."""
    reader = answer_reader(v.lang)
    ev = [Evidence(t.idx, excerpt(t.text)) for t in v.caller() if reader.intent("repeat", t.text)]
    texts = kn.followup_text[v.lang].texts if v.mode == "followup" else kn.phrases[v.lang].texts
    misunderstood = [texts[k] for k in ("not_understood_yes_no", "not_understood_number") if k in texts]
    ev += [Evidence(t.idx, "bot: " + excerpt(t.text)) for t in v.bot() if any(says(t.text, m) for m in misunderstood)]
    ev.sort(key=lambda e: e.turn or 0)
    n = len(ev)
    if n == 0:
        return CheckResult("repeats", "pass", "no repeats or misunderstandings")
    result = "fail" if n >= cfg.repeats.fail_count else "warn"
    return CheckResult("repeats", result, f"{n} repeat request(s) or misunderstanding(s)", tuple(ev))


def silences(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """Long gaps between turns (who was silent: the caller after a bot turn, the bot after the caller)."""
    ev: list[Evidence] = []
    longest = 0.0
    turns = sorted(v.turns, key=lambda t: t.start_s)
    for prev, nxt in itertools.pairwise(turns):
        gap = nxt.start_s - prev.end_s
        if gap >= cfg.silence.warn_s:
            who = "caller" if prev.speaker != "caller" else "CareCall"
            ev.append(Evidence(nxt.idx, f"{gap:.1f} s of silence ({who} silent) before this turn"))
            longest = max(longest, gap)
    if not ev:
        return CheckResult("silence", "pass", f"no gap of {cfg.silence.warn_s:g} s or more")
    result = "fail" if longest >= cfg.silence.fail_s else "warn"
    return CheckResult("silence", result, f"{len(ev)} long silence(s), longest {longest:.1f} s", tuple(ev))


def latency(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """Voice-to-voice latency outliers: over the thresholds, or far slower than the call's median."""
    timed = [t for t in v.bot() if t.voice_to_voice_ms is not None]
    if not timed:
        return CheckResult("latency", "na", "no timed bot turns")
    values = [float(t.voice_to_voice_ms or 0.0) for t in timed]
    mid = median(values)
    ev: list[Evidence] = []
    result = "pass"
    for t, ms in zip(timed, values, strict=True):
        if ms >= cfg.latency.fail_ms:
            result = "fail"
            ev.append(Evidence(t.idx, f"voice-to-voice {ms:.0f} ms (limit {cfg.latency.fail_ms:.0f} ms)"))
        elif ms >= cfg.latency.warn_ms or (len(values) >= 3 and ms >= cfg.latency.outlier_factor * mid):
            result = "warn" if result == "pass" else result
            ev.append(Evidence(t.idx, f"voice-to-voice {ms:.0f} ms (call median {mid:.0f} ms)"))
    summary = f"median {mid:.0f} ms, slowest {max(values):.0f} ms" + (f"; {len(ev)} slow turn(s)" if ev else "")
    return CheckResult("latency", result, summary, tuple(ev))  # type: ignore[arg-type]


def uncertain(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """Words the recogniser was unsure of (its word probabilities, where the transcript carries them)."""
    limit = cfg.uncertain_words.max_probability
    ev = [
        Evidence(t.idx, f"{w.word}" + (f" (p={w.p:.2f})" if w.p is not None else ""))
        for t in v.caller()
        for w in t.uncertain
        if w.p is None or w.p < limit
    ]
    if not any(t.uncertain for t in v.caller()) and not ev:
        return CheckResult("uncertain_words", "pass", "no word below the recogniser's confidence limit")
    if not ev:
        return CheckResult("uncertain_words", "pass", f"every recognised word at p ≥ {limit:g}")
    n = len(ev)
    result = (
        "fail" if n >= cfg.uncertain_words.fail_count else "warn" if n >= cfg.uncertain_words.warn_count else "pass"
    )
    return CheckResult("uncertain_words", result, f"{n} word(s) the recogniser was unsure of", tuple(ev))  # type: ignore[arg-type]


def transfer(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """A transfer to a person was asked for (or accepted after a red flag); did it happen?"""
    reader = answer_reader(v.lang)
    asked = [t for t in v.caller() if reader.intent("transfer", t.text)]
    actions = list(v.result.actions)
    offered_accepted = v.result.transferred and not asked
    if not asked and not offered_accepted and v.end_reason != "transferred":
        return CheckResult("transfer", "na", "no transfer asked for")
    ev = tuple(Evidence(t.idx, excerpt(t.text)) for t in asked)
    if v.end_reason in ("transferred", "taken_over"):
        return CheckResult("transfer", "pass", "the call was put through to a person", ev)
    if v.result.transferred:
        return CheckResult(
            "transfer", "fail", "CareCall said it would transfer, but the line could not be put through",
            ev + tuple(Evidence(None, a) for a in actions if "transfer" in a),
        )  # fmt: skip
    return CheckResult("transfer", "fail", "the caller asked for a person and was not put through", ev)


def guard(v: CallView, kn: Knowledge, cfg: QaConfig) -> CheckResult:
    """The guard's rules (no diagnosis, drug, dose, or skipping care) on every bot turn. (Generated text
    the dialogue's own guard replaced never reaches a turn: the caller heard the template.)"""
    ev: list[Evidence] = []
    for t in v.bot():
        verdict = guard_check(t.text, v.lang)
        if not verdict.ok:
            ev.append(Evidence(t.idx, f"{', '.join(verdict.reasons)}: {excerpt(t.text)}"))
    if ev:
        return CheckResult("guard", "fail", f"{len(ev)} bot turn(s) break the guard's rules", tuple(ev))
    return CheckResult("guard", "pass", "nothing the bot said breaks the guard's rules")


__all__ = ["consent", "guard", "identity", "latency", "repeats", "silences", "transfer", "uncertain"]
