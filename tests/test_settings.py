"""The settings object: turn-taking knobs nested once, from the environment under new and old names;
the live view's heartbeat knobs."""

from __future__ import annotations

import dataclasses

import pytest

from settings import Settings
from voice.endpointer import EndpointerConfig
from voice.turn_taking import LEGACY_ENV, TurnTaking, TurnTakingSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("CARECALL_TURN_TAKING") or key.upper() in LEGACY_ENV:
            monkeypatch.delenv(key)


def test_the_call_loop_and_the_settings_have_the_same_defaults() -> None:
    built = TurnTaking.from_settings(Settings().turn_taking)
    assert built == TurnTaking()
    assert built.endpointer == EndpointerConfig()  # the endpointer's own defaults, not a second copy


def _every_knob_changed() -> dict[str, object]:
    """A value for every knob that is not its default (and still within its bounds)."""
    special = {"uncertain_below": 0.25, "vad_aggressiveness": 3}  # bounded knobs
    changed: dict[str, object] = {}
    for name, info in TurnTakingSettings.model_fields.items():
        default = info.default
        if name in special:
            changed[name] = special[name]
        elif isinstance(default, bool):
            changed[name] = not default
        else:
            changed[name] = type(default)(default * 2 + 1)
        assert changed[name] != default, name
    return changed


def test_every_knob_reaches_the_call_loop() -> None:
    changed = _every_knob_changed()
    tt = TurnTaking.from_settings(TurnTakingSettings(**changed), {"en": frozenset({"mm hm"})})
    for name, value in changed.items():  # a new knob is a field of TurnTakingSettings, and nothing else
        assert getattr(tt, name) == value, name
    assert tt.backchannels == {"en": frozenset({"mm hm"})}
    ep = tt.endpointer
    assert ep.aggressiveness == changed["vad_aggressiveness"]
    reached = {f.name for f in dataclasses.fields(ep) if f.name in changed}
    for name in reached:
        assert getattr(ep, name) == changed[name], name
    # the endpointer's fields that are not knobs keep its own defaults (a new one is a choice made here)
    own = {f.name for f in dataclasses.fields(ep)} - reached - {"aggressiveness"}
    assert own == {"start_window_ms", "start_voiced_ms"}
    assert all(getattr(ep, n) == getattr(EndpointerConfig(), n) for n in own)


def test_older_flat_names_still_work_and_the_nested_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARECALL_ENDPOINT_SILENCE_MS", "650")
    monkeypatch.setenv("CARECALL_MAX_CALLER_SILENCE_S", "90")
    s = Settings()
    assert s.turn_taking.silence_ms == 650 and s.turn_taking.max_silence_s == 90.0
    monkeypatch.setenv("CARECALL_TURN_TAKING__SILENCE_MS", "700")
    assert Settings().turn_taking.silence_ms == 700
    assert Settings().turn_taking.max_silence_s == 90.0  # the other old name still counts


def test_every_older_name_maps_to_a_knob() -> None:
    assert set(LEGACY_ENV.values()) <= set(TurnTakingSettings.model_fields)


def test_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARECALL_TURN_TAKING__VAD_AGGRESSIVENESS", "7")
    with pytest.raises(ValueError, match="vad_aggressiveness"):
        Settings()


def test_the_live_heartbeat_settings_come_from_the_environment_and_must_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from records.live import HEARTBEAT_S, WORKER_LOST_S

    settings = Settings()
    assert (settings.live_heartbeat_s, settings.live_worker_lost_s) == (HEARTBEAT_S, WORKER_LOST_S)
    monkeypatch.setenv("CARECALL_LIVE_HEARTBEAT_S", "2")
    monkeypatch.setenv("CARECALL_LIVE_WORKER_LOST_S", "9")
    assert (Settings().live_heartbeat_s, Settings().live_worker_lost_s) == (2.0, 9.0)
    monkeypatch.setenv("CARECALL_LIVE_WORKER_LOST_S", "3")  # one late beat would end a worker's calls
    with pytest.raises(ValueError, match="live_worker_lost_s"):
        Settings()
