"""GRPO on SmolLM2-135M-Instruct: a check the model passes now and then is learned in a few steps."""

from __future__ import annotations

import pytest
from tests.train.trainkit import SMOLLM2, QA

pytestmark = pytest.mark.slow


def test_smollm2_grpo_reward_rises_on_a_learnable_check(make_run):
    # The check: the answer opens with "The". SmolLM2 does that for about a third of its samples,
    # so each group of completions has winners and losers to learn from.
    rows = [{"id": f"q-{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for i, (q, a) in enumerate(QA)]
    run = make_run(
        model={"gguf": SMOLLM2},
        train={"method": "grpo", "maxSteps": 16, "batchSize": 8, "learningRate": 0.002, "maxLength": 128,
               "checkpointEvery": 100, "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
               "grpo": {"numGenerations": 4, "maxCompletionLength": 6, "temperature": 1.0,
                        "rewards": [{"check": {"type": "regex", "value": "^The ", "ignoreCase": False}}]}},
        splits={"train": rows},
    )
    m = run.execute()["metrics"]
    rewards = [r["reward"] for r in run.metrics() if "reward" in r]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    print(f"GRPO reward: first {m['firstReward']}, last {m['lastReward']}; mean of the first 4 steps {first:.3f}, "
          f"of the last 4 {last:.3f}; {m['trainSeconds']} s for {m['steps']} steps")
    assert m["steps"] == 16 and last > first + 0.2, rewards
