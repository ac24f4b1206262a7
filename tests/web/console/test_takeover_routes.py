"""The takeover's signalling routes meet bad input with a clear error: no CSRF token, no SDP, a call
that is not live on this worker, hand-back of a call nobody took over; in a cluster, a call another
worker carries (or a request meant for another worker) is refused naming the owner."""

from __future__ import annotations

from tests.web.console.conftest import XSS_CALL, csrf_of
from tests.web.console.test_takeover import ClipRecognizer
from voice.takeover import TakeoverRegistry
from web.console.takeover import load_phrases


def test_takeover_routes_refuse_bad_requests(console):
    nurse = console.client("nurse")
    url = f"/console/calls/{XSS_CALL}/takeover"
    assert nurse.post(url, json={"sdp": "v=0"}).status_code == 403  # no CSRF token
    token = csrf_of(nurse)
    assert nurse.post(url, json={"sdp": "v=0", "csrf_token": token}).status_code == 503  # no call hub here
    console.app.state.takeovers = TakeoverRegistry(load_phrases(), ClipRecognizer({}), {})
    assert nurse.post(url, json={"csrf_token": token}).status_code == 400
    assert nurse.post(url, json={"sdp": "x" * 30000, "csrf_token": token}).status_code == 400
    gone = nurse.post(url, json={"sdp": "v=0\r\n", "csrf_token": token})
    assert gone.status_code == 409 and "no such live call" in gone.json()["detail"]
    back = nurse.post(url + "/handback", json={"csrf_token": token})
    assert back.status_code == 409
    assert nurse.post(url + "/explode", json={"csrf_token": token}).status_code == 404
    assert nurse.post(url, content=b"not json", headers={"x-csrf-token": token}).status_code == 422


def test_a_worker_refuses_the_takeover_of_a_call_another_worker_carries(console):
    nurse = console.client("nurse")
    token = csrf_of(nurse)
    url = f"/console/calls/{XSS_CALL}/takeover"
    console.app.state.takeovers = TakeoverRegistry(load_phrases(), ClipRecognizer({}), {})
    call = {"call_id": XSS_CALL, "language": "en", "channel": "websocket", "started_at": 1.0, "worker": "w1"}
    console.services.feed.apply_message({"type": "call_started", "call": call}, sender="worker-b")
    assert console.services.feed.owner(XSS_CALL) == "w1"
    for path in (url, url + "?worker=w1", url + "/handback?worker=w1", url + "/end"):
        refused = nurse.post(path, json={"sdp": "v=0\r\n", "csrf_token": token})
        assert refused.status_code == 409 and "carried by worker w1" in refused.json()["detail"], (path, refused.text)
    page = nurse.get(f"/console/calls/{XSS_CALL}")
    assert 'data-worker="w1"' in page.text and 'id="takeover-start"' in page.text  # the button, routed by nginx
