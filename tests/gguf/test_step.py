"""The step's checks on bad input, all made before any work is done."""

from __future__ import annotations

import argparse
from collections import namedtuple

import pytest
import yaml
from ggufkit import run_spec

from jobs.common import artifacts
from jobs.common.errors import InvalidData, InvalidInput, MissingInput
from jobs.common.stepctx import execute
from jobs.gguf import run
from jobs.gguf.run import check_disk, run_step
from jobs.gguf.smoke import smoke_cases

Usage = namedtuple("Usage", "total used free")
GIB = 1024**3


def test_unknown_quantization_is_rejected_by_ftctl_validate(tmp_path, capsys):
    from jobs.cli import cmd_validate

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_spec(tmp_path, {"quantizations": ["Q4_K_M", "Q4_K_X"]})))
    assert cmd_validate.run(argparse.Namespace(files=[path])) == 2
    err = capsys.readouterr().err
    assert "spec.steps.gguf.quantizations" in err and "unknown quantization ['Q4_K_X']" in err
    valid = err.split("valid:")[1]
    assert all(q in valid for q in ("Q4_K_M", "Q5_K_M", "Q8_0", "F16", "IQ4_XS"))


def test_disk_below_three_times_the_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(run.shutil, "disk_usage", lambda _: Usage(100 * GIB, 99 * GIB, int(2.9 * GIB)))
    expected = r"2\.90 GiB free, the gguf step needs 3\.00 GiB \(3x the model's 1\.00 GiB\)"
    with pytest.raises(InvalidInput, match=expected) as err:
        check_disk(tmp_path, GIB)
    assert err.value.code == "InsufficientDisk"
    monkeypatch.setattr(run.shutil, "disk_usage", lambda _: Usage(100 * GIB, 97 * GIB, 3 * GIB))
    check_disk(tmp_path, GIB)


def test_model_size_counts_weight_files(tiny_llama):
    size = run.model_bytes(tiny_llama)
    assert size == (tiny_llama / "model.safetensors").stat().st_size


def test_missing_adapter_fails_before_any_work(gguf_run, tiny_llama):
    store = gguf_run(tiny_llama, outputs={"lossPlot": "loss.png"})
    with pytest.raises(MissingInput, match="output has no adapter and no model"):
        execute("gguf", run_step)
    assert artifacts.read_manifest(store, "default", "tiny", "gguf") is None


def test_missing_converter_names_the_install_command(gguf_run, tiny_llama, tiny_lora, tmp_path, monkeypatch):
    store = gguf_run(tiny_llama, adapter=tiny_lora)
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "no-llama.cpp"))
    with pytest.raises(MissingInput, match="make llamacpp") as err:
        execute("gguf", run_step)
    assert err.value.code == "LlamaCppMissing"
    assert artifacts.read_manifest(store, "default", "tiny", "gguf") is None
    assert not (tmp_path / "scratch" / "out" / "merged").exists()


def test_smoke_cases_from_each_pack_format():
    chat = [
        {"id": "c1", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                                  {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
                                  {"role": "assistant", "content": "A2"}]},
        {"id": "c2", "messages": [{"role": "assistant", "content": "nothing asked"}]},
        {"id": "c3", "messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]},
    ]
    cases = smoke_cases(chat, "openai_chat", 2)
    assert [c["id"] for c in cases] == ["c1", "c3"]
    assert cases[0]["messages"][-1] == {"role": "user", "content": "U2"} and cases[0]["expected"] == "A2"
    alpaca = [{"id": "a", "instruction": "Add", "input": "2 and 2", "output": "4"}]
    assert smoke_cases(alpaca, "alpaca", 2) == [
        {"id": "a", "messages": [{"role": "user", "content": "Add\n\n2 and 2"}], "expected": "4"}
    ]
    dpo = [{"id": "d", "prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}]
    assert smoke_cases(dpo, "dpo", 2) == [
        {"id": "d", "messages": [{"role": "user", "content": "Hi?"}], "expected": "Hello."}
    ]
    with pytest.raises(InvalidData, match="pack/test.jsonl row 1"):
        smoke_cases([{"id": "x", "text": "?"}], "openai_chat", 2)
