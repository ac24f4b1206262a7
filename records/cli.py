"""`carecall user ...` and `carecall records ...`: console accounts and record upkeep
(registered on the main typer app in cli.py). Heavy imports happen inside the commands."""

from __future__ import annotations

import sys

import typer

user_app = typer.Typer(no_args_is_help=True, help="Console users (nurse, admin)")
records_app = typer.Typer(no_args_is_help=True, help="Call records: migrate, purge old recordings")


def _database():
    from records.db import DatabaseError, open_database
    from settings import Settings

    settings = Settings()
    try:
        return settings, open_database(settings.resolved_database_url)
    except DatabaseError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="sign-in name"),
    role: str = typer.Option("nurse", "--role", help="nurse or admin"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Create a console user (the first admin: `carecall user add --role admin NAME`)."""
    from records.repository import RecordsError, audit, create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _, database = _database()
    try:
        with database.session() as session:
            user = create_user(session, username, password, role)
            audit(session, "user_create", detail={"user_id": user.id, "username": user.username, "role": role,
                                                  "via": "cli"})  # fmt: skip
    except RecordsError as exc:
        typer.echo(f"cannot add user: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(f"added {role} {username}")


@user_app.command("list")
def user_list() -> None:
    """List console users."""
    from records.repository import list_users

    _, database = _database()
    with database.session() as session:
        for u in list_users(session):
            typer.echo(f"{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}")
    database.dispose()


@user_app.command("passwd")
def user_passwd(
    username: str = typer.Argument(...),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a user's password (and sign them out everywhere)."""
    from sqlalchemy import select

    from records.models import User
    from records.repository import RecordsError, audit, update_user

    password = (
        sys.stdin.readline().rstrip("\r\n")
        if password_stdin
        else typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    )
    _, database = _database()
    try:
        with database.session() as session:
            uid = session.scalar(select(User.id).where(User.username == username))
            if uid is None:
                raise RecordsError(f"no user {username!r}")
            update_user(session, uid, password=password)
            audit(session, "user_update", detail={"user_id": uid, "password_changed": True, "via": "cli"})
    except RecordsError as exc:
        typer.echo(f"cannot change password: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(f"password changed for {username}")


@records_app.command("migrate")
def records_migrate() -> None:
    """Create or upgrade the records database to the newest schema."""
    _, database = _database()
    database.dispose()
    typer.echo("records database is up to date")


@records_app.command("purge")
def records_purge(
    days: int = typer.Option(None, "--days", help="retention in days (default: CARECALL_RECORDING_RETENTION_DAYS)"),
) -> None:
    """Delete call recordings older than the retention period (transcripts and findings stay)."""
    from records.recordings import purge_recordings

    settings, database = _database()
    retention = days if days is not None else settings.recording_retention_days
    removed = purge_recordings(database, settings.data_dir, retention)
    database.dispose()
    typer.echo(f"removed {removed} recordings")


@records_app.command("qa")
def records_qa(
    all_calls: bool = typer.Option(False, "--all", help="recompute every ended call (default: those without a report)"),
) -> None:
    """Compute the conversation QA report and tags of ended calls (calls recorded before QA existed,
    or after prompts/qa/checks.yaml or the protocols changed)."""
    from sqlalchemy import select

    from records.models import Call
    from records.qa import store_report
    from records.tags import store_tags

    _, database = _database()
    counts = {"pass": 0, "warn": 0, "fail": 0}
    query = select(Call.id).where(Call.status == "ended")
    if not all_calls:
        query = query.where(Call.qa_result.is_(None))
    try:
        with database.session() as session:
            ids = list(session.scalars(query))
        for call_id in ids:  # one transaction per call: a long backfill never holds the database
            with database.session() as session:
                call = session.get(Call, call_id)
                if call is None:
                    continue
                report = store_report(session, call)
                store_tags(session, call)
                counts[report.result] += 1
    finally:
        database.dispose()
    typer.echo(f"QA of {len(ids)} calls: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail")
