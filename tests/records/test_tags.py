"""prompts/tags/tags.yaml: names by language code, checked against the registry when read."""

from __future__ import annotations

from pathlib import Path

import pytest

from records.tags import TAGS_FILE, TagsError, describe, load_tag_data
from voice.languages import languages


def _write(tmp_path: Path, names: str) -> Path:
    path = tmp_path / "tags.yaml"
    path.write_text(f"kinds:\n  outcome: {names}\nfollowup_areas: {{}}\noutcomes: {{}}\n", encoding="utf-8")
    return path


def test_names_are_by_registered_language_and_the_fallbacks_is_required(tmp_path: Path) -> None:
    assert load_tag_data(_write(tmp_path, '{en: "Outcome", zh: "通话结果"}')).kinds["outcome"].name("zh") == "通话结果"
    with pytest.raises(TagsError, match="no language pack for fr"):
        load_tag_data(_write(tmp_path, '{en: "Outcome", fr: "Résultat"}'))
    with pytest.raises(TagsError, match=f"a name in {languages.fallback}"):
        load_tag_data(_write(tmp_path, '{zh: "通话结果"}'))


def test_every_tag_has_a_name_in_every_language() -> None:
    data = load_tag_data(TAGS_FILE)
    for code in [*(f"followup:{a}" for a in data.followup_areas), *(f"outcome:{o}" for o in data.outcomes),
                 "complaint:chest_pain", "red_flag:stroke_signs"]:
        tag = describe(code)
        assert set(tag.names) == set(languages) and all(tag.names.values()), code
        assert tag.name("zh") != tag.name("en"), code  # each language's own name, not a copy
