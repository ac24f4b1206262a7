"""The one typed settings object: every knob of CareCall, read from `CARECALL_*` environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from records.live import HEARTBEAT_S, WORKER_LOST_S
from voice.languages import languages
from voice.turn_taking import LEGACY_ENV, TurnTakingSettings


def _default_cache() -> Path:
    return Path(os.environ.get("CARECALL_CACHE", Path.home() / ".cache" / "carecall"))


class _OlderEnvNames(PydanticBaseSettingsSource):
    """Settings under their older flat names, read after the current ones so that those win: the
    turn-taking knobs (`CARECALL_ENDPOINT_SILENCE_MS`, ...: `voice.turn_taking.LEGACY_ENV`) and the
    per-language ones, for every registered language (`CARECALL_EMERGENCY_NUMBER_ZH`,
    `CARECALL_TTS_ENGINE_EN`, ...)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {key.upper(): value for key, value in os.environ.items()}
        out: dict[str, Any] = {}
        turn_taking = {name: env[key] for key, name in LEGACY_ENV.items() if key in env}
        if turn_taking:
            out["turn_taking"] = turn_taking
        for field_name, prefix in (("emergency_numbers", "CARECALL_EMERGENCY_NUMBER_"),
                                   ("tts_engines", "CARECALL_TTS_ENGINE_")):
            per_language = {code: env[prefix + code.upper()] for code in languages if prefix + code.upper() in env}
            if per_language:
                out[field_name] = per_language
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARECALL_", env_file=None, extra="ignore",
                                      env_nested_delimiter="__")

    # --- where things live -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = Field("", description="URL the outside world reaches us on (webhooks, TwiML)")
    cache_dir: Path = Field(default_factory=_default_cache, description="assembled models")
    data_dir: Path = Field(default_factory=lambda: Path("var"), description="database and recordings")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in data_dir")

    # --- ASR ------------------------------------------------------------------------------------
    asr_device: Literal["cpu", "cuda", "auto"] = "cpu"
    asr_compute_type: str = "int8"
    asr_beam_size: int = 5
    asr_beam_size_en: int = Field(1, description="final-decode beam for English (beam 1: ~3x faster on CPU)")
    asr_beam_size_zh: int = Field(5, description="final-decode beam for Mandarin (beam 5 halves errors)")
    asr_threads: int = 2
    asr_max_batch: int = Field(4, description="utterances of concurrent calls decoded in one encoder pass")

    # --- TTS ------------------------------------------------------------------------------------
    tts_engines: dict[str, str] = Field(
        default_factory=dict, description="voice engine per language, e.g. {\"en\": \"coqui\"} (or "
        "CARECALL_TTS_ENGINE_EN=coqui); a language not named uses its pack's (voice.languages)")
    tts_warm_start: bool = Field(True, description="synthesise every fixed phrase at start-up, in the background")
    coqui_model_path: Path | None = None
    coqui_config_path: Path | None = None
    coqui_device: str = "cpu"

    # --- LLM ------------------------------------------------------------------------------------
    llm_base_url: str = Field("", description="OpenAI-compatible server (vLLM); empty = embedded llama.cpp")
    llm_api_key: SecretStr = SecretStr("carecall-local")
    llm_model: str = Field("", description="served model name; empty = whatever the server lists first")
    llm_capable: bool = Field(False, description="the LLM may extract findings and phrase replies")
    llm_flavour: Literal["auto", "vllm", "llamacpp"] = "auto"
    llm_timeout_s: float = 20.0
    llm_threads: int = 1
    llm_port: int = 8091

    # --- turn taking (voice/turn_taking.py: the knobs, their defaults and their older env names) ---
    # CARECALL_TURN_TAKING__SILENCE_MS=600, ...; or a JSON object in CARECALL_TURN_TAKING.
    turn_taking: TurnTakingSettings = Field(default_factory=TurnTakingSettings)

    # --- safety and routing ---------------------------------------------------------------------
    emergency_numbers: dict[str, str] = Field(
        default_factory=dict, description="emergency number per language, e.g. {\"zh\": \"120\"} (or "
        "CARECALL_EMERGENCY_NUMBER_ZH=120); a language not named uses its pack's (voice.languages)")
    transfer_target: str = Field("", description="human line (SIP URI or phone number) for transfers")

    # --- phone lines (telephony/) ---------------------------------------------------------------
    sip_enabled: bool = Field(False, description="run the SIP endpoint (UDP) in the server")
    sip_host: str = Field("127.0.0.1", description="address the SIP and RTP sockets bind to")
    sip_port: int = Field(5060, description="SIP UDP port; 0 picks a free one")
    sip_public_host: str = Field("", description="address advertised in SIP/SDP when behind NAT")
    sip_rtp_port_min: int = 20000
    sip_rtp_port_max: int = 20999
    sip_trunk: str = Field("", description="host[:port] of the PBX/trunk that outbound calls go through")
    sip_from_user: str = "carecall"
    sip_username: str = Field("", description="digest user if the trunk challenges outbound INVITEs")
    sip_password: SecretStr = SecretStr("")
    sip_default_language: str = Field("zh", description="a language of voice.languages: SIP calls that do not "
                                                        "say theirs (X-CareCall-Language, the request URI)")
    twilio_account_sid: str = Field("", description="for outbound calls through the carrier's REST API")
    twilio_api_base: str = Field("https://api.twilio.com", description="Calls API base URL")
    twilio_from_number: str = Field("", description="caller id for outbound carrier calls (E.164)")
    campaign_worker: bool = Field(False, description="the server dials due campaign calls itself")
    campaign_concurrency: int = Field(2, description="campaign calls one worker places at once")
    campaign_poll_s: float = Field(10.0, description="how often a worker looks for due campaign calls")

    sip_allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs/addresses SIP may come from (JSON list); empty: loopback and the trunk's address")
    sip_rtp_latching: Literal["sdp", "signalling", "any"] = Field(
        "sdp", description="RTP only from the SDP's address (sdp); or latch to the first source on the SIP "
                           "peer's host when the SDP address is unusable (signalling); any: latch to anyone (unsafe)")

    # --- limits and admission (voice/hub.py, voice/budget.py) -------------------------------------
    max_concurrent_calls: int = Field(0, description="lines per worker; 0: derived from the cores (CPU ASR) "
                                                     "or 16 per worker on CUDA")
    budget_voice_to_voice_p95_s: float = Field(1.5, description="refuse new calls while recent p95 is above")
    budget_queue_wait_p95_s: float = Field(0.5, description="... while model work waits longer for a thread")
    budget_loop_lag_p95_s: float = Field(0.2, description="... while the event loop lags more than this")
    budget_window_s: float = Field(60.0, description="how far back the budget looks")
    drain_timeout_s: float = Field(30.0, description="on SIGTERM, how long running calls may go on")

    # --- cluster (deploy/, issue 13) ------------------------------------------------------------
    workers: int = Field(1, description="workers sharing this deployment's database; >1 needs CARECALL_SECRET_KEY")
    worker_id: str = Field("", description="this worker's name in nginx's takeover map (?worker=, "
                                           "deploy/nginx): a console takeover reaches the worker carrying the "
                                           "call; empty: one worker, nothing to route")
    live_heartbeat_s: float = Field(HEARTBEAT_S, gt=0, description="how often a worker tells the others it is "
                                                                   "alive (PostgreSQL live view, records/live_pg.py)")
    live_worker_lost_s: float = Field(WORKER_LOST_S, gt=0, description="a worker not heard from this long has "
                                      "died: its calls leave every console's live list (about 4 missed beats)")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1"], description="proxies whose X-Forwarded-For names the client")
    webrtc_turn_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="turn: URLs given with a widget token")
    webrtc_turn_secret: SecretStr = Field(SecretStr(""), description="coturn static-auth-secret (TURN REST API)")
    webrtc_turn_ttl_s: int = Field(3600, description="lifetime of a TURN credential")
    max_ws_message_bytes: int = 64 * 1024
    max_body_bytes: int = Field(64 * 1024, description="largest HTTP request body, refused before parsing")
    max_upload_bytes: int = Field(3 * 1024 * 1024, description="largest console upload (signed-in only)")

    # --- security -------------------------------------------------------------------------------
    secret_key: SecretStr = SecretStr("")
    twilio_auth_token: SecretStr = SecretStr("")
    metrics_token: SecretStr = Field(SecretStr(""), description="bearer token for /metrics; empty: loopback only")
    call_token_required: bool = Field(True, description="every /ws/call start needs a /widget/token token; "
                                      "turn off only for development")
    recording_retention_days: int = 30
    api_docs: bool = Field(False, description="serve /docs and /openapi.json (development only)")

    # --- patient widget (WebRTC) ----------------------------------------------------------------
    webrtc_ice_addresses: list[str] = Field(default_factory=list, description="ICE host addresses; empty: all")
    webrtc_ice_servers: list[str] = Field(default_factory=list, description="STUN/TURN URLs for browser and server")
    widget_tokens_per_minute: int = Field(20, description="call tokens one address may get per minute")
    widget_allowed_origins: list[str] = Field(default_factory=lambda: ["*"], description="pages that may embed")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _OlderEnvNames(settings_cls), dotenv_settings, file_secret_settings)

    @field_validator("sip_allowed_sources", "trusted_proxies", "webrtc_turn_urls", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """`a,b` or a JSON list, from the environment."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _known_languages(self) -> Settings:
        """Per-language settings name registered languages only, and voices each language has."""
        for field_name in ("emergency_numbers", "tts_engines"):
            unknown = set(getattr(self, field_name)) - set(languages)
            if unknown:
                raise ValueError(f"{field_name}: no language pack for {', '.join(sorted(unknown))}")
        for code, engine in self.tts_engines.items():
            if engine not in languages[code].tts_engines:
                raise ValueError(f"tts_engines: {code} speaks with {' or '.join(languages[code].tts_engines)}, "
                                 f"not {engine!r}")
        if self.sip_default_language not in languages:
            raise ValueError(f"sip_default_language: no language pack for {self.sip_default_language!r}")
        return self

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> Settings:
        if self.live_worker_lost_s < 2 * self.live_heartbeat_s:  # one late beat must not end a worker's calls
            raise ValueError(f"live_worker_lost_s ({self.live_worker_lost_s:g}) must be at least twice "
                             f"live_heartbeat_s ({self.live_heartbeat_s:g})")
        return self

    @model_validator(mode="after")
    def _derive_capacity(self) -> Settings:
        if self.max_concurrent_calls <= 0:  # CPU ASR holds about one call per core within 1.5 s p95
            self.max_concurrent_calls = 16 if self.asr_device == "cuda" else max(1, os.cpu_count() or 1)
        return self

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'carecall.db').resolve()}"

    def emergency_number(self, language: str) -> str:
        """The number a caller of `language` is told to ring (the pack's unless configured)."""
        return self.emergency_numbers.get(language) or languages[language].emergency_number

    def tts_engine(self, language: str) -> str:
        return self.tts_engines.get(language) or languages[language].tts_engines[0]
