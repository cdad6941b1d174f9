"""GRPO on a tiny Llama: rewards from the eval checks, user functions, a format reward, the spec's rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.train.trainkit import chat_rows

from jobs.common.errors import InvalidInput
from jobs.common.spec import Check, FineTuneRunSpec, Grpo, TrainStep
from jobs.train.grpo import CheckReward, default_checks, reward_terms

SAMPLING = {"numGenerations": 4, "maxCompletionLength": 8, "temperature": 1.0, "klBeta": 0.1}


def always_half(prompts, completions, **columns):
    """A user reward function, importable as tests.train.test_grpo:always_half."""
    assert "expected" in columns  # the dataset's columns reach user functions
    return [0.5] * len(completions)


def grpo_train(**grpo) -> dict:
    return {"method": "grpo", "maxSteps": 2, "batchSize": 4, "learningRate": 0.01, "maxLength": 96,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "grpo": {**SAMPLING, **grpo}}


def test_grpo_lora_logs_reward_per_check_kl_and_length(make_run, tiny_llama):
    run = make_run(
        model={"hf": str(tiny_llama)},
        train=grpo_train(rewards=[{"check": {"type": "any_of"}, "weight": 1.0},
                                  {"function": "tests.train.test_grpo:always_half", "weight": 2.0}],
                         format={"regex": "^.+$", "weight": 0.5}),
        splits={"train": chat_rows(8)},
    )
    manifest = run.execute()
    m = manifest["metrics"]
    assert m["steps"] == 2 and "adapter/adapter_model.safetensors" in {f["path"] for f in manifest["files"]}
    records = [r for r in run.metrics() if "loss" in r]
    assert len(records) == 2
    for r in records:
        assert r["rewards/always_half/mean"] == 0.5
        assert {"rewards/any_of:expected/mean", "rewards/format/mean", "kl", "completions/mean_length"} <= r.keys()
        # the total is the weighted sum of the terms
        total = r["rewards/any_of:expected/mean"] + 2 * 0.5 + 0.5 * r["rewards/format/mean"]
        assert r["reward"] == pytest.approx(total, abs=1e-5)
    assert m["firstReward"] == pytest.approx(records[0]["reward"], abs=1e-4)
    assert m["lastReward"] == pytest.approx(records[-1]["reward"], abs=1e-4)
    assert "reward.png" in {f["path"] for f in manifest["files"]}


def test_grpo_full_finetune_default_reward_is_the_expected_answer(make_run, tiny_llama):
    train = {**grpo_train(), "lora": None, "maxSteps": 1}
    run = make_run(model={"hf": str(tiny_llama)}, train=train, splits={"train": chat_rows(4)})
    manifest = run.execute()
    assert "model/config.json" in {f["path"] for f in manifest["files"]}
    assert "rewards/any_of:expected/mean" in run.metrics()[0]


def test_reward_terms_default_to_the_run_checks_and_name_duplicates():
    checks = [Check(type="contains", value="Berlin"), Check(type="contains", value="Berlin")]
    functions, weights = reward_terms(Grpo(), checks)
    assert [f.__name__ for f in functions] == ["contains:Berlin", "contains:Berlin#1"]
    assert weights == [1.0, 1.0]
    reward = functions[0]
    completions = [[{"role": "assistant", "content": "It is Berlin."}], [{"role": "assistant", "content": "Rome"}]]
    assert reward(prompts=[None, None], completions=completions, expected=["x", "x"]) == [1.0, 0.0]
    expected_answer = CheckReward(Check(type="any_of"), "any_of")
    assert expected_answer([None], ["The answer is Paris"], ["Paris"]) == [1.0]


def test_default_checks_are_evaluate_then_eval_then_the_expected_answer():
    def spec(steps: dict) -> FineTuneRunSpec:
        return FineTuneRunSpec.model_validate({"model": {"hf": "m"}, "steps": steps})

    contains = {"type": "contains", "value": "Berlin"}
    regex = {"type": "regex", "value": "^B"}
    evaluate = {"eval": {"items": "i.jsonl", "backend": {"baseModel": True}, "checks": [regex]}}
    assert [c.type for c in default_checks(spec(evaluate))] == ["regex"]
    both = FineTuneRunSpec.model_validate({
        "model": {"hf": "m"}, "data": {"sources": [{"path": "d.jsonl", "format": "openai_chat"}]},
        "steps": {**evaluate, "pack": {}, "train": {}, "evaluate": {"checks": [contains]}},
    })
    assert [c.type for c in default_checks(both)] == ["contains"]
    assert [c.type for c in default_checks(spec({"eval": {**evaluate["eval"], "checks": []}}))] == ["any_of"]


def test_a_bad_reward_import_path_names_the_field(make_run, tiny_llama):
    run = make_run(model={"hf": str(tiny_llama)},
                   train=grpo_train(rewards=[{"function": "tests.train.test_grpo:missing"}]),
                   splits={"train": chat_rows(4)})
    with pytest.raises(InvalidInput, match=r"grpo.rewards\[0\].function: cannot import tests.train.test_grpo:missing"):
        run.execute()


@pytest.mark.parametrize(
    "train, message",
    [
        ({"method": "grpo", "batchSize": 3, "grpo": {"numGenerations": 4}}, "numGenerations \\(4\\) must divide"),
        ({"method": "grpo", "grpo": {"numGenerations": 1}}, "numGenerations"),
        ({"method": "grpo", "grpo": {"temperature": 0}}, "temperature"),
        ({"method": "grpo", "grpo": {"klBeta": -1}}, "klBeta"),
        ({"method": "sft", "grpo": {}}, "only apply to method: grpo"),
        ({"method": "grpo", "grpo": {"rewards": [{"weight": 1}]}}, "exactly one of check or function"),
        ({"method": "grpo", "grpo": {"rewards": [{"function": "not a path"}]}}, "function"),
        ({"method": "grpo", "grpo": {"format": {"regex": "("}}}, "regex does not compile"),
    ],
)
def test_grpo_settings_are_validated(train, message):
    with pytest.raises(ValidationError, match=message):
        TrainStep.model_validate(train)
