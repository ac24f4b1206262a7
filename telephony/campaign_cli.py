"""`carecall campaign ...`: create a campaign, import patients from CSV, run the dialler, status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import typer

campaign_app = typer.Typer(no_args_is_help=True, help="Outbound follow-up call campaigns")

# How `campaign run` gets the models and the call hub for SIP campaigns: lent by the composition root
# (cli.py, from server.open_runtime), so that nothing here imports server.py.
RuntimeOpener = Callable[[Any], AbstractAsyncContextManager[Any]]
_runtime_opener: list[RuntimeOpener] = []


def lend_runtime(opener: RuntimeOpener) -> None:
    _runtime_opener[:] = [opener]


def _db():  # type: ignore[no-untyped-def]
    from records.db import open_database
    from settings import Settings

    settings = Settings()
    return settings, open_database(settings.resolved_database_url)


@campaign_app.command("create")
def create(name: str, template: str = "discharge_followup", timezone: str = "Asia/Shanghai",
           window: str = typer.Option("09:00-20:00", help="local call window HH:MM-HH:MM"),
           max_attempts: int = 3, backoff_minutes: int = 30,
           channel: str = typer.Option("sip", help="sip (hospital PBX) or carrier (REST Calls API)")) -> None:
    """Create a campaign and print its id."""
    from telephony.campaigns import create_campaign

    start, end = window.split("-")
    _, db = _db()
    with db.session() as session:
        c = create_campaign(session, name, template=template, timezone=timezone, window_start=start,
                            window_end=end, max_attempts=max_attempts, retry_backoff_s=backoff_minutes * 60,
                            channel=channel)
        typer.echo(c.id)


@campaign_app.command("import")
def import_(file: Path, campaign: str = typer.Option("", help="campaign id; empty: create one named after the file"),
            channel: str = "sip") -> None:
    """Import patients (name, phone, language, discharge_date, department, template) from a CSV."""
    from telephony.campaigns import Campaign, create_campaign, import_csv

    _, db = _db()
    with db.session() as session:
        c = session.get(Campaign, campaign) if campaign else create_campaign(session, file.stem, channel=channel)
        if c is None:
            raise typer.BadParameter(f"no campaign {campaign!r}")
        report = import_csv(session, c, file)
        typer.echo(json.dumps({"campaign": c.id, "imported": report.imported,
                               "skipped": [{"line": n, "reason": r} for n, r in report.skipped]}, indent=2))


@campaign_app.command("status")
def status(campaign: str) -> None:
    """Contacts by state and attempts by outcome."""
    from telephony.campaigns import campaign_summary

    _, db = _db()
    typer.echo(json.dumps(campaign_summary(db.engine, campaign), indent=2))


@campaign_app.command("run")
def run(concurrency: int = 1, forever: bool = typer.Option(False, help="keep polling for due work"),
        worker: str = "") -> None:
    """Dial due patients: carrier campaigns through the REST Calls API (calls come back to the
    server's webhook), SIP campaigns from this process (it loads the models and a SIP endpoint on
    CARECALL_SIP_PORT, so give it a port other than the server's)."""
    asyncio.run(_run(concurrency, forever, worker or None))


async def _run(concurrency: int, forever: bool, worker: str | None) -> None:
    from contextlib import AsyncExitStack

    from telephony.campaigns import CampaignRunner, CarrierDialer, Dialer, SipDialer

    settings, db = _db()
    dialers: dict[str, Dialer] = {}
    async with AsyncExitStack() as stack:
        if settings.twilio_account_sid and settings.twilio_auth_token.get_secret_value():
            dialers["carrier"] = CarrierDialer(
                api_base=settings.twilio_api_base, account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token.get_secret_value(), from_number=settings.twilio_from_number,
                public_base_url=settings.public_base_url)
        if settings.sip_trunk:
            from telephony.sip.endpoint import SipConfig, SipEndpoint

            if not _runtime_opener:
                raise typer.BadParameter("SIP campaigns need the call runtime (run through `carecall campaign run`)")
            runtime = await stack.enter_async_context(_runtime_opener[0](settings))
            endpoint = SipEndpoint(SipConfig.from_settings(settings), get_hub=lambda: runtime.hub)
            await endpoint.start()
            stack.push_async_callback(endpoint.stop)
            dialers["sip"] = SipDialer(endpoint)
        if not dialers:
            raise typer.BadParameter("configure CARECALL_SIP_TRUNK and/or CARECALL_TWILIO_ACCOUNT_SID + token")
        runner = CampaignRunner(db.engine, dialers, worker=worker, concurrency=concurrency)
        await runner.run(until_idle=not forever)
