#!/usr/bin/env bash
# The optional Coqui TTS engine (`[coqui]` extra) in its own virtual environment, outside the clone:
#   ${CARECALL_COQUI_VENV:-${CARECALL_CACHE:-~/.cache/carecall}/venv-coqui}
# torch's CUDA build is ~7 GB installed, so it never goes into the main .venv (which stays
# torch-free); the main test suite runs the Coqui tests through this environment's python.
# Idempotent: the stamp holds a hash of this script (the pins below live here), so a second run
# returns at once, from any clone: the repo is not installed into it; its tests put the clone on
# PYTHONPATH instead (CI's fresh clone in another folder must not rebuild 7 GB).
#
# Why these pins (FIELD-NOTES.md): coqui-tts imports torchaudio, and torchaudio must match torch
# exactly; PyPI's newest torchaudio/torchcodec do not import next to this disk's CPU torch, and no
# CPU-only torch 2.9.1 wheel is reachable here, so torch 2.9.1 (PyPI's CUDA 12.8 build, which also
# runs on CPU: the same build a GPU host uses) + torchaudio 2.9.1. `six` is an undeclared need of
# coqui-tts; XTTS breaks on transformers 5.24. torchcodec is only imported (CareCall passes
# waveforms, never files, so FFmpeg is never loaded).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${CARECALL_CACHE:-$HOME/.cache/carecall}
venv=${1:-${CARECALL_COQUI_VENV:-$cache/venv-coqui}}
stamp="$venv/.carecall-coqui-stamp"

requirements=(
  "torch==2.9.1"
  "torchaudio==2.9.1"
  "coqui-tts==0.28.0"
  "torchcodec==0.9.1"  # TTS refuses to import without it on torch >= 2.9; 0.9 is the release for torch 2.9
  "six"
  "transformers>=4.57,<5.24"
  "pypinyin>=0.55"  # XTTS reads Mandarin as pinyin (coqui-tts's [zh] extra, less spacy-pkuseg)
  # the few core packages that voice.tts.coqui and settings import (the repo goes in --no-deps)
  "numpy>=2.0"
  "pydantic>=2.7"
  "pydantic-settings>=2.4"
  # to run tests/voice/coqui_inside/ in this environment
  "pytest>=8"
  "pytest-asyncio>=0.24"
  "pytest-timeout>=2.3"
)

want=$(sha256sum < "$here/scripts/install-coqui.sh" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

pip() {  # this machine's pip.conf names local indexes that lack most packages: drop those warnings
  "$venv/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

echo "install-coqui: building $venv (torch 2.9.1 + coqui-tts 0.28.0, ~7 GB; first run only)" >&2
mkdir -p "$(dirname "$venv")"
python3.11 -m venv "$venv"
pip install -q --upgrade pip wheel
pip install -q "${requirements[@]}"
PYTHONPATH="$here" "$venv/bin/python" -c "import torch, torchaudio, TTS.api, TTS.tts.models.xtts, voice.tts.coqui" \
  || { echo "install-coqui: $venv was built but does not import; see the errors above" >&2; exit 1; }
echo "$want" > "$stamp"
