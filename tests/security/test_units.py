"""The hardening pieces on their own, fast and without the server: the JSON reader and the strict
start message (voice/wire.py), stream tokens (telephony/stream_auth.py), the body-limit middleware
(web/limits.py) and the login throttle on a virtual clock (web/console/auth.py)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Form, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from telephony.stream_auth import TOKEN_PARAMETER, StreamAuthError, StreamGuard, StreamTokens, handshake_signature_ok
from tests.conftest import ManualClock
from tests.security.helpers import race_logins
from voice.admission import AdmissionRefused, CallRequest, validate
from voice.wire import JsonInputError, ProtocolError, loads, parse_start
from web.console.auth import PAIR, LoginThrottle, TooManyAttempts
from web.limits import BodyLimitMiddleware, BodyRule


# --- voice/wire.py -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "code"), [
    ("[" * 2000 + "]" * 2000, "too_deep"), ('{"a":' * 40 + "1" + "}" * 40, "too_deep"),
    ('{"n": NaN}', "non_finite_number"), ('{"n": -Infinity}', "non_finite_number"), ("1e999", "non_finite_number"),
    ('"\\ud800"', "bad_json"), ('{"\\udc00": 1}', "bad_json"), ("1" * 5000, "bad_json"), ("{", "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
])
def test_the_json_reader_refuses_what_would_hurt(text: str | bytes, code: str) -> None:
    with pytest.raises(JsonInputError) as err:
        loads(text)
    assert err.value.code == code and str(err.value)


def test_the_json_reader_keeps_ordinary_json() -> None:
    assert loads('{"a": [1, 2.5, "x", {"b": null}], "c": "😀"}') == {"a": [1, 2.5, "x", {"b": None}], "c": "😀"}
    assert loads("[" * 32 + "]" * 32) is not None


@pytest.mark.parametrize("value", ["16000.0", '"16000"', "true", "16000.5", "null", "[16000]"])
def test_sample_rates_must_be_integers(value: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_start('{"type": "start", "language": "en", "output_sample_rate": ' + value + "}")
    assert err.value.code == "bad_sample_rate" and "integer" in str(err.value)


def test_a_good_start_parses_and_types_are_exact() -> None:
    start = parse_start('{"type": "start", "language": "zh", "sample_rate": 8000, "token": "t"}')
    assert (start.sample_rate, start.output_sample_rate, start.token, start.mode) == (8000, 8000, "t", "triage")
    assert type(start.sample_rate) is int
    with pytest.raises(ProtocolError) as err:
        parse_start('{"type": "start", "language": "en", "token": 5}')
    assert err.value.code == "bad_token"


@pytest.mark.parametrize(("start", "code"), [
    ('{"type": "start", "language": ["en"]}', "bad_language"),
    ('{"type": "start", "language": "fr"}', "bad_language"),
    ('{"type": "start"}', "bad_language"),
    ('{"type": "start", "language": "en", "mode": {}}', "bad_mode"),
    ('{"type": "start", "language": "en", "mode": "sales"}', "bad_mode"),
    ('{"type": "start", "language": "en", "params": {"a": [1]}}', "bad_params"),
])
def test_a_start_with_a_bad_language_mode_or_params_is_refused_by_admission(start: str, code: str) -> None:
    """The wire reads the message as sent; voice.admission (one place for every channel) refuses it."""
    request = parse_start(start)
    with pytest.raises(AdmissionRefused) as err:
        validate(CallRequest("websocket", request.language, request.mode, request.params))
    assert err.value.code == code and str(err.value)


# --- telephony/stream_auth.py ----------------------------------------------------------------------
class _Settings:
    def __init__(self, auth_token: str = "", public: str = "") -> None:
        self.secret_key = SecretStr("k" * 32)
        self.twilio_auth_token = SecretStr(auth_token)
        self.public_base_url = public


class _Url:
    def __init__(self, text: str) -> None:
        self.text = text
        self.path = "/" + text.split("/", 3)[3]

    def __str__(self) -> str:
        return self.text


def test_stream_tokens_are_signed_single_use_and_expire() -> None:
    tokens = StreamTokens("secret", ttl_s=60)
    token = tokens.issue({"language": "en", "campaign": "c1"})
    assert tokens.redeem(token) == {"language": "en", "campaign": "c1"}
    with pytest.raises(StreamAuthError, match="already used"):
        tokens.redeem(token)
    with pytest.raises(StreamAuthError, match="not valid"):
        tokens.redeem(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    with pytest.raises(StreamAuthError, match="not valid"):
        StreamTokens("another secret").redeem(tokens.issue({"language": "en"}))
    with pytest.raises(StreamAuthError, match="expired"):
        StreamTokens("secret", ttl_s=-1).redeem(tokens.issue({"language": "en"}))


def test_unverified_webhooks_sign_no_record_fields_and_unsigned_parameters_are_ignored() -> None:
    guard = StreamGuard(_Settings())
    params = guard.parameters(language="en", mode="followup", query={"campaign": "c1", "patient": "Zhang"},
                              verified=False)
    assert "campaign" not in params and "patient" not in params
    url = _Url("ws://h/telephony/twilio/stream")
    signed = guard.admit({**params, "patient_id": "MRN-1", "campaign": "evil"}, url=url, headers={})
    assert signed == {"language": "en", "mode": "followup"}
    verified = StreamGuard(_Settings(auth_token="tok"))
    params = verified.parameters(language="en", mode="followup", query={"campaign": "c1"}, verified=True)
    assert verified.admit(params, url=url, headers={})["campaign"] == "c1"


def test_a_bad_handshake_signature_is_refused_where_one_is_sent() -> None:
    guard = StreamGuard(_Settings(auth_token="tok", public="https://carecall.example"))
    url = _Url("ws://internal:8080/telephony/twilio/stream")
    public = "wss://carecall.example/telephony/twilio/stream"
    import base64
    import hashlib
    import hmac

    good = base64.b64encode(hmac.new(b"tok", public.encode(), hashlib.sha1).digest()).decode()
    assert handshake_signature_ok("tok", public, good)
    params = guard.parameters(language="en", mode="triage", query={}, verified=True)
    with pytest.raises(StreamAuthError, match="Signature"):
        guard.admit(params, url=url, headers={"x-twilio-signature": "bad"})
    assert guard.admit(params, url=url, headers={"x-twilio-signature": good})["language"] == "en"
    with pytest.raises(StreamAuthError, match="no stream token"):
        guard.admit({"language": "en"}, url=url, headers={})
    assert TOKEN_PARAMETER not in guard.admit(guard.parameters(language="en", mode="triage", query={},
                                                               verified=True), url=url, headers={})


# --- web/limits.py -----------------------------------------------------------------------------------
def _limited_app(signed_in: bool = False) -> TestClient:
    app = FastAPI()

    @app.post("/form")
    def form(name: str = Form("")) -> dict[str, int]:
        return {"n": len(name)}

    @app.post("/console/campaigns/x/import")
    async def upload(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    app.add_middleware(BodyLimitMiddleware, max_bytes=1000, rules=[BodyRule("/console/campaigns/", 100_000)],
                       is_signed_in=lambda scope: signed_in)
    return TestClient(app)


def test_bodies_past_the_limit_get_413_and_smaller_ones_pass() -> None:
    client = _limited_app()
    assert client.post("/form", data={"name": "a" * 500}).json() == {"n": 500}
    assert client.post("/form", data={"name": "a" * 5000}).status_code == 413
    chunks = iter([b"name=", b"a" * 600, b"a" * 600])  # streamed: no Content-Length
    r = client.post("/form", content=chunks, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
    assert client.post("/form", content=b"x", headers={"content-length": "x1"}).status_code == 400


def test_the_upload_limit_applies_to_signed_in_requests_only() -> None:
    assert _limited_app(signed_in=False).post("/console/campaigns/x/import", content=b"a" * 50_000).status_code == 413
    r = _limited_app(signed_in=True).post("/console/campaigns/x/import", content=b"a" * 50_000)
    assert r.json() == {"n": 50_000}


# --- web/console/auth.py: the login throttle on a virtual clock -------------------------------------

def test_backoff_doubles_after_the_free_failures_and_a_success_clears_the_account() -> None:
    clock = ManualClock(0.0)
    throttle = LoginThrottle(clock=clock)
    for _ in range(PAIR.free):
        throttle.begin("ada", "10.0.0.1")
    waits = []
    for _ in range(4):
        with pytest.raises(TooManyAttempts) as err:
            throttle.begin("ada", "10.0.0.1")
        waits.append(err.value.retry_after_s)
        clock.t += err.value.retry_after_s
        throttle.begin("ada", "10.0.0.1")  # allowed once the wait is over; fails again
    assert waits == [2.0, 4.0, 8.0, 16.0]
    assert throttle.retry_after("ada", "10.0.0.2") == 0, "another address is not locked out"
    throttle.succeeded("ada", "10.0.0.1")
    assert throttle.retry_after("ada", "10.0.0.1") == 0


def test_the_account_from_everywhere_only_slows_down_never_locks_out() -> None:
    clock = ManualClock(0.0)
    throttle = LoginThrottle(clock=clock)
    for i in range(200):  # a spread-out guesser: 200 addresses, 1 guess each
        clock.t += 31.0
        throttle.begin("ada", f"10.1.{i // 250}.{i % 250}")
    assert throttle.retry_after("ada", "192.168.1.5") <= 30.0


def test_memory_is_bounded_and_old_failures_are_forgotten() -> None:
    clock = ManualClock(0.0)
    throttle = LoginThrottle(clock=clock, max_keys=1000, forget_after_s=600)
    for i in range(5000):
        throttle.begin(f"user{i}", f"10.2.{i // 250}.{i % 250}")
    assert len(throttle) <= 1000
    clock.t += 601
    throttle.begin("someone", "10.9.9.9")
    assert len(throttle) == 3  # pair, address, account of the last attempt only


def test_parallel_attempts_are_counted_before_any_hashing() -> None:
    assert race_logins([LoginThrottle()], 40, "ada", "10.3.0.1") == PAIR.free
