"""Kill the real server (SIGKILL, no shutdown) in the middle of a call: after a restart every turn
that had finished is in the records, the call is closed as cut off, and a nurse can open it.

Drives `carecall serve` over the WebSocket call protocol with speech from the project's own voice."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess

import httpx
import pytest

from records.db import open_database
from records.repository import get_call
from tests.conftest import CARECALL, start_server, stop_server
from voice.caller import CallerSession

pytestmark = pytest.mark.models


async def _call_and_kill(server, first, second) -> tuple[str, list[dict]]:
    async with CallerSession(server.ws_url, "en") as line:
        assert await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=60), "no greeting"
        sent = await line.say(first)
        assert await line.wait_bot_quiet(since=sent, quiet_s=0.5, timeout=60), "no answer"
        sent = await line.say(second)
        assert await line.wait_bot_audio(since=sent, timeout=60) is not None
        finished = list(line.report.turns)  # what the caller's client saw finish (committed before it was shown)
        stop_server(server.process, signal.SIGKILL)  # mid-call: the bot is speaking
        return line.report.call_id, finished


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_server_keeps_every_finished_turn(tmp_path, say, kind, request):
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'carecall.db'}"
    if kind == "postgres":
        url = request.getfixturevalue("postgres_server").create_database()
    first = say("I have had a cough and a fever for three days.", "en")
    second = say("It hurts when I breathe in.", "en")
    server = start_server(data_dir, {"CARECALL_DATABASE_URL": url})
    try:
        call_id, finished = asyncio.run(_call_and_kill(server, first, second))
    finally:
        stop_server(server.process, signal.SIGKILL)

    assert len(finished) >= 3, finished
    subprocess.run([CARECALL, "user", "add", "--role", "nurse", "--password-stdin", "nina"], input=b"nurse-pass-1\n",
                   env=server.env, check=True, capture_output=True)  # fmt: skip
    restarted = start_server(data_dir, {"CARECALL_DATABASE_URL": url})
    try:
        db = open_database(url)
        with db.session() as s:
            call = get_call(s, call_id)
            stored = [(t.speaker, t.text) for t in call.turns]
            if kind == "sqlite":  # one process: every open call was cut off
                assert call.status == "ended" and call.end_reason == "server stopped during the call"
            else:  # other workers may run calls: closed once idle (records.recorder.close_interrupted_calls)
                assert call.status == "in_progress"
        db.dispose()
        for turn in finished:
            assert (turn["speaker"], turn["text"]) in stored, f"turn lost: {turn['speaker']}"
        # and the nurse can open it on the restarted server
        with httpx.Client(base_url=restarted.base_url) as client:
            page = client.get("/console/login")
            token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
            client.post("/console/login", data={"username": "nina", "password": "nurse-pass-1", "login_token": token})
            call_page = client.get(f"/console/calls/{call_id}")
            assert call_page.status_code == 200 and (
                kind == "postgres" or "server stopped during the call" in call_page.text
            )
            # the stereo recording up to its last flush is kept and plays
            assert f'src="/console/calls/{call_id}/audio"' in call_page.text
            audio = client.get(f"/console/calls/{call_id}/audio", headers={"Range": "bytes=0-43"})
            assert audio.status_code == 206 and audio.content[:4] == b"RIFF" and audio.content[22:24] == b"\x02\x00"
    finally:
        stop_server(restarted.process)


async def _call_and_kill_at(server, utterances, kill_after: int) -> tuple[str, list[dict]]:
    """SIGKILL the server the moment the caller's client has seen `kill_after` finished turns."""
    async with CallerSession(server.ws_url, "en") as line:

        async def watch() -> None:
            while len(line.report.turns) < kill_after:
                await asyncio.sleep(0.002)
            server.process.send_signal(signal.SIGKILL)  # no grace: right after the client saw it

        watcher = asyncio.create_task(watch())
        try:
            await line.wait_bot_quiet(since=0.0, quiet_s=0.3, timeout=60)
            for audio in utterances:
                if watcher.done():
                    break
                sent = await line.say(audio)
                await line.wait_bot_quiet(since=sent, quiet_s=0.3, timeout=60)
            await asyncio.wait_for(watcher, 60)
        finally:
            watcher.cancel()
        return line.report.call_id, list(line.report.turns[:kill_after])


def test_kill_right_after_the_client_sees_a_turn_never_loses_it(tmp_path, say):
    """Issue 10 #6: a turn reaches the caller's client only once it is committed, so a kill -9 at the
    moment a client sees turn N keeps turn N; repeated over calls, killed after a random turn."""
    import random

    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'carecall.db'}"
    utterances = [say("I have had a cough and a fever for three days.", "en"), say("It hurts when I breathe in.", "en")]
    rng = random.Random(10_6)
    seen: dict[str, list[dict]] = {}
    for _ in range(3):
        kill_after = rng.randint(1, 4)  # the greeting, the caller's first turn, the reply, the second turn
        server = start_server(data_dir, {"CARECALL_DATABASE_URL": url})
        try:
            call_id, finished = asyncio.run(_call_and_kill_at(server, utterances, kill_after))
        finally:
            stop_server(server.process, signal.SIGKILL)
        assert len(finished) == kill_after
        seen[call_id] = finished
    db = open_database(url)
    try:
        with db.session() as s:
            for call_id, finished in seen.items():
                stored = [(t.speaker, t.text) for t in get_call(s, call_id).turns]
                for turn in finished:
                    assert (turn["speaker"], turn["text"]) in stored, f"a turn the client saw was lost ({call_id[:8]})"
    finally:
        db.dispose()
