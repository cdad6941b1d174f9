"""The eval set: malformed lines are reported with their numbers; allowPartial runs the rest."""

from __future__ import annotations

import json

import pytest

from jobs.common.errors import InvalidData
from jobs.common.spec import Check
from jobs.eval.items import load_items, parse_items

GOOD = {"id": "a", "messages": [{"role": "user", "content": "hi"}], "expected": "hello"}


def lines(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


BAD_SET = lines(
    GOOD,
    "{not json",
    {"id": "b", "messages": []},
    "",
    {"id": "a", "messages": [{"role": "user", "content": "again"}], "expected": "x"},
    {"id": "c", "messages": [{"role": "user", "content": "q"}]},
    {"id": "d", "messages": [{"role": "user", "content": "q"}], "checks": [{"type": "regex", "value": "(["}]},
    {"id": "e", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "expected": "a"},
    {"id": "f", "messages": [{"role": "user", "content": "q"}], "expected": "x", "expectd": "typo"},
    {"id": "g", "messages": [{"role": "user", "content": "q"}], "checks": [{"type": "json_valid"}]},
)


def test_every_bad_line_is_listed_with_its_number():
    items, bad = parse_items(BAD_SET, [])
    assert [i.id for i in items] == ["a", "g"]
    by_line = {b.line: b.error for b in bad}
    assert sorted(by_line) == [2, 3, 5, 6, 7, 8, 9]  # line 4 is blank and skipped
    assert "not JSON" in by_line[2]
    assert "messages" in by_line[3]
    assert "duplicate id 'a' (first on line 1)" in by_line[5]
    assert "no expected answer" in by_line[6]
    assert "regex does not compile" in by_line[7]
    assert "assistant turn" in by_line[8]
    assert "expectd" in by_line[9]


def test_malformed_set_fails_unless_allow_partial(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(BAD_SET)
    with pytest.raises(InvalidData) as err:
        load_items(path, [], allow_partial=False)
    text = str(err.value)
    assert "7 malformed item(s)" in text and "allowPartial" in text
    assert "line 2: not JSON" in text and "line 9:" in text
    items, bad = load_items(path, [], allow_partial=True)
    assert [i.id for i in items] == ["a", "g"] and len(bad) == 7


def test_step_level_checks_make_expected_optional():
    row = {"id": "x", "messages": [{"role": "user", "content": "q"}]}
    items, bad = parse_items(lines(row), [Check(type="json_valid")])
    assert [i.id for i in items] == ["x"] and not bad
    items, bad = parse_items(lines(row), [Check(type="contains")])
    assert not items and "contains:expected" in bad[0].error


def test_a_set_with_no_valid_item_is_an_error(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("\n\n")
    with pytest.raises(InvalidData, match="no valid items"):
        load_items(path, [], allow_partial=True)
