"""The gguf step: merge the adapter, convert with llama.cpp, quantize, smoke-test, write a Modelfile.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.gguf

Reads the train step's adapter (or full model) and the base model; writes
<name>-<QUANT>.gguf per `spec.steps.gguf.quantizations`, Modelfile, smoke.json
and merged/ (the merged Hugging Face model). With the evaluate step, each
quantization is scored on the test split too (jobs.gguf.score: quantized.json,
quantized-predictions.jsonl, quantized.html), and a gate clause naming one that it
fails keeps every GGUF file out: GateNotMet, no manifest. Needs llama-cpp-python and
llama.cpp's converter (`make llamacpp`); checks both, the architecture and the
free disk space before doing any work.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.common.errors import GateNotMet, InvalidData, InvalidInput, InvalidSpec
from jobs.common.handoff import train_output
from jobs.common.stepctx import StepContext, StepResult
from jobs.gguf import convert, merge, modelfile, quantize, score, smoke

DISK_FACTOR = 3  # merged model + F16 GGUF + quantized files, each at most the model's size
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SMOKE_MAX_TOKENS = 64
FALLBACK_CASE = {"id": None, "messages": [{"role": "user", "content": "Say hello in one sentence."}], "expected": None}


def model_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def check_disk(folder: Path, size: int, factor: int = DISK_FACTOR) -> None:
    """Refuse to start unless `folder` has `factor` times the model's size free."""
    free = shutil.disk_usage(folder).free
    if free < factor * size:
        gib = 1024**3
        raise InvalidInput(
            f"not enough disk space in {folder}: {free / gib:.2f} GiB free, the gguf step needs "
            f"{factor * size / gib:.2f} GiB ({factor}x the model's {size / gib:.2f} GiB); "
            "give the step more scratch space (FT_SCRATCH; in a cluster the chart's steps.scratchSizeLimit)",
            code="InsufficientDisk",
        )


def smoke_cases(ctx: StepContext, limit: int) -> list[dict[str, Any]]:
    """Prompts from pack's test split; one generic prompt when the split is empty."""
    if limit == 0:
        return []
    path = ctx.input_dir("pack", only="test.jsonl") / "test.jsonl"
    rows = []
    if path.is_file():
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InvalidData(f"pack/test.jsonl line {n}: {err}") from None
    return smoke.smoke_cases(rows, ctx.spec.steps.pack.format, limit) or [FALLBACK_CASE]


def versions() -> dict[str, str | None]:
    """The libraries that made the files (llama.cpp's converter pins older torch/transformers)."""
    found = {}
    for dist in ("llama-cpp-python", "torch", "transformers", "peft", "gguf"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def build_modelfile(ctx: StepContext, tokenizer_dir: Path, files: list[str]) -> modelfile.Modelfile:
    cfg = ctx.config
    # The prompt the model was tuned with, unless the export sets its own.
    system = cfg.system_prompt or (ctx.spec.steps.pack.system_prompt if ctx.spec.steps.pack else None)
    try:
        return modelfile.modelfile_for_model(
            tokenizer_dir, gguf_file=files[0], system_prompt=system, num_ctx=cfg.num_ctx, alternatives=files[1:]
        )
    except ValueError as err:
        raise InvalidSpec(f"spec.steps.gguf.systemPrompt: {err}") from None


def hold_back_unless_gate_met(ctx: StepContext, gate: dict[str, Any] | None, score_outputs: dict[str, str]) -> None:
    """A quantization that fails the gate is not shipped: only its scores are uploaded, no GGUF
    file and no manifest, so the run promotes none of them and its status says why."""
    if gate is None or gate["passed"]:
        return
    for rel in score_outputs.values():
        ctx.writer.add_file(rel, ctx.out / rel)
    raise GateNotMet(
        f"steps.evaluate.gate {gate['expression']!r} not met for {', '.join(gate['quantizations'])} "
        f"(scored with llama.cpp on the test split): {gate['explanation']}; no GGUF file promoted "
        f"(scores uploaded to {ctx.writer.prefix}/quantized.html; nothing committed)"
    )


def run_step(ctx: StepContext) -> StepResult:
    cfg = ctx.config
    kind, source = train_output(ctx)
    llama_dir = convert.converter_dir()
    quantize.require_llama_cpp()
    if kind == "adapter":
        from jobs.common.modelload import base_model_dir

        base_dir = base_model_dir(ctx)
    else:
        base_dir = source
    arch = convert.check_supported(base_dir, llama_dir)
    check_disk(ctx.scratch, model_bytes(base_dir))
    name = cfg.model_name or ctx.name
    stem = name.replace(":", "-")  # an Ollama tag is not part of a file name
    files = {q: ctx.out / f"{stem}-{q}.gguf" for q in cfg.quantizations}
    mf = build_modelfile(ctx, merge.tokenizer_dir(source, base_dir), [p.name for p in files.values()])
    cases = smoke_cases(ctx, cfg.smoke_prompts)
    metrics: dict[str, Any] = {
        "architecture": arch,
        "converter": convert.converter_version(llama_dir),
        "versions": versions(),
        "converterPinMismatches": convert.version_mismatches(llama_dir),
    }
    scoring = cfg.score and ctx.spec.steps.evaluate is not None
    steps = 3 + 2 * len(files) + int(scoring)
    ctx.progress.update(0, steps, phase="merge")

    if kind == "adapter":
        merged = ctx.out / "merged"
        metrics["trainQuantization"] = merge.train_quantization(ctx.input_dir("train", only="train_config.json"))
        metrics |= merge.merge_adapter(base_dir, source, merged, cfg.merge_dtype, [c["messages"] for c in cases])
    else:
        merged = source
    ctx.progress.update(1, steps, phase="convert")
    outtype = convert.OUTTYPE[cfg.merge_dtype]
    full = ctx.scratch / f"{stem}-{outtype.upper()}.gguf"
    convert.convert(merged, full, outtype, ctx.scratch / "convert.log")
    metrics["convertedBytes"] = full.stat().st_size

    done = 2
    for quant, path in files.items():
        ctx.progress.update(done, steps, phase=f"quantize {quant}")
        quantize.quantize(full, path, quant)
        done += 1
    full.unlink()
    results = []
    for quant, path in files.items():
        ctx.progress.update(done, steps, phase=f"smoke {quant}")
        results.append({"quantization": quant, "sizeBytes": path.stat().st_size,
                        **smoke.smoke_test(path, cases, cfg.num_ctx, SMOKE_MAX_TOKENS)})
        done += 1
    (ctx.out / "smoke.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (ctx.out / "Modelfile").write_text(mf.text)
    scored, score_outputs = None, {}
    if scoring:
        ctx.progress.update(done, steps, phase="score on the test split")
        scored = score.score_quantizations(ctx, files, lambda: None)
        score_outputs = score.write(ctx.out, scored, name)
        hold_back_unless_gate_met(ctx, scored["gate"], score_outputs)
    ctx.progress.update(steps - 1, steps, phase="upload")
    ctx.upload_outputs()
    ctx.progress.update(steps, steps, phase="done")

    metrics |= {
        "files": {q: {"file": p.name, "sizeBytes": p.stat().st_size} for q, p in files.items()},
        "smoke": {r["quantization"]: {k: r[k] for k in ("tokensPerSec", "tensorCount", "fileTypeName")}
                  for r in results},
        "smokeAnswers": {r["quantization"]: [a["answer"] for a in r["answers"]] for r in results},
        "modelfile": {"templateConverted": mf.template_converted, "note": mf.note, "stop": mf.stops,
                      "system": mf.system},
        "ollamaCreate": modelfile.ollama_create_command(name),
    }
    outputs = {f"gguf:{q}": p.name for q, p in files.items()}
    outputs |= {"modelfile": "Modelfile", "smoke": "smoke.json", **score_outputs}
    if scored is not None:
        metrics |= {"quantized": {q: s["metrics"] for q, s in scored["quantizations"].items()},
                    "scoringSeconds": {q: s["seconds"] for q, s in scored["quantizations"].items()},
                    **scored["gateMetrics"], "gatePassed": scored["gate"]["passed"] if scored["gate"] else None}
    if kind == "adapter":
        outputs["merged"] = "merged/"
    return StepResult(metrics=metrics, outputs=outputs)
