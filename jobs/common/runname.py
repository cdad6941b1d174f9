"""W&B run names with placeholders from the spec: `mistral-7b-sft-{learning_rate}-r{lora_r}`.

The names are checked when the spec is validated (an unknown placeholder is an error that names
it) and expanded when the train step opens its tracker.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.common.spec import FineTuneRun


def _model_name(run: FineTuneRun) -> str:
    source = run.spec.model
    if source.name:
        return source.name
    return PurePosixPath(source.location.rstrip("/")).name.removesuffix(".gguf")


def _train(field: str, absent: str = "none") -> Callable[[FineTuneRun], Any]:
    def value(run: FineTuneRun) -> Any:
        train = run.spec.steps.train
        got = getattr(train, field) if train else None
        return absent if got is None else got

    return value


def _lora(field: str) -> Callable[[FineTuneRun], Any]:
    def value(run: FineTuneRun) -> Any:
        train = run.spec.steps.train
        return getattr(train.lora, field) if train and train.lora else "full"

    return value


PLACEHOLDERS: dict[str, Callable[[FineTuneRun], Any]] = {
    "run_name": lambda run: run.metadata.name,
    "namespace": lambda run: run.metadata.namespace,
    "model_name": _model_name,
    "method": _train("method"),
    "learning_rate": _train("learning_rate"),
    "epochs": _train("epochs"),
    "max_steps": _train("max_steps"),
    "batch_size": _train("batch_size"),
    "gradient_accumulation": _train("gradient_accumulation"),
    "max_length": _train("max_length"),
    "seed": _train("seed"),
    "lora_r": _lora("r"),
    "lora_alpha": _lora("alpha"),
}


def check_template(template: str) -> str:
    """Raise ValueError naming the first placeholder that is not known, or that is malformed."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(f"malformed placeholder in {template!r}: {err} (write {{{{ for a literal brace)") from None
    for name in fields:
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(sorted(PLACEHOLDERS))}")
    return template


def expand(template: str, run: FineTuneRun) -> str:
    """The run name with every placeholder replaced by the spec's value (format specs such as
    `{learning_rate:.0e}` apply)."""
    check_template(template)
    values = {name: value(run) for name, value in PLACEHOLDERS.items()}
    try:
        return template.format_map(values)
    except (ValueError, TypeError) as err:
        raise ValueError(f"tracking.wandb.runName {template!r}: {err}") from None
