"""The optional Coqui TTS engine (`[coqui]` extra), tested from the main suite.

torch and coqui-tts live in their own environment (scripts/install-coqui.sh, `make coqui`, which
`make test` runs), never in the main .venv. So the real tests (tests/voice/coqui_inside/) run in that
environment's python, on tiny models they build; a missing environment is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSIDE = REPO / "tests" / "voice" / "coqui_inside"


def coqui_venv() -> Path:
    if venv := os.environ.get("CARECALL_COQUI_VENV"):
        return Path(venv)
    cache = Path(os.environ.get("CARECALL_CACHE", Path.home() / ".cache" / "carecall"))
    return cache / "venv-coqui"


@pytest.mark.models
@pytest.mark.timeout(900)  # ~1 min alone; several on a loaded 2-core machine (the subprocess has its own limit)
def test_coqui_engine_on_tiny_models_in_its_own_environment() -> None:
    python = coqui_venv() / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no Coqui environment at {python.parent.parent}: run `make coqui` (`make test` does)")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PYTHONPATH"] = str(REPO)  # the environment holds the engines' dependencies, not the clone
    proc = subprocess.run(
        [
            str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"),
            "--confcutdir", str(INSIDE),  # the main suite's conftests import what only .venv has
            str(INSIDE),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"coqui tests failed in {python}:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]


def test_main_environment_stays_torch_free_and_the_engine_says_how_to_install() -> None:
    # The module imports without torch; building a synthesizer without the extra names the fix.
    from settings import Settings
    from voice.models import ModelMissing
    from voice.tts.coqui import CoquiSynthesizer, CoquiUnavailable

    if importlib.util.find_spec("TTS") is not None:
        pytest.skip(f"coqui-tts is importable in {sys.prefix}; this checks an environment without it")
    with pytest.raises(CoquiUnavailable, match="make coqui") as caught:
        CoquiSynthesizer.from_settings(Settings(coqui_model_path=Path("/nonexistent/model.pth")), None, language="en")
    assert isinstance(caught.value, ModelMissing)  # the server reports it as it reports any missing model
