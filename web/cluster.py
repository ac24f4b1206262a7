"""`carecall cluster up N`: PostgreSQL, N call workers, nginx and Kamailio on loopback, from the
shipped configs in deploy/ (templated ports), for development and for the cluster tests.

    cluster = Cluster.plan(root, workers=3)
    cluster.start()          # PostgreSQL → workers (ready) → nginx (TLS, self-signed) → Kamailio
    ... https://127.0.0.1:<https_port>, sip:127.0.0.1:<sip_port> ...
    cluster.stop()           # SIGTERM: workers drain, then the balancers and the database stop

Every process runs in its own session and is stopped by its own pid. Nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from records.pg_local import LocalPostgres, free_port, start_postgres

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


class ClusterError(RuntimeError):
    """A part of the cluster would not start; the message names it and its log."""


def render(template: Path, values: dict[str, str]) -> str:
    """Fill `${NAME}` placeholders (nginx's and Kamailio's own `$vars` are left alone); a placeholder
    without a value is an error, never silently empty."""
    text = template.read_text()
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ClusterError(f"{template.name}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Worker:
    index: int
    http_port: int
    sip_port: int
    rtp_ports: tuple[int, int]
    llm_port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def worker_id(self) -> str:
        """Its CARECALL_WORKER_ID: the name nginx routes a console takeover by."""
        return f"w{self.index}"


@dataclass
class Cluster:
    root: Path
    workers: list[Worker]
    https_port: int
    http_port: int
    sip_port: int
    secret_key: str
    worker_env: dict[str, str] = field(default_factory=dict)
    ping_interval_s: int = 2
    postgres: LocalPostgres | None = None
    database_url: str = ""
    nginx: subprocess.Popen[bytes] | None = None
    kamailio: subprocess.Popen[bytes] | None = None

    @classmethod
    def plan(cls, root: Path, workers: int, *, worker_env: dict[str, str] | None = None,
             https_port: int | None = None, sip_port: int | None = None) -> Cluster:
        if workers < 1:
            raise ClusterError("a cluster needs at least one worker")
        planned = []
        for i in range(workers):
            rtp_lo = 30000 + 1000 * i  # each worker its own RTP range
            planned.append(Worker(i, free_port(), free_udp_port(), (rtp_lo, rtp_lo + 998), free_port()))
        return cls(root=root, workers=planned, https_port=https_port or free_port(), http_port=free_port(),
                   sip_port=sip_port or free_udp_port(), secret_key=secrets.token_urlsafe(48),
                   worker_env=dict(worker_env or {}))

    # --- the parts ---------------------------------------------------------------------------
    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            # its own temp dir: the `postgres` user (initdb refuses root) must reach it
            self.postgres = start_postgres(Path(tempfile.mkdtemp(prefix="carecall-cluster-pg-")))
            self.database_url = self.postgres.create_database("carecall")
            self._migrate()
            for w in self.workers:
                self.start_worker(w)
            for w in self.workers:
                self.wait_worker(w)
            self.start_nginx()
            self._start_kamailio()
        except BaseException:
            self.stop()
            raise

    def _migrate(self) -> None:
        """Once, before the workers (they would serialise on the migration lock anyway)."""
        from records.db import open_database

        open_database(self.database_url).dispose()

    def env_for(self, w: Worker) -> dict[str, str]:
        return {
            **os.environ,
            "CARECALL_DATA_DIR": str(self.root / "data"),  # shared: recordings any console worker can play
            "CARECALL_DATABASE_URL": self.database_url,
            "CARECALL_SECRET_KEY": self.secret_key,
            "CARECALL_WORKERS": str(len(self.workers)),
            "CARECALL_WORKER_ID": w.worker_id,
            "CARECALL_PORT": str(w.http_port),
            "CARECALL_LLM_PORT": str(w.llm_port),
            "CARECALL_SIP_ENABLED": "true",
            "CARECALL_SIP_PORT": str(w.sip_port),
            "CARECALL_SIP_RTP_PORT_MIN": str(w.rtp_ports[0]),
            "CARECALL_SIP_RTP_PORT_MAX": str(w.rtp_ports[1]),
            "CARECALL_TRUSTED_PROXIES": "127.0.0.1",
            "CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]',
            **self.worker_env,
        }

    def start_worker(self, w: Worker) -> None:
        w.log_path = self.log_dir / f"worker-{w.index}.log"
        log = open(w.log_path, "ab")
        w.process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(w.http_port)],
                                     cwd=Path(__file__).resolve().parents[1], env=self.env_for(w), stdout=log,
                                     stderr=log, start_new_session=True)

    def wait_worker(self, w: Worker, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if w.process is None or w.process.poll() is not None:
                raise ClusterError(f"worker {w.index} exited: {self._tail(w.log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{w.base_url}/healthz/live", timeout=1).status_code == 200:
                    return
            time.sleep(0.3)
        raise ClusterError(f"worker {w.index} did not start in {timeout:.0f} s: {self._tail(w.log_path)}")

    def _tls(self) -> tuple[Path, Path]:
        cert, key = self.run_dir / "tls.crt", self.run_dir / "tls.key"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
            os.chmod(key, 0o600)
        return cert, key

    def start_nginx(self) -> None:
        """nginx from the shipped template, in front of this cluster's workers (their HTTP ports)."""
        cert, key = self._tls()
        conf_dir = self.root / "nginx"
        conf_dir.mkdir(exist_ok=True)
        (conf_dir / "proxy_headers.conf").write_text((DEPLOY / "nginx" / "proxy_headers.conf").read_text())
        upstreams = "\n".join(f"        server 127.0.0.1:{w.http_port} max_fails=1 fail_timeout=5s;"
                              for w in self.workers)
        owners = "\n".join(f"    upstream carecall_worker_{w.worker_id} {{ server 127.0.0.1:{w.http_port}; }}"
                            for w in self.workers)
        owner_map = "\n".join(f"        {w.worker_id} carecall_worker_{w.worker_id};" for w in self.workers)
        conf = conf_dir / "carecall.conf"
        conf.write_text(render(DEPLOY / "nginx" / "carecall.conf.template", {
            "RUN_DIR": str(self.run_dir), "LOG_DIR": str(self.log_dir), "DAEMON": "off",
            "UPSTREAM_SERVERS": upstreams, "OWNER_UPSTREAMS": owners, "OWNER_MAP": owner_map,
            "LISTEN_HOST": "127.0.0.1", "HTTP_PORT": str(self.http_port),
            "HTTPS_PORT": str(self.https_port), "TLS_CERT": str(cert), "TLS_KEY": str(key),
            "CONF_DIR": str(conf_dir)}))
        log = open(self.log_dir / "nginx.out", "ab")
        self.nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.run_dir), "-e",
                                       str(self.log_dir / "nginx-error.log")], stdout=log, stderr=log,
                                      start_new_session=True)
        self._wait_http(f"http://127.0.0.1:{self.http_port}/nginx-health", "nginx", self.log_dir / "nginx-error.log")

    def _start_kamailio(self) -> None:
        conf_dir = self.root / "kamailio"
        conf_dir.mkdir(exist_ok=True)
        (conf_dir / "dispatcher.list").write_text(render(DEPLOY / "kamailio" / "dispatcher.list.template", {
            "DESTINATIONS": "\n".join(f"1 sip:127.0.0.1:{w.sip_port} 0 0" for w in self.workers)}) + "\n")
        cfg = conf_dir / "kamailio.cfg"
        cfg.write_text(render(DEPLOY / "kamailio" / "kamailio.cfg.template", {
            "LOG_STDERR": "yes", "LISTEN_HOST": "127.0.0.1", "SIP_PORT": str(self.sip_port),
            "MODULE_DIR": KAMAILIO_MODULES, "RUN_DIR": str(self.run_dir), "CONF_DIR": str(conf_dir),
            "PING_INTERVAL": str(self.ping_interval_s)}))
        check = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ClusterError(f"kamailio.cfg does not parse: {check.stderr[-2000:]}")
        log_path = self.log_dir / "kamailio.log"
        log = open(log_path, "ab")
        self.kamailio = subprocess.Popen(["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(self.run_dir),
                                          "-P", str(self.run_dir / "kamailio.pid")], stdout=log, stderr=log,
                                         start_new_session=True)
        self.wait_dispatcher()

    def wait_dispatcher(self, timeout: float = 30) -> None:
        """Until Kamailio answers our own OPTIONS (the dispatcher then probes the workers itself)."""
        from telephony.sip.probe import options_status

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kamailio is not None and self.kamailio.poll() is not None:
                raise ClusterError(f"kamailio exited: {self._tail(self.log_dir / 'kamailio.log')}")
            if options_status("127.0.0.1", self.sip_port, timeout=0.5) == 200:
                return
        raise ClusterError(f"kamailio did not answer: {self._tail(self.log_dir / 'kamailio.log')}")

    def _wait_http(self, url: str, name: str, log: Path, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise ClusterError(f"{name} did not start: {self._tail(log)}")

    @staticmethod
    def _tail(path: Path | None) -> str:
        if path is None or not path.exists():
            return "(no log)"
        return path.read_text(errors="replace")[-3000:]

    # --- stopping ----------------------------------------------------------------------------
    def stop_worker(self, w: Worker, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """SIGTERM drains (web/health.py); SIGKILL is a crash."""
        if w.process is None:
            return None
        if w.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.process.pid, sig)
            try:
                w.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(w.process.pid, signal.SIGKILL)
                w.process.wait()
        return w.process.returncode

    def stop(self) -> None:
        for w in self.workers:
            if w.process is not None and w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.process.pid, signal.SIGTERM)
        for w in self.workers:
            self.stop_worker(w)
        for proc in (self.kamailio, self.nginx):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.postgres is not None:
            self.postgres.stop()
            shutil.rmtree(self.postgres.root, ignore_errors=True)
            self.postgres = None
