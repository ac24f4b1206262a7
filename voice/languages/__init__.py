"""The languages CareCall speaks, as a registry of `LanguagePack`s.

    from voice.languages import languages
    pack = languages["zh"]                 # KeyError-free lookup: languages.get(code)
    pack.normalize("38.5℃"), pack.spell_int(120), pack.dtmf_words["1"], pack.emergency_number

Adding a language (Cantonese, say) touches this package and `prompts/<code>/`: write
`voice/languages/yue/` (a copy of `zh/`) with its numbers, its voice text normaliser and a `PACK`, add it to
`_PACKS` below, and give it `prompts/yue/` (language.yaml, the dialogue's phrasings and terms).
Admission (`voice.admission.LANGUAGES`), the SIP request-URI rule, the server's voices, the CLI's
`--lang`, the dialogue's data (`dialogue.knowledge.LANGS`) and the console follow the registry; tables a
new language may not have yet are read with `languages.pick` (its own entry, then its `rules_from`'s,
then the fallback's). What is still per rule set is listed in the README ("How to add a language").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from voice.languages import en, zh
from voice.languages.pack import ClauseLengths, LanguageData, LanguagePack

__all__ = ["LANGUAGES", "ClauseLengths", "LanguageData", "LanguagePack", "LanguageRegistry", "UnknownLanguage",
           "languages"]


T = TypeVar("T")


class UnknownLanguage(KeyError):
    """A language code no pack is registered for."""


class LanguageRegistry(Mapping[str, LanguagePack]):
    """Packs by code, read-only. `fallback` is the pack for text of a language CareCall does not speak
    (records written before a language was removed, a console's `?lang=`): never used to admit a call."""

    def __init__(self, packs: tuple[LanguagePack, ...], fallback: str) -> None:
        self._packs = {p.code: p for p in packs}
        if len(self._packs) != len(packs):
            raise ValueError("two language packs share a code")
        if fallback not in self._packs:
            raise ValueError(f"fallback language {fallback!r} has no pack")
        self.fallback = fallback

    def __getitem__(self, code: str) -> LanguagePack:
        try:
            return self._packs[code]
        except KeyError:
            raise UnknownLanguage(code) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._packs)

    def __len__(self) -> int:
        return len(self._packs)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._packs)

    def or_fallback(self, code: object) -> LanguagePack:
        """The pack for `code`, or the fallback's for anything else (None, "fr", a typo)."""
        return self._packs.get(code, self._packs[self.fallback]) if isinstance(code, str) else self[self.fallback]

    def lookup_order(self, code: object) -> tuple[str, ...]:
        """Where a per-language table is read for `code`: its own entry, then that of the language it
        takes its rules from (Cantonese: Mandarin's), then the fallback's. A code no pack has goes
        straight to the fallback."""
        pack = self.or_fallback(code)
        return tuple(dict.fromkeys((pack.code, pack.rules, self.fallback)))

    def pick(self, table: Mapping[str, T], code: object) -> T:
        """`table`'s entry for `code` in `lookup_order`: for tables a new language may not have yet
        (console strings, tag names, the takeover's three phrases). What the dialogue says is the
        language's own data (prompts/<code>/), loaded and checked for every registered language."""
        for key in self.lookup_order(code):
            if key in table:
                return table[key]
        raise UnknownLanguage(f"{code!r}: none of {', '.join(self.lookup_order(code))} in the table")


_PACKS = (zh.PACK, en.PACK)
languages = LanguageRegistry(_PACKS, fallback="en")
LANGUAGES: tuple[str, ...] = languages.codes
