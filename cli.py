"""`carecall` command line: serve, call, triage, eval, simulate, user, campaign."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from records.cli import records_app, user_app
from telephony.campaign_cli import campaign_app, lend_runtime
from voice.languages import languages
from web.cluster_cli import cluster_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CareCall voice triage and follow-up")
app.add_typer(user_app, name="user")
app.add_typer(records_app, name="records")
app.add_typer(campaign_app, name="campaign")
app.add_typer(cluster_app, name="cluster")


def _open_runtime(settings: object) -> object:
    """The composition root lends SIP campaign dialling its runtime (telephony never imports server)."""
    from server import open_runtime

    return open_runtime(settings)  # type: ignore[arg-type]


lend_runtime(_open_runtime)  # type: ignore[arg-type]


@app.command()
def serve(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Start the CareCall server (http://127.0.0.1:8080 by default)."""
    import web.health
    from server import create_app
    from settings import Settings

    os.umask(0o077)  # everything the server writes (database, recordings, exports) is private (#10)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    # uvicorn's own frame limit sits above ours so that an oversized frame gets our clear error
    # message instead of a bare 1009 close.
    # SIGTERM drains calls first (web/health.py); X-Forwarded-For only from CARECALL_TRUSTED_PROXIES.
    web.health.serve(create_app(settings), settings, log_level="info", ws_max_size=4 * settings.max_ws_message_bytes)


@app.command()
def call(
    audio: Path = typer.Option(..., "--audio", exists=True, dir_okay=False, help="caller speech, 16-bit WAV"),
    lang: str = typer.Option("en", "--lang", help="a language code: " + ", ".join(languages)),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    out: Path | None = typer.Option(None, "--out", help="write the bot's audio to this WAV"),
    url: str = typer.Option("ws://127.0.0.1:8080/ws/call", "--url"),
    mode: str = typer.Option("triage", "--mode", help="triage or followup"),
) -> None:
    """Play FILE as a caller over the real WebSocket path in real time; print turns and outcome."""
    import asyncio

    from voice.audio import Pcm
    from voice.caller import read_wav, scripted_call, write_wav

    if lang not in languages:
        raise typer.BadParameter(f"--lang must be one of {', '.join(languages)}")
    try:
        report = asyncio.run(scripted_call(url, lang, [read_wav(audio)], mode=mode))
    except OSError as exc:
        typer.echo(f"cannot reach CareCall at {url}: {exc}. Is `carecall serve` running?", err=True)
        raise typer.Exit(2) from None
    if out is not None:
        write_wav(out, Pcm.concat(report.bot_audio, report.output_rate))
    body = report.as_json()
    if json_out:
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    for t in body["turns"]:
        lat = f"  [{t['latency_ms']:.0f} ms]" if t.get("latency_ms") else ""
        flag = " (interrupted)" if t.get("interrupted") else ""
        typer.echo(f"{t['start_s']:7.2f}s {t['speaker']:>6}: {t['text']}{flag}{lat}")
    for key in ("disposition", "department"):
        if body.get(key):
            typer.echo(f"{key}: {body[key]}")
    if body["red_flags"]:
        typer.echo(f"red flags: {', '.join(body['red_flags'])}")
    if body["latencies_ms"]:
        typer.echo(f"voice-to-voice (caller's clock): {', '.join(f'{x:.0f} ms' for x in body['latencies_ms'])}")


from dialogue.commands import eval_cmd as _eval_cmd  # noqa: E402  (registered after the commands above, in help order)
from dialogue.commands import simulate_cmd as _simulate_cmd  # noqa: E402  (as above)
from dialogue.commands import triage as _triage  # noqa: E402  (as above)

app.command("triage")(_triage)
app.command("eval")(_eval_cmd)
app.command("simulate")(_simulate_cmd)


if __name__ == "__main__":
    app()
