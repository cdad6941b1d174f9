"""Judge checks in the evaluate step: a fake OpenAI-compatible judge on 127.0.0.1 grades base and
tuned answers; the report gives its agreement with the exact check, and the gate reads the result."""

from __future__ import annotations

import json
import re

import pytest

from jobs.common.errors import GateNotMet

from tests.eval.openai_fake import FakeOpenAI, serve
from tests.evaluate.evaluatekit import QA, chat, evaluate_spec

CHAT_ROWS = [{"id": f"q{i}", "messages": chat(q, a)} for i, (q, a) in enumerate(QA)]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def grade(prompt: str) -> str:
    """Pass when the graded answer is the reference answer."""
    reference = re.search(r"Reference answer:\n(.*?)\n\nAnswer to grade:", prompt, re.DOTALL).group(1)
    answer = re.search(r"Answer to grade:\n(.*)\Z", prompt, re.DOTALL).group(1)
    return json.dumps({"verdict": "pass" if answer.strip() == reference else "fail", "reason": "compared"})


def judged_spec(model_dir, url: str, gate: str) -> dict:
    evaluate = {
        "decoding": {"maxNewTokens": 6},
        "checks": [{"type": "exact"}, {"type": "judge", "rubric": "The answer is the reference answer."}],
        "judge": {"backend": {"endpoint": {"baseUrl": url, "model": "judge-1", "apiKeySecret": {"name": "judge", "key": "JUDGE_API_KEY"}}}},
        "gate": gate,
    }
    return evaluate_spec(model_dir, evaluate)


def test_the_judge_grades_base_and_tuned_answers_its_verdicts_are_cached_and_the_gate_reads_them(
    tiny, run_evaluate, monkeypatch
):
    judge = FakeOpenAI(api_key="k-judge", reply=grade)
    monkeypatch.setenv("JUDGE_API_KEY", "k-judge")
    files = {"adapter": tiny["adapter"], "metrics.jsonl": tiny["metrics"]}
    with serve(judge) as url:
        manifest = run_evaluate(judged_spec(tiny["model"], url, "tunedPassRate >= basePassRate + 0.5"), CHAT_ROWS, files)
        metrics = json.loads((run_evaluate.out / "metrics.json").read_text())
        assert judge.calls == 2 * len(CHAT_ROWS)
        assert metrics["tuned"]["judgePassRate"] == 1.0 and metrics["base"]["judgePassRate"] == 0.0
        assert metrics["perCheck"]["tuned"]["judge:The answer is the reference answer."] == 1.0
        tuned = metrics["judge"]["agreement"]["tuned"]
        assert tuned["items"] == len(CHAT_ROWS) and tuned["agreement"] == 1.0 and tuned["kappa"] is None  # one class
        assert metrics["judge"]["agreement"]["base"]["agreement"] == 1.0
        assert manifest["metrics"]["gatePassed"] is True
        html = (run_evaluate.out / "report.html").read_text()
        assert "Judge agreement with the checks" in html and "judge pass rate" in html

        # The same answers again: no new judge call; a gate the judge's fails holds the model back.
        with pytest.raises(GateNotMet, match="tunedPassRate"):
            run_evaluate(judged_spec(tiny["model"], url, "tunedPassRate >= 1.1"), CHAT_ROWS, files)
        assert judge.calls == 2 * len(CHAT_ROWS)
