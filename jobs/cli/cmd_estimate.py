"""ftctl estimate RUN.yaml: the train step's memory per GPU, before any GPU is asked for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from jobs.common.errors import InvalidInput
from jobs.common.memory import GB, Estimate, ModelShape, estimate, parse_memory, parse_params, shape_from_path
from jobs.common.resolve import local_path_of
from jobs.common.spec import FineTuneRun
from jobs.common.specio import load_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="memory per GPU of a run's train step (model, method, batch, strategy)")
    p.add_argument("file", type=Path, help="the FineTuneRun manifest")
    p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE", help="spec overrides, as for ftctl run")
    p.add_argument("--params", help="the model's parameter count (e.g. 8B) instead of reading its config")
    p.add_argument("--gpu-memory", help="memory of one GPU (e.g. 24Gi); default: resources.train.gpuMemory")
    p.set_defaults(func=run)


def model_shape(ftr: FineTuneRun, base_dir: Path, params: str | None = None) -> ModelShape:
    """The base model's shape from its local config.json or GGUF metadata, or the given count."""
    if params:
        return ModelShape(params=parse_params(params))
    source = ftr.spec.model
    path = local_path_of(source.location, base_dir) if source.kind != "hub" else None
    if path is None:
        raise InvalidInput(f"spec.model.{source.kind}: {source.location} is not on this machine; pass --params (e.g. 8B)")
    return shape_from_path(path)


def gpu_memory(ftr: FineTuneRun, given: str | None) -> float | None:
    res = ftr.spec.resources.train
    quantity = given or (res.gpu_memory if res else None)
    return parse_memory(quantity) if quantity else None


def train_estimate(ftr: FineTuneRun, base_dir: Path, params: str | None = None) -> Estimate:
    if ftr.spec.steps.train is None:
        raise InvalidInput("steps.train: not enabled, nothing to estimate")
    return estimate(model_shape(ftr, base_dir, params), ftr.spec.steps.train)


def _gb(n: float | None) -> str:
    return "unknown" if n is None else f"{n / GB:.2f} GB"


def run(args: argparse.Namespace) -> int:
    ftr = load_run(args.file, overrides=args.overrides)
    est = train_estimate(ftr, args.file.parent, args.params)
    cfg = ftr.spec.steps.train
    console = Console()
    layout = f"{est.strategy} over {est.world_size} process(es)" if est.world_size > 1 else "one process"
    console.print(f"[bold]{ftr.metadata.name}[/]: {est.method}, {layout}, batch {cfg.batch_size} x {cfg.max_length} tokens, "
                  f"{est.trainable:,} trainable parameters")
    table = Table("per GPU", "memory")
    for label, value in (("base weights", est.weights), ("gradients", est.gradients), ("AdamW states", est.optimizer),
                         ("LoRA adapters", est.adapters),
                         ("activations" + (" (checkpointed)" if est.checkpointed else ""), est.activations),
                         ("total", est.total)):
        table.add_row(label, _gb(value))
    console.print(table)
    if est.activations is None:
        console.print("activations are not counted: the model's shape is unknown with --params")
    limit = gpu_memory(ftr, args.gpu_memory)
    if limit is not None:
        verdict = "fits" if est.total <= limit else "does not fit"
        console.print(f"{verdict} in {limit / GB:.2f} GB per GPU")
    return 0


def fit_warning(ftr: FineTuneRun, base_dir: Path) -> str | None:
    """ftctl validate's warning when the train step's estimate exceeds resources.train.gpuMemory."""
    limit = gpu_memory(ftr, None)
    if limit is None or ftr.spec.steps.train is None:
        return None
    try:
        est = train_estimate(ftr, base_dir)
    except InvalidInput as err:
        return f"no memory estimate: {err.message}"
    if est.total <= limit:
        return None
    return (f"steps.train needs about {est.total / GB:.1f} GB per GPU (ftctl estimate), more than "
            f"resources.train.gpuMemory ({ftr.spec.resources.train.gpu_memory}, {limit / GB:.1f} GB)")
