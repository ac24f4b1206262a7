"""The QA thresholds and markers of prompts/qa/checks.yaml, validated; a malformed file raises
`QaConfigError` naming the field."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice.languages import languages

QA_FILE = Path(__file__).resolve().parents[2] / "prompts" / "qa" / "checks.yaml"


class QaConfigError(ValueError):
    """prompts/qa/checks.yaml is malformed; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    warn_s: float = Field(8.0, gt=0)
    fail_s: float = Field(20.0, gt=0)


class Latency(_Strict):
    warn_ms: float = Field(2500, gt=0)
    fail_ms: float = Field(5000, gt=0)
    outlier_factor: float = Field(3.0, gt=1)


class Uncertain(_Strict):
    max_probability: float = Field(0.5, ge=0, le=1)
    warn_count: int = Field(1, ge=1)
    fail_count: int = Field(4, ge=1)


class Counts(_Strict):
    warn_count: int = Field(1, ge=1)
    fail_count: int = Field(3, ge=1)


class QaConfig(_Strict):
    silence: Thresholds = Thresholds()
    latency: Latency = Latency()
    uncertain_words: Uncertain = Uncertain()
    repeats: Counts = Counts()
    recording_notice: dict[str, list[str]] = {"en": ["recorded"], "zh": ["录音"]}
    followup_critical: list[str] = []
    labels: dict[str, dict[str, str]] = {}  # check id -> {"en": ..., "zh": ...}

    def label(self, check: str, lang: str = "en") -> str:
        names = self.labels.get(check, {})
        found = next((names[k] for k in languages.lookup_order(lang) if names.get(k)), None)
        return found or check.replace("_", " ")


def load_config(path: Path = QA_FILE) -> QaConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return QaConfig.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise QaConfigError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise QaConfigError(f"{path}: {where}: {first['msg']}") from exc


@lru_cache(maxsize=1)
def qa_config() -> QaConfig:
    return load_config()
