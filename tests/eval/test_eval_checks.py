"""Every check type, synonyms and their local override."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from jobs.common.checks import check_of, load_synonyms, run_check
from jobs.common.errors import InvalidInput
from jobs.common.spec import Check, EvalStep


def passes(check: dict, response: str, expected: str | None = None, synonyms=None) -> bool:
    return run_check(Check.model_validate(check), response, expected, synonyms or {}).passed


def test_exact_ignores_case_and_spacing_unless_told():
    assert passes({"type": "exact"}, "  berlin ", "Berlin")
    assert not passes({"type": "exact", "ignoreCase": False}, "berlin", "Berlin")
    assert not passes({"type": "exact"}, "Berlin, of course", "Berlin")
    assert passes({"type": "exact", "value": "yes"}, "YES", "ignored")


def test_contains_uses_value_or_expected():
    assert passes({"type": "contains"}, "It is Berlin.", "berlin")
    assert not passes({"type": "contains"}, "It is Bonn.", "Berlin")
    assert passes({"type": "contains", "value": "bonn"}, "It is Bonn.", "Berlin")


def test_regex_searches_and_respects_case_flag():
    assert passes({"type": "regex", "value": r"^\d{3}$"}, "123")
    assert not passes({"type": "regex", "value": r"^\d{3}$"}, "1234")
    assert passes({"type": "regex", "value": "^hello"}, "Hello")
    assert not passes({"type": "regex", "value": "^hello", "ignoreCase": False}, "Hello")


def test_json_valid_accepts_a_fenced_block():
    assert passes({"type": "json_valid"}, '{"a": [1, 2]}')
    assert passes({"type": "json_valid"}, '```json\n{"a": 1}\n```')
    assert not passes({"type": "json_valid"}, "{'a': 1}")
    assert not passes({"type": "json_valid"}, "Sure! {\"a\": 1}")


def test_any_of_matches_whole_words_of_values_or_expected():
    assert passes({"type": "any_of", "values": ["yes", "correct"]}, "That is correct.")
    assert not passes({"type": "any_of", "values": ["yes"]}, "eyes")
    assert passes({"type": "any_of"}, "The answer is 4.", "4")
    assert not passes({"type": "any_of"}, "The answer is 14.", "4")


def test_any_of_uses_synonym_groups_both_ways():
    synonyms = {"Paris": ["City of Light", "Lutetia"]}
    assert passes({"type": "any_of"}, "They call it the city of light", "Paris", synonyms)
    assert passes({"type": "any_of"}, "Paris, of course", "Lutetia", synonyms)  # member -> whole group
    assert not passes({"type": "any_of"}, "They call it the city of light", "Paris")  # no synonyms


def test_synonyms_override_replaces_groups_key_by_key(tmp_path):
    shared = tmp_path / "synonyms.json"
    local = tmp_path / "synonyms.local.json"
    shared.write_text(json.dumps({"Paris": ["City of Light"], "Rome": ["Eternal City"]}))
    local.write_text(json.dumps({"Paris": ["Lutetia"], "Bonn": ["old capital"]}))
    merged = load_synonyms(shared, local)
    assert merged == {"Paris": ["Lutetia"], "Rome": ["Eternal City"], "Bonn": ["old capital"]}
    assert not passes({"type": "any_of"}, "the City of Light", "Paris", merged)
    assert passes({"type": "any_of"}, "Lutetia", "Paris", merged)


def test_bad_synonyms_file_names_the_file(tmp_path):
    bad = tmp_path / "syn.json"
    bad.write_text(json.dumps({"Paris": "City of Light"}))
    with pytest.raises(InvalidInput, match="syn.json: must be a JSON object of lists"):
        load_synonyms(bad, None)


def test_check_needing_expected_without_one_is_an_error():
    with pytest.raises(InvalidInput, match="needs the item's expected answer"):
        run_check(Check(type="exact"), "x", None, {})


def test_outcome_records_the_check_so_it_can_run_again():
    check = Check.model_validate({"type": "regex", "value": "a+", "ignoreCase": False})
    line = run_check(check, "caat", None, {}).to_json()
    assert line["passed"] is True and line["check"] == "regex:a+"
    assert check_of(line) == check


def test_regex_that_does_not_compile_is_rejected_by_the_spec():
    with pytest.raises(ValidationError, match="regex does not compile"):
        EvalStep.model_validate({"items": "i.jsonl", "backend": {"baseModel": True}, "checks": [{"type": "regex", "value": "(["}]})
