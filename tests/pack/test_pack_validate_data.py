"""OpenAI chat data checks and `ftctl validate-data`: each kind of bad data, with its line number."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.cli import cmd_validate_data
from jobs.common.errors import InvalidData, MissingInput
from jobs.pack import tokens
from jobs.pack.readers import read_source
from jobs.pack.tokens import count_tokens
from jobs.pack.validate import chat_tokens, validate_chat_jsonl

GOOD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                     {"role": "assistant", "content": "Hello!", "weight": 1}]}


def good_lines(n: int = 10) -> list[bytes]:
    return [json.dumps(GOOD).encode()] * n


def with_line(line: bytes, at: int = 5) -> bytes:
    """Ten good examples with `line` inserted as line `at` (1-based)."""
    lines = good_lines()
    lines.insert(at - 1, line)
    return b"\n".join(lines) + b"\n"


def message_line(**message) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "Hi?"}, message]}).encode()


BAD = {
    "not_utf8": b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
    "invalid_json": b'{"messages": [',
    "blank_line": b"   ",
    "data_type": b'["not", "an", "object"]',
    "missing_messages_list": b'{"prompt": "hi", "completion": "there"}',
    "messages_not_list": b'{"messages": "hello"}',
    "empty_messages": b'{"messages": []}',
    "message_not_dict": b'{"messages": ["hello", {"role": "assistant", "content": "x"}]}',
    "message_missing_key": message_line(role="assistant"),
    "message_unrecognized_key": message_line(role="assistant", content="x", mood="happy"),
    "unrecognized_role": b'{"messages": [{"role": "bot", "content": "Hi?"}, {"role": "assistant", "content": "x"}]}',
    "missing_content": message_line(role="assistant", content=None),
    "example_missing_assistant_message": b'{"messages": [{"role": "user", "content": "Hi?"}]}',
    "invalid_weight": message_line(role="assistant", content="x", weight=0.5),
    "too_long": message_line(role="assistant", content="word " * 20_000),
}


@pytest.mark.parametrize("kind", BAD)
def test_each_kind_is_reported_with_its_line(kind):
    result = validate_chat_jsonl(with_line(BAD[kind], at=5))
    assert result.counts == {kind: 1}, result.problems
    (problem,) = result.problems
    assert problem.line == 5


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (message_line(role="assistant", content=""), "missing_content"),
        (message_line(role="assistant", content=["a", "list"]), "missing_content"),
        (message_line(role="assistant", content="x", weight=True), "invalid_weight"),
        (message_line(role="assistant", content="x", weight="1"), "invalid_weight"),
        (b'{"messages": null}', "missing_messages_list"),
        (b"42", "data_type"),
        (b"[" * 50_000, "invalid_json"),
    ],
)
def test_more_shapes_of_the_same_kinds(line, kind):
    assert validate_chat_jsonl(with_line(line, at=3)).counts == {kind: 1}


def test_function_call_without_content_is_allowed():
    line = message_line(role="assistant", content=None, function_call={"name": "f", "arguments": "{}"})
    assert validate_chat_jsonl(with_line(line)).ok


def test_fewer_than_ten_examples_and_empty_file():
    few = validate_chat_jsonl(b"\n".join(good_lines(9)) + b"\n")
    assert few.counts == {"too_few_examples": 1} and few.problems[0].line is None
    assert validate_chat_jsonl(b"").counts == {"too_few_examples": 1}


def test_counts_per_kind_over_a_whole_file():
    lines = good_lines(12)
    lines[2] = BAD["unrecognized_role"]
    lines[7] = BAD["unrecognized_role"]
    lines[9] = BAD["invalid_json"]
    result = validate_chat_jsonl(b"\n".join(lines))
    assert result.counts == {"unrecognized_role": 2, "invalid_json": 1}
    assert [p.line for p in result.problems] == [3, 8, 10]
    assert result.examples == 12


def test_a_clean_file_with_crlf_and_bom_passes():
    data = b"\xef\xbb\xbf" + b"\r\n".join(good_lines(10)) + b"\r\n"
    assert validate_chat_jsonl(data).ok


def test_token_counts_are_cl100k_with_no_download():
    assert tokens.tokenizer_name() == "cl100k_base"
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("The quick brown fox jumps over the lazy dog.") == 10
    # CJK and Gujarati take more tokens than characters: counting characters under-counted them
    assert count_tokens("太阳，柠檬，向日葵。") == 16
    assert count_tokens("નમસ્તે, તમે કેમ છો?") > len("નમસ્તે, તમે કેમ છો?")
    assert count_tokens("<|endoftext|>") == 7  # special-token text in data is plain text
    # the data-prep guide's overheads: 3 per message, 3 for the reply
    assert chat_tokens([{"role": "user", "content": "Hi"}]) == 3 + 3 + count_tokens("user") + count_tokens("Hi")


def test_without_the_tokenizer_the_count_is_an_upper_bound(monkeypatch):
    monkeypatch.setattr(tokens, "_encoding", lambda: None)
    assert count_tokens("太阳，柠檬，向日葵。") == 30 and "upper bound" in tokens.tokenizer_name()


@given(st.text())
def test_a_token_count_never_exceeds_the_utf8_length(text):
    assert count_tokens(text) <= len(text.encode("utf-8", "surrogatepass"))


# --- the command -------------------------------------------------------------------------------


def ftctl(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ftctl")
    cmd_validate_data.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["validate-data", *argv])
    return args.func(args)


def test_command_prints_lines_and_counts_and_exits_non_zero(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_bytes(with_line(BAD["unrecognized_role"], at=4) + BAD["invalid_json"] + b"\n")
    assert ftctl(str(path)) == 2
    out = capsys.readouterr().out
    assert f"{path}:4: unrecognized_role: messages[0] has role 'bot'" in out
    assert f"{path}:12: invalid_json: not valid JSON" in out
    assert "  invalid_json: 1\n" in out and "  unrecognized_role: 1\n" in out


def test_command_exits_zero_on_clean_data_and_honours_max_tokens(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(good_lines(10)) + b"\n")
    assert ftctl(str(path)) == 0
    assert "10 example(s), no problems found" in capsys.readouterr().out
    assert ftctl(str(path), "--max-tokens", "5") == 2
    assert "too_long: 10" in capsys.readouterr().out


def test_command_on_a_missing_file(tmp_path):
    with pytest.raises(MissingInput, match="no such file"):
        ftctl(str(tmp_path / "nope.jsonl"))


def test_command_rejects_a_bad_max_tokens(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ftctl(str(tmp_path / "x.jsonl"), "--max-tokens", "0")
    assert "--max-tokens: must be > 0" in capsys.readouterr().err


def test_command_is_registered_in_ftctl():
    from jobs.cli.main import COMMANDS

    assert "jobs.cli.cmd_validate_data" in COMMANDS


def test_a_long_chinese_example_over_the_limit_is_too_long():
    answer = "太阳，柠檬，向日葵。" * 1100  # 11,000 characters, 17,600 tokens
    line = json.dumps({"messages": [{"role": "user", "content": "列举黄色的东西"}, {"role": "assistant", "content": answer}]})
    result = validate_chat_jsonl("\n".join([line] + [g.decode() for g in good_lines(10)]).encode())
    assert [(p.line, p.kind) for p in result.problems] == [(1, "too_long")]


def test_several_files_and_the_minimum_applies_to_training_files_only(tmp_path, capsys):
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_bytes(b"\n".join(good_lines(10)) + b"\n")
    val.write_bytes(b"\n".join(good_lines(3)) + b"\n")
    assert ftctl(str(train), "--val", str(val)) == 0
    assert "val.jsonl: 3 example(s), no problems found" in capsys.readouterr().out
    assert ftctl(str(train), str(val)) == 2  # both as training files: val has too few
    assert "val.jsonl: too_few_examples" in capsys.readouterr().out


def test_a_conversation_ending_with_a_user_turn_is_refused_as_pack_refuses_it():
    line = (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, '
            b'{"role": "user", "content": "and then?"}]}')
    result = validate_chat_jsonl(with_line(line))
    assert [(p.line, p.kind) for p in result.problems] == [(5, "last_message_not_assistant")]
    with pytest.raises(InvalidData, match="the last message must be the assistant's answer"):
        read_source("x.jsonl", with_line(line), "openai_chat")
