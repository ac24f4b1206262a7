"""The shipped nginx config limits console sign-in attempts per address for the whole cluster, before
any worker (whose throttle counts per account and address in the shared database,
tests/cluster/test_shared_login_throttle.py) spends a database round trip on them. Real nginx from
deploy/nginx/, in front of a stand-in upstream that answers every request: what is measured is
nginx's answer, not the worker's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from web.cluster import Cluster

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="nginx is installed by make setup")


class Answer(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _ok

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Cluster]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    c = Cluster.plan(tmp_path, 1)
    c.workers[0].http_port = upstream.server_address[1]
    c.run_dir.mkdir(parents=True)
    c.log_dir.mkdir(parents=True)
    try:
        c.start_nginx()
        yield c
    finally:
        c.stop()
        upstream.shutdown()


def test_sign_in_posts_are_limited_per_address_and_the_form_is_not(nginx: Cluster) -> None:
    with httpx.Client(base_url=nginx.https_url, verify=False, timeout=30) as client:
        forms = [client.get("/console/login").status_code for _ in range(30)]
        posts = [client.post("/console/login", data={"username": "x", "password": "guess"}).status_code
                 for _ in range(30)]
        other = client.post("/widget/token", json={"lang": "en"}).status_code
    assert forms == [200] * 30  # opening the form is never limited
    assert posts[:6] == [200] * 6  # one attempt plus a burst of 5 go through at once
    assert posts.count(429) >= 20, posts  # then 10 a minute: the rest of a quick run is refused
    assert other == 200  # other endpoints are not in the login zone
