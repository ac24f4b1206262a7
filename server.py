"""The one ASGI app: wires engines, calls, transports, the widget, telephony and the console.
Nothing imports this module; it imports everything."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.websockets import WebSocketState

import web.console
import web.health
import web.widget
from dialogue.llama_server import MODEL_ALIAS, LlamaServer
from dialogue.llm import ChatModel
from dialogue.openai_chat import OpenAIChatModel
from records.db import private_dir
from records.shared_tokens import SharedTokenLedger
from settings import Settings
from telephony.lines import PhoneLines
from voice.admission import AdmissionRefused, CallRequest, admit, validate
from voice.budget import MeasuredExecutor, latency_budget, watch_loop_lag
from voice.call import Call, TurnTaking
from voice.hub import CallHub, CallsBusy, Engines
from voice.languages import languages
from voice.metrics import CallMetrics
from voice.ports import Synthesizer
from voice.takeover import TakeoverRegistry
from voice.transports.websocket import ProtocolError, WebSocketTransport, parse_start
from voice.tts.cache import CachingSynthesizer
from voice.tts.warm import WarmReport, warm_health, warm_phrases
from web.console.takeover import load_phrases as load_takeover_phrases
from web.limits import BodyLimitMiddleware, BodyRule, console_signed_in

log = logging.getLogger("carecall.server")

PROMPTS = Path(__file__).resolve().parent / "prompts"


@dataclass
class Runtime:
    """What one server process holds for its lifetime."""

    settings: Settings
    executor: ThreadPoolExecutor
    chat_model: ChatModel
    hub: CallHub
    metrics: CallMetrics
    warm: WarmReport = field(default_factory=WarmReport)  # TTS warm start progress (/healthz)
    takeovers: TakeoverRegistry | None = None  # live takeover by a nurse (web/console/takeover.py)


def load_backchannels() -> dict[str, frozenset[str]]:
    """Short acknowledgements that must not interrupt the bot (clinician-editable data)."""
    words: dict[str, frozenset[str]] = {}
    for lang in languages:
        path = PROMPTS / lang / "backchannels.txt"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        words[lang] = frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))
    return words


def turn_taking(settings: Settings) -> TurnTaking:
    return TurnTaking.from_settings(settings.turn_taking, load_backchannels())


async def start_chat_model(settings: Settings, stack: AsyncExitStack) -> ChatModel:
    """vLLM (or any OpenAI-compatible server) when configured, else the embedded llama.cpp."""
    from voice.models import smollm2_gguf

    if settings.llm_base_url:
        flavour = "vllm" if settings.llm_flavour in ("auto", "vllm") else "llamacpp"
        model = OpenAIChatModel(
            settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            model=settings.llm_model,
            flavour=flavour,
            capable=settings.llm_capable,
            timeout_s=settings.llm_timeout_s,
        )
    else:
        server = LlamaServer(smollm2_gguf(), port=settings.llm_port, threads=settings.llm_threads)
        await server.start()
        stack.push_async_callback(server.stop)
        model = OpenAIChatModel(
            server.base_url,
            model=MODEL_ALIAS,
            flavour="llamacpp",
            capable=False,  # SmolLM2-135M: wiring and latency only, never clinical content
            timeout_s=settings.llm_timeout_s,
        )
    stack.push_async_callback(model.aclose)
    return model


def load_engines(settings: Settings, executor: ThreadPoolExecutor, chat_model: ChatModel) -> Engines:
    from dialogue.factory import build_dialogue_factory
    from dialogue.semantic import warm_up as warm_up_understanding
    from voice.asr import WhisperRecognizer
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    recognizer = WhisperRecognizer.from_settings(settings, executor)
    recognizer.warm_up()  # the first decode's one-off costs, here rather than in the first caller's turn
    def voice(language: str) -> Synthesizer:
        engine = settings.tts_engine(language)  # one its pack lists (checked by Settings)
        if engine == "coqui":  # the [coqui] extra, for GPU hosts
            from voice.tts.coqui import CoquiSynthesizer

            return CoquiSynthesizer.from_settings(settings, executor, language=language)
        if engine == "piper":
            return PiperSynthesizer.from_settings(settings, executor)
        if engine == "fastspeech2":
            return MandarinSynthesizer.from_settings(settings, executor)
        raise ValueError(f"no voice engine {engine!r}")

    synthesizers: dict[str, Synthesizer] = {lang: CachingSynthesizer(voice(lang)) for lang in languages}
    numbers = {lang: settings.emergency_number(lang) for lang in languages}
    # The sentence encoder and exemplar banks (dialogue.semantic) load in a few seconds: at start-up,
    # not in the middle of the first caller's turn.
    warm_up_understanding()
    dialogue = build_dialogue_factory(
        chat_model=chat_model,
        emergency_numbers=numbers,
        llm_capable=settings.llm_capable,
        silence_reprompts=settings.turn_taking.silence_reprompts_before_end,
    )
    return Engines(recognizer=recognizer, synthesizers=synthesizers, dialogue=dialogue)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        # Model inference runs here, never on the event loop. Sized to the cores so calls
        # queue for a core rather than thrash it (CTranslate2 and onnxruntime release the GIL).
        budget = latency_budget(settings)  # admission from measured figures (voice/budget.py)
        executor = MeasuredExecutor(budget, max_workers=os.cpu_count() or 2, thread_name_prefix="infer")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        chat_model = await start_chat_model(settings, stack)
        engines = await asyncio.get_running_loop().run_in_executor(
            None, load_engines, settings, executor, chat_model
        )
        recordings = settings.data_dir / "recordings"
        call_factory = functools.partial(Call, turn_taking=turn_taking(settings), recording_dir=recordings)
        hub = CallHub(engines, call_factory, settings.max_concurrent_calls, budget=budget)
        takeovers = TakeoverRegistry(load_takeover_phrases(), engines.recognizer, hub.active)
        metrics = CallMetrics()
        hub.add_observer(metrics)
        lag = asyncio.create_task(watch_loop_lag(budget), name="loop-lag")
        stack.callback(lag.cancel)
        stack.push_async_callback(functools.partial(hub.drain, 0.0))  # SIGTERM drained already (web/health.py)
        warm = WarmReport()
        if settings.tts_warm_start:  # every fixed phrase rendered in the background (voice/tts/warm.py)
            from dialogue.fixed_phrases import fixed_phrases

            phrases = fixed_phrases({lang: settings.emergency_number(lang) for lang in languages})
            warming = asyncio.ensure_future(warm_phrases(engines.synthesizers, phrases, warm))
            stack.callback(warming.cancel)
        yield Runtime(settings=settings, executor=executor, chat_model=chat_model, hub=hub, metrics=metrics,
                      warm=warm, takeovers=takeovers)


async def ws_call(ws: WebSocket) -> None:
    """The WebSocket call endpoint (protocol in the README)."""
    runtime: Runtime = ws.app.state.runtime
    settings = runtime.settings
    await ws.accept()
    try:
        first = await asyncio.wait_for(ws.receive(), timeout=10)
        if first["type"] == "websocket.disconnect":
            return
        start = parse_start(first.get("text"))
        validate(CallRequest("websocket", language=start.language, mode=start.mode))  # refused before a token is spent
        authorise = ws.app.state.authorise_call
        grant = await authorise(start.token) if authorise is not None else None
        # fields that touch records come from the server (the signed token), never the caller (#4)
        params = dict(getattr(grant, "params", None) or {})
        if grant is not None and start.params.get("consent") == "page":
            # The one thing the caller may say in `params`: that they ticked the recording notice on the
            # widget's page (as the WebRTC path assumes). It is their own agreement, as a spoken "yes" is.
            params["consent"] = "page"
        request = CallRequest("websocket", language=start.language, mode=start.mode, params=params)
        admitted = admit(runtime.hub, request)
    except TimeoutError:
        await _reject(ws, "start_timeout", "no start message within 10 s", 1008)
        return
    except ProtocolError as exc:
        await _reject(ws, exc.code, str(exc), 1003)
        return
    except PermissionError as exc:
        await _reject(ws, "unauthorised", str(exc), 1008)
        return
    except AdmissionRefused as exc:
        if exc.busy:
            await _reject(ws, "busy", "all lines are busy, please try again shortly", 1013)
        else:
            await _reject(ws, exc.code, exc.message, 1003)
        return

    with admitted:
        info = admitted.info
        transport = WebSocketTransport(ws, start, max_message_bytes=settings.max_ws_message_bytes,
                                       call_id=info.call_id, emergency_number=settings.emergency_number(info.language))
        await transport.send_json({"type": "started", "call_id": info.call_id, "sample_rate": transport.output_rate})
        await transport.start()
        try:
            await admitted.run(transport)
        except CallsBusy:
            await transport.send_json({"type": "error", "code": "busy", "message": "all lines are busy"})
        finally:
            await transport.aclose()


async def _reject(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    with contextlib.suppress(Exception):
        if ws.application_state == WebSocketState.CONNECTED:
            await ws.send_json({"type": "error", "code": code, "message": message})
            await ws.close(close_code, code)


def create_app(settings: Settings | None = None, *, runtime_factory: Any = open_runtime) -> FastAPI:
    settings = settings or Settings()
    web.health.check_cluster_settings(settings)  # no per-process random keys in a cluster

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        private_dir(settings.data_dir)  # 0700: the database and recordings live here (#10)
        async with runtime_factory(settings) as runtime:
            app.state.runtime = runtime
            app.state.hub = runtime.hub
            app.state.takeovers = getattr(runtime, "takeovers", None)
            records = await web.console.start(app, settings)  # call records + recorder on the hub
            widget.tokens.ledger = SharedTokenLedger(records.database)  # single use across workers
            await phone.start(app)  # SIP endpoint (when CARECALL_SIP_ENABLED)
            yield
            await phone.aclose()  # hang up phone calls, close the SIP socket
            await widget.aclose()  # tell widget callers, close every WebRTC peer connection
        await records.aclose()  # after the hub drained: the last call events are stored

    docs = settings.api_docs  # /docs and /openapi.json: off unless the operator turns them on (#10)
    app = FastAPI(title="CareCall", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None)
    app.state.settings = settings
    app.state.authorise_call = None  # set below when call tokens are required
    # body limits before any route parses a body (#8); the CSV upload's larger limit needs a session
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, is_signed_in=console_signed_in,
                       rules=[BodyRule("/console/campaigns/", settings.max_upload_bytes)])

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        hub: CallHub | None = getattr(app.state, "hub", None)
        runtime = getattr(app.state, "runtime", None)
        warm = getattr(runtime, "warm", None)
        synthesizers = getattr(getattr(hub, "engines", None), "synthesizers", {})  # (test runtimes have none)
        return {"status": "ok", "calls": len(hub.active) if hub else 0,
                "warm": warm_health(warm, synthesizers) if warm else None}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus scrape: latencies, calls, barge-ins, escalations (numbers only, no patient data).
        With CARECALL_METRICS_TOKEN set it needs that bearer token; without, only loopback may scrape."""
        token = settings.metrics_token.get_secret_value()
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Response("metrics need the bearer token\n", status_code=401)
        elif not (request.client and request.client.host in ("127.0.0.1", "::1")):
            return Response("metrics are served to loopback only; set CARECALL_METRICS_TOKEN\n", status_code=403)
        runtime: Runtime = app.state.runtime
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_websocket_route("/ws/call", ws_call)
    web.health.install(app)  # /healthz/live, /healthz/ready (balancers)
    web.console.install(app, settings)  # nurse console at /console
    widget = web.widget.WidgetService(settings)  # patient widget, call tokens, WebRTC signalling
    app.include_router(widget.router)
    phone = PhoneLines(settings)  # Twilio-style Media Streams webhook + stream, SIP/RTP endpoint
    app.include_router(phone.router)
    if settings.call_token_required:
        app.state.authorise_call = widget.authorise_call  # a /ws/call start spends a widget token
    return app
