"""Tool-use SFT end to end: pack keeps tool calls and results, the train step renders them with the
model's chat template (tools included) and trains the calls; a template without tool support is
refused with the row named."""

from __future__ import annotations

import json
import shutil

import pytest
from tests.pack.packkit import cfg

from jobs.common.errors import InvalidData
from jobs.pack.packer import pack
from jobs.pack.readers import read_source
from jobs.train.chat import ToolsNotRendered, chat_encoder

# ChatML with tools: offered tools in a system turn, calls as <tool_call> JSON, results as tool turns.
TOOL_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\nTools:' }}{% for t in tools %}{{ ' ' + (t | tojson) }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}{{ '<|im_start|>assistant\\n' }}"
    "{% for c in m.tool_calls %}{{ '<tool_call>' + ({'name': c.function.name, 'arguments': c.function.arguments} | tojson)"
    " + '</tool_call>' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CITIES = ["Berlin", "Paris", "Rome", "Madrid", "Vienna", "Prague", "Lisbon", "Oslo", "Dublin", "Athens", "Warsaw", "Bern"]


def sharegpt_tool_rows() -> list[dict]:
    tools = json.dumps([{"name": "weather", "description": "Current weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}])
    return [{
        "id": f"w{i}",
        "conversations": [
            {"from": "human", "value": f"What is the weather like in {city} right now?"},
            {"from": "function_call", "value": json.dumps({"name": "weather", "arguments": {"city": city}})},
            {"from": "observation", "value": json.dumps({"city": city, "celsius": 10 + i})},
            {"from": "gpt", "value": f"It is {10 + i} degrees Celsius in {city} at the moment."},
        ],
        "tools": tools,
    } for i, city in enumerate(CITIES)]


@pytest.fixture(scope="module")
def packed_tool_rows():
    """Pack's openai_chat rows from a ShareGPT tool-use file."""
    data = "".join(json.dumps(r) + "\n" for r in sharegpt_tool_rows()).encode()
    packed = pack(read_source("tools.jsonl", data, "sharegpt"), cfg(nearDupThreshold=None, split={
        "train": 0.8, "val": 0.1, "test": 0.1}), [])
    return packed.splits


@pytest.fixture(scope="module")
def tool_llama(tiny_llama, tmp_path_factory):
    """The tiny Llama with a chat template that renders tools."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-llama-tools") / "model"
    shutil.copytree(tiny_llama, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = TOOL_TEMPLATE
    tokenizer.save_pretrained(out)
    return out


def test_pack_keeps_the_calls_results_and_tools(packed_tool_rows):
    row = packed_tool_rows["train"][0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert row["messages"][1]["tool_calls"][0]["function"]["name"] == "weather"
    assert row["messages"][2]["tool_call_id"] == row["messages"][1]["tool_calls"][0]["id"]
    assert row["tools"][0]["function"]["name"] == "weather"


def test_the_calls_are_rendered_and_trained_and_the_results_masked(packed_tool_rows, tool_llama):
    from transformers import AutoTokenizer

    from jobs.common.handoff import chat_messages, chat_tools

    tokenizer = AutoTokenizer.from_pretrained(tool_llama)
    row = packed_tool_rows["train"][0]
    city = json.loads(row["messages"][1]["tool_calls"][0]["function"]["arguments"])["city"]
    encoded = chat_encoder(tokenizer, assistant_only=True)(chat_messages(row, "r"), chat_tools(row, "r"))
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    untrained = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert f'<tool_call>{{"name": "weather", "arguments": {{"city": "{city}"}}}}</tool_call>' in trained
    assert "degrees Celsius" in trained
    assert '"celsius"' in untrained and '"name": "weather", "description"' in untrained  # result and offered tool


def test_a_template_without_tool_support_is_refused(packed_tool_rows, tiny_llama):
    from transformers import AutoTokenizer

    from jobs.common.handoff import chat_messages, chat_tools

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)  # SmolLM2's ChatML template: no tools
    row = packed_tool_rows["train"][0]
    encode = chat_encoder(tokenizer, assistant_only=True)
    with pytest.raises(ToolsNotRendered, match=r"chat template cannot render tool calls \(UndefinedError"):
        encode(chat_messages(row, "r"), chat_tools(row, "r"))
    # With text in place of the call's content it renders, but without the call or the tools.
    silent = [{**m, "content": ""} if m.get("tool_calls") else m for m in row["messages"]]
    with pytest.raises(ToolsNotRendered, match="chat template leaves the tool calls and the offered tools out"):
        encode(silent, chat_tools(row, "r"))
    tokenizer.chat_template = TOOL_TEMPLATE[TOOL_TEMPLATE.index("{% for m in messages %}"):]
    with pytest.raises(ToolsNotRendered, match="chat template leaves the offered tools out"):
        encode(chat_messages(row, "r"), chat_tools(row, "r"))


FAST = {"maxSteps": 2, "batchSize": 2, "learningRate": 0.01, "maxLength": 256, "checkpointEvery": 50,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}


def test_tool_use_sft_trains_end_to_end(make_run, tool_llama, packed_tool_rows):
    run = make_run(model={"hf": str(tool_llama)}, train=FAST, splits=packed_tool_rows)
    manifest = run.execute()
    assert manifest["metrics"]["steps"] == 2 and manifest["metrics"]["firstLoss"] > 0


def test_tool_use_sft_on_a_model_without_tool_support_names_the_row(make_run, tiny_llama, packed_tool_rows):
    run = make_run(model={"hf": str(tiny_llama)}, train=FAST, splits=packed_tool_rows)
    with pytest.raises(InvalidData, match=r"train.jsonl.*: the base model's chat template cannot render tool calls"):
        run.execute()


@pytest.mark.parametrize("message", [
    {"role": "tool", "content": "21 degrees"},  # no tool_call_id
    {"role": "assistant", "content": None},  # neither text nor calls
    {"role": "assistant", "content": None, "tool_calls": "weather()"},
])
def test_the_hand_off_refuses_malformed_tool_messages(message):
    from jobs.common.handoff import chat_messages

    row = {"messages": [{"role": "user", "content": "Weather?"}, message, {"role": "assistant", "content": "Sunny."}]}
    with pytest.raises(InvalidData, match=r"pack/train.jsonl row 3: messages must be a list .* tool_call_id"):
        chat_messages(row, "pack/train.jsonl row 3")
