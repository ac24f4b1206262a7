"""Real SIP peers for tests: SIPp scenarios (filled-in copies of tests/telephony/sipp/*.xml), RTP
captured off the loopback with tcpdump (SIPp cannot record), and a pcap reader for what we caught."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telephony.sip.rtp import RtpPacket, parse_rtp
from voice import g711

SIPP_DIR = Path(__file__).parent / "sipp"
HAVE_SIPP = shutil.which("sipp") is not None
HAVE_TCPDUMP = shutil.which("tcpdump") is not None
HAVE_BARESIP = shutil.which("baresip") is not None


@dataclass
class SippRun:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def scenario(name: str, dest: Path, **values: str) -> Path:
    text = (SIPP_DIR / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", value)
    path = dest / name
    path.write_text(text)
    return path


async def run_sipp(target: str | None, scenario_path: Path, *, sip_port: int, media_port: int,
                   keys: dict[str, str] | None = None, extra: list[str] | None = None,
                   timeout: float = 60) -> SippRun:
    """One SIPp call (`-m 1`); `target` None runs it as a server (waits for our INVITE)."""
    args = ["sipp"] + ([target] if target else []) + [
        "-sf", str(scenario_path), "-m", "1", "-i", "127.0.0.1", "-p", str(sip_port),
        "-mi", "127.0.0.1", "-mp", str(media_port), "-nostdin", "-timeout", f"{int(timeout)}s",
        "-timeout_error", "-trace_err", "-error_file", str(scenario_path.with_suffix(".err"))]
    for k, v in (keys or {}).items():
        args += ["-key", k, v]
    args += extra or []
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                stdin=asyncio.subprocess.DEVNULL,
                                                cwd=str(scenario_path.parent))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    errors = scenario_path.with_suffix(".err")
    text = out.decode(errors="replace")
    if errors.exists():
        text += "\n--- errors ---\n" + errors.read_text(errors="replace")
    return SippRun(proc.returncode or 0, text)


def udp_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to `port` on loopback or any address (read from
    /proc/net/udp: probing by binding would race the peer that is starting)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


async def until_listening(port: int, timeout: float = 60) -> None:
    """Until a SIPp started as a server (`run_sipp(None, ...)`) listens on `port`: dial it only then."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on UDP port {port} after {timeout:.0f} s")
        await asyncio.sleep(0.02)


class Capture:
    """tcpdump on lo for UDP to one port; `packets()` are the RTP packets with arrival times."""

    def __init__(self, path: Path, dst_port: int) -> None:
        self.path = path
        self.dst_port = dst_port
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        self._proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-n", "-w", str(self.path), "udp", "and", "dst", "port",
             str(self.dst_port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on lo" once the capture runs
        deadline = time.monotonic() + 10
        assert self._proc.stderr is not None
        line = b""
        while time.monotonic() < deadline and b"listening" not in line:
            line = self._proc.stderr.readline()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            time.sleep(0.3)
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)

    def packets(self) -> list[tuple[float, RtpPacket]]:
        return [(t, p) for t, payload in read_pcap_udp(self.path) if (p := parse_rtp(payload)) is not None]


def read_pcap_udp(path: Path) -> list[tuple[float, bytes]]:
    """UDP payloads from a classic pcap file (Ethernet or Linux cooked link type)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype, 14)
    out: list[tuple[float, bytes]] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        frame = data[off:off + caplen]
        off += caplen
        ip = frame[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append((sec + frac / (1e9 if nano else 1e6), bytes(udp[8:length])))
    return out


def decode_stream(packets: list[tuple[float, RtpPacket]], payload_type: int | None = None) -> np.ndarray:
    """The audio of the G.711 packets, in sequence order (8 kHz int16)."""
    wanted = (0, 8) if payload_type is None else (payload_type,)
    media = [p for _, p in packets if p.payload_type in wanted]
    if not media:
        return np.zeros(0, np.int16)
    base = media[0].seq
    media.sort(key=lambda p: (p.seq - base) & 0xFFFF)
    return np.concatenate([g711.G711("PCMU" if p.payload_type == 0 else "PCMA").decode(p.payload).samples
                           for p in media])


def ulaw_file(samples8k: np.ndarray, path: Path) -> Path:
    path.write_bytes(g711.ulaw_encode(samples8k))
    return path


def rms_dbfs(samples: np.ndarray) -> float:
    if not len(samples):
        return -120.0
    rms = float(np.sqrt(np.mean((samples.astype(np.float64) / 32768.0) ** 2)))
    return 20 * np.log10(max(rms, 1e-6))


async def run_baresip(target: str, speech8k: np.ndarray, workdir: Path, *,
                      quit_after_s: int) -> tuple[str, Path | None]:
    """baresip dials `target`, speaks `speech8k` (its source file; the call ends when the file
    does) and records what it hears (sndfile). Returns (its output, the heard WAV)."""
    import wave

    conf = workdir / "baresip"
    out = workdir / "heard"
    conf.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    source = workdir / "caller.wav"
    with wave.open(str(source), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(speech8k.astype("<i2").tobytes())
    with socket_free() as port:
        sip_port = port
    (conf / "config").write_text(
        f"sip_listen\t\t127.0.0.1:{sip_port}\nnet_interface\t\t127.0.0.1\n"
        f"audio_player\t\taufile,{out / 'played.wav'}\naudio_source\t\taufile,{source}\n"
        f"audio_alert\t\taufile,{out / 'alert.wav'}\nmodule_path\t\t/usr/lib/baresip/modules\n"
        "module\t\t\tg711.so\nmodule\t\t\taufile.so\nmodule\t\t\tsndfile.so\n"
        f"snd_path\t\t{out}\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n")
    (conf / "accounts").write_text("<sip:baresip-test@127.0.0.1>;regint=0\n")
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(conf), "-t", str(quit_after_s), "-e", f"/dial {target}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    try:
        text, _ = await asyncio.wait_for(proc.communicate(), quit_after_s + 20)
    except TimeoutError:
        proc.kill()
        text, _ = await proc.communicate()
    heard = sorted(out.glob("dump-*-dec.wav"))
    return text.decode(errors="replace"), heard[-1] if heard else None


@contextlib.contextmanager
def socket_free():  # type: ignore[no-untyped-def]
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def read_wav_samples(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
        return data.astype(np.int16), w.getframerate()
