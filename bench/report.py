"""Small helpers the benchmarks share: percentiles and the README's results sections."""

from __future__ import annotations

import math
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p95 is a latency that happened)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def update_readme(section: str, body: str) -> None:
    """Replace the README text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`."""
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    block = f"{start}\n{body}\n{end}"
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    README.write_text(text, encoding="utf-8")
