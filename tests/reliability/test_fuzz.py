"""Property tests: arbitrary input reaches our own validation errors and nothing else.

- the spec parser (load_run / run_from_obj): only InvalidSpec escapes;
- the store key validator: only InvalidKey escapes; what it accepts stays inside its prefix;
- the pack step's data readers: only InvalidData / MissingInput escape.
"""

from __future__ import annotations

import copy
import json
import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobs.common import keys
from jobs.common.errors import InvalidKey, InvalidSpec
from jobs.common.gate import parse_gate
from jobs.common.specio import load_run, run_from_obj

# FT_FUZZ_EXAMPLES=5000 for a longer hunt; 200 keeps each property under a few seconds.
FUZZ = settings(
    max_examples=int(os.environ.get("FT_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# A manifest that enables every step and most options, so that mutations reach deep validators.
FULL = {
    "apiVersion": "finetune.dev/v1alpha1",
    "kind": "FineTuneRun",
    "metadata": {"name": "fuzz", "namespace": "team-a", "labels": {"team": "ml"}},
    "spec": {
        "model": {"gguf": "models/base.gguf", "name": "Base"},
        "data": {
            "sources": [
                {"fromStep": "eval", "format": "eval_results"},
                {"path": "data/rows.csv", "format": "csv", "columns": {"instruction": "q", "output": "a"}},
            ]
        },
        "steps": {
            "eval": {
                "items": "data/eval.jsonl",
                "backend": {
                    "endpoint": {
                        "baseUrl": "http://127.0.0.1:8000/v1",
                        "model": "m",
                        "apiKeySecret": {"name": "llm", "key": "token"},
                    }
                },
                "checks": [{"type": "regex", "value": "^ok"}],
                "concurrency": 2,
            },
            "pack": {"format": "openai_chat", "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
            "train": {"method": "sft", "lora": {"r": 8, "targetModules": ["q_proj"]}, "learningRate": 0.001},
            "evaluate": {"gate": "tunedPassRate >= basePassRate + 0.05", "checks": [{"type": "contains", "value": "x"}]},
            "gguf": {"quantizations": ["Q8_0"]},
        },
        "store": {"uri": "s3://ft-artifacts/team-a", "secretRef": "store"},
        "resources": {"train": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": 1}},
        "tracking": {"wandb": {"project": "p", "apiKeySecret": {"name": "wandb", "key": "key"}}},
        "queue": "gpu",
        "scheduling": {"nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
        "job": {"backoffLimit": 2, "activeDeadlineSeconds": 3600},
    },
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "..", "../x", "/abs", "Q4_K_M", "openai_chat", "http://x", "s3://b/../c", "([", "1e-4"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


def _node_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _node_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _node_paths(v, (*prefix, i))


PATHS = list(_node_paths(FULL))[1:]


def _set(obj, path, value):
    cur = obj
    for part in path[:-1]:
        cur = cur[part]
    cur[path[-1]] = value


def test_full_manifest_is_valid():
    run = run_from_obj(FULL)
    assert run.spec.steps.enabled() == ["eval", "pack", "train", "evaluate", "gguf"]


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
@example(mutations=[(("spec", "steps", "train", "lora"), None)])  # null = full fine-tune, not defaults
@example(mutations=[(("spec", "steps", "pack", "split"), {"train": 0.9, "val": 0.1, "test": 0.0})])
def test_mutated_manifest_raises_only_invalid_spec(mutations):
    obj = copy.deepcopy(FULL)
    for path, value in mutations:
        try:
            _set(obj, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the parent
            pass
    try:
        run = run_from_obj(obj)
    except InvalidSpec as err:
        assert err.message.strip()
        return
    # Whatever is accepted round-trips through the JSON snapshot a step receives.
    assert run_from_obj(json.loads(json.dumps(run.snapshot()))) == run


@FUZZ
@given(
    # "x" + text: never a real field name (none starts with x), in either spelling.
    extra=st.dictionaries(st.text(max_size=12).map(lambda t: "x" + t), values, min_size=1, max_size=3),
    where=st.sampled_from([(), *PATHS]),
)
def test_unknown_fields_anywhere_raise_invalid_spec(extra, where):
    obj = copy.deepcopy(FULL)
    cur = obj
    for part in where:
        cur = cur[part]
    if not isinstance(cur, dict) or where[-1:] in [("labels",), ("columns",), ("nodeSelector",)]:
        return  # free-form maps take any key
    added = {k: v for k, v in extra.items() if k not in cur}
    if not added:
        return
    cur.update(added)
    with pytest.raises(InvalidSpec) as exc:
        run_from_obj(obj)
    assert "unknown field" in exc.value.message


@FUZZ
@given(doc=values)
def test_any_document_raises_only_invalid_spec(doc):
    try:
        run_from_obj(doc)
    except InvalidSpec:
        pass


YAMLISH = st.lists(
    st.sampled_from(
        ["{", "}", "[", "]", ": ", ":", "- ", "\n", "  ", "\t", ",", "'", '"', "#", "&a ", "*a", "<<: *a",
         "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!python/object:os.system ", "!!str ", "? ", "---\n",
         "...", "|", ">", "%YAML 1.1\n", "1e5", ".nan", "-.inf", "0x1F", "0o17", "2024-13-45", "yes", "~",
         "apiVersion: finetune.dev/v1alpha1\n", "kind: FineTuneRun\n", "metadata:\n  name: r\n", "spec:\n",
         "  steps:\n    pack: {}\n", "  model: {gguf: m}\n", "\ufeff", "\x00", "\u202e", "é"]
    )
    | st.text(max_size=5),
    max_size=40,
).map("".join)


@FUZZ
@given(text=st.one_of(YAMLISH, st.text(max_size=200)))
def test_any_text_raises_only_invalid_spec(text):
    try:
        load_run(None, text=text)
    except InvalidSpec as err:
        assert err.message.strip()


@FUZZ
@given(data=st.data())
def test_corrupted_manifest_text_raises_only_invalid_spec(data):
    text = yaml.safe_dump(FULL, sort_keys=False)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 8)))
        text = text[:i] + data.draw(st.text(max_size=6)) + text[j:]
    try:
        load_run(None, text=text)
    except InvalidSpec:
        pass


@FUZZ
@given(text=st.text(alphabet=string.ascii_letters + string.digits + " <>=+-.()_'\"eE", max_size=60) | st.text(max_size=40))
def test_gate_parser_raises_only_value_error(text):
    try:
        parse_gate(text)
    except ValueError:
        pass


# --- store keys ------------------------------------------------------------------------------

KEYISH = st.lists(
    st.sampled_from(["a", "b1", "runs", "..", ".", "", "/", "//", "\\", "%2e", "\n", "\x00", "é", "-x", "_y", ".z", "~"])
    | st.text(max_size=4),
    max_size=12,
).map("".join)


def _check_accepted(key: str) -> None:
    assert not key.startswith("/")
    segments = key.split("/")
    assert all(seg not in ("", ".", "..") for seg in segments)
    assert all(ch in string.ascii_letters + string.digits + "._-/" for ch in key)
    assert len(key) <= keys.MAX_KEY


@FUZZ
@given(key=st.one_of(KEYISH, st.text(max_size=300)))
def test_validate_key_accepts_only_safe_keys(key):
    try:
        out = keys.validate_key(key)
    except InvalidKey:
        return
    assert out == key
    _check_accepted(key)


@FUZZ
@given(rel=st.lists(KEYISH, min_size=1, max_size=3))
def test_join_stays_under_its_prefix(rel):
    prefix = keys.step_prefix("team-a", "run-1", "pack")
    try:
        key = keys.join(prefix, *rel)
    except InvalidKey:
        return
    _check_accepted(key)
    assert keys.under(prefix, key)
    assert not keys.under(keys.step_prefix("team-a", "run-1", "train"), key)


@FUZZ
@given(uri=st.one_of(
    st.tuples(st.sampled_from(["s3://", "file://", "http://", "", "s3:", "S3://"]), KEYISH, KEYISH).map(
        lambda t: f"{t[0]}{t[1]}/{t[2]}"),
    st.text(max_size=60),
))
def test_store_uri_raises_only_invalid_key(uri):
    try:
        scheme, root, prefix = keys.validate_store_uri(uri)
    except InvalidKey:
        return
    assert scheme in ("file", "s3")
    if scheme == "s3" and prefix:
        _check_accepted(prefix)


# --- the pack step's readers -----------------------------------------------------------------

FORMATS = ["openai_chat", "alpaca", "sharegpt", "csv", "json", "dpo", "eval_results"]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["user", "assistant", "system", "gpt", "human", "\ud800x"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "conversations", "from", "value", "instruction", "input",
                         "output", "prompt", "chosen", "rejected", "id", "meta", "passed", "expected", "response",
                         "text", "label", "weight", "name", "system"]) | st.text(max_size=6),
        inner, max_size=5),
    max_leaves=15,
)


def _dumps(value) -> str:
    try:
        return json.dumps(value)
    except (ValueError, UnicodeEncodeError):
        return "{}"


DATA_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(JSONISH.map(_dumps), max_size=6).map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass")),
    JSONISH.map(lambda v: _dumps([v, v]).encode("utf-8", "surrogatepass")),
    st.lists(st.lists(st.text(alphabet='ab,;"\t\n\r|x ', max_size=8), max_size=4).map(",".join), max_size=6)
    .map(lambda rows: "\n".join(["instruction,output,text,label"] + rows).encode()),
)


@FUZZ
@given(data=DATA_BYTES, fmt=st.sampled_from(FORMATS),
       columns=st.dictionaries(st.sampled_from(["instruction", "input", "output", "text", "label", "system"]),
                               st.sampled_from(["q", "a", "text", "label", "instruction", "output", ""]), max_size=3),
       curate=st.sampled_from(["passed", "expected"]))
def test_pack_readers_raise_only_invalid_data(data, fmt, columns, curate):
    from jobs.common.errors import InvalidData, MissingInput
    from jobs.common.spec import PackStep
    from jobs.pack.packer import pack
    from jobs.pack.readers import read_source

    try:
        records = read_source("fuzz.dat", data, fmt, columns=columns, curate=curate)
    except (InvalidData, MissingInput) as err:
        assert err.message.startswith("fuzz.dat")
        return
    assert records
    for out in ("openai_chat", "alpaca", "classification", "dpo"):
        try:
            pack(records, PackStep(format=out), [])
        except (InvalidData, InvalidSpec):
            pass


@FUZZ
@given(data=DATA_BYTES)
def test_validate_data_never_raises(data):
    from jobs.pack.validate import format_report, validate_chat_jsonl

    result = validate_chat_jsonl(data)
    lines = format_report("fuzz.jsonl", result)
    assert lines and (result.ok or any(":" in line for line in lines))
    assert all(p.line is None or 1 <= p.line <= data.count(b"\n") + 1 for p in result.problems)
