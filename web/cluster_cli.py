"""`carecall cluster up N`: a local cluster for development (see web/cluster.py)."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import typer

cluster_app = typer.Typer(no_args_is_help=True, help="A local cluster: PostgreSQL, workers, nginx, Kamailio")


@cluster_app.command("up")
def up(
    workers: int = typer.Argument(3, help="how many call workers"),
    root: Path = typer.Option(None, "--root", help="folder for the database, logs and configs (default: a temp dir)"),
    https_port: int = typer.Option(8443, "--https-port"),
    sip_port: int = typer.Option(5060, "--sip-port"),
) -> None:
    """Start PostgreSQL, WORKERS call workers, nginx (TLS) and Kamailio on loopback; Ctrl-C stops all."""
    from web.cluster import Cluster, ClusterError

    root = root or Path(tempfile.mkdtemp(prefix="carecall-cluster-"))
    cluster = Cluster.plan(root, workers, https_port=https_port, sip_port=sip_port)
    typer.echo(f"starting {workers} worker(s) in {root} (models load on each: a minute or two)")
    try:
        cluster.start()
    except ClusterError as exc:
        typer.echo(f"cluster did not start: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"widget and console: {cluster.https_url}/widget  {cluster.https_url}/console  (self-signed)")
    typer.echo(f"SIP (Kamailio):     sip:127.0.0.1:{cluster.sip_port}")
    typer.echo(f"PostgreSQL:         {cluster.database_url}")
    for w in cluster.workers:
        typer.echo(f"worker {w.index}: {w.base_url}  sip:127.0.0.1:{w.sip_port}  log {w.log_path}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    typer.echo("stopping (workers drain first)")
    cluster.stop()
