"""dialogue.engine: what it reads from the facts to route a call (the rules themselves are tested with
their data in test_red_flags, test_departments and the conversation sets)."""

from __future__ import annotations

import pytest

from dialogue.engine import department
from dialogue.facts import Facts
from dialogue.knowledge import knowledge


@pytest.mark.parametrize(("facts_lang", "routed_as"), [("zh", "zh"), ("en", "en"), ("", "en")])
def test_department_routing_reads_the_calls_language_not_the_script(
    facts_lang: str, routed_as: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def route(texts: list[str], lang: str, *args: object) -> str:
        seen.append(lang)
        return "general_medicine"

    monkeypatch.setattr("dialogue.departments.route", route)
    facts = Facts(facts_lang)
    facts.utterances.append("CT 做过了, my ear hurts")  # either script: the call's language decides
    department(None, "consultation", facts, knowledge())
    assert seen == [routed_as]
