"""`carecall` command line: serve, call, triage, eval, user, campaign."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="CareCall voice triage and follow-up")


@app.command()
def serve(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Start the CareCall server (http://127.0.0.1:8080 by default)."""
    import uvicorn

    from server import create_app
    from settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", ws_max_size=settings.max_ws_message_bytes)


if __name__ == "__main__":
    app()
