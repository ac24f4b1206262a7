"""What the recogniser's word probabilities tell the dialogue: the words to read back."""

from __future__ import annotations

from voice.ports import WordInfo


def uncertain_words(words: tuple[WordInfo, ...], threshold: float) -> tuple[str, ...]:
    """The words the recogniser was unsure of (probability under `threshold`), in order, once each;
    adjacent unsure Mandarin characters join into one word (三, 十 → 三十)."""
    out: list[str] = []
    previous_end: float | None = None
    for w in words:
        text = w.text.strip(" ,.?!，。？！、")
        if not text or w.probability >= threshold:
            previous_end = None
            continue
        if out and previous_end is not None and _cjk(text) and _cjk(out[-1]):
            out[-1] += text
        else:
            out.append(text)
        previous_end = w.end_s
    return tuple(dict.fromkeys(out))


def _cjk(text: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in text)
