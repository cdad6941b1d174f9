"""The cluster examples pass `ftctl validate`, and say what their comments promise."""

from __future__ import annotations

import pytest

from jobs.cli.main import main as ftctl
from jobs.common.resolve import package_file
from jobs.common.specio import load_run
from tests.chart.chartlib import ROOT

EXAMPLES = ["kind-quickstart.yaml", "gpu-qlora-mistral.yaml", "classification.yaml"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_ftctl_validate_accepts_the_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "examples" / name
    with pytest.raises(SystemExit) as done:
        ftctl(["validate", str(path)])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert f"{path}: ok" in out


def test_gpu_example_uses_the_teams_sft_hyperparameters() -> None:
    spec = load_run(ROOT / "examples" / "gpu-qlora-mistral.yaml").spec
    train = spec.steps.train
    assert train.quantization == "4bit" and train.method == "sft"
    assert (train.lora.r, train.lora.alpha, train.lora.dropout) == (16, 32, 0.05)
    attention, mlp = {"q_proj", "k_proj", "v_proj", "o_proj"}, {"gate_proj", "up_proj", "down_proj"}
    assert set(train.lora.target_modules) == attention | mlp
    assert train.learning_rate == 5e-5 and train.epochs == 5
    assert train.batch_size == 4 and train.gradient_accumulation == 8
    assert train.early_stopping_patience == 3 and train.eval_every
    assert spec.tracking.wandb.project == "supervised-finetuning-brexit-debates"
    assert spec.tracking.wandb.api_key_secret is not None  # by Secret reference only
    assert spec.model.hf and spec.model.hf.startswith("s3://")
    assert spec.resources.train.gpu == 1
    src = spec.data.sources[0]
    assert src.format == "csv" and src.columns == {"instruction": "chunk_text", "output": "frame_name"}


def test_classification_example_reads_the_frames_csv() -> None:
    spec = load_run(ROOT / "examples" / "classification.yaml").spec
    assert spec.steps.train.method == "classification" and spec.steps.pack.format == "classification"
    assert spec.data.sources[0].columns == {"text": "chunk_text", "label": "frame_name"}
    assert "MiniLM" in spec.model.name
    model_dir = package_file(spec.model.hf)  # the packaged model the example names exists
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()


def test_kind_quickstart_reads_everything_from_the_cluster() -> None:
    """A pod cannot read the user's disk: every input is in MinIO and no step asks for a GPU."""
    run = load_run(ROOT / "examples" / "kind-quickstart.yaml")
    spec = run.spec
    assert spec.model.location.startswith("s3://ft-artifacts/")
    assert all(s.path.startswith("s3://ft-artifacts/") for s in spec.data.sources)
    assert spec.store.uri is None, "the store comes from the chart (minio)"
    assert not any(getattr(spec.resources, s) and getattr(spec.resources, s).gpu for s in spec.steps.enabled())
    assert spec.steps.enabled() == ["pack", "train", "evaluate", "gguf"]
    assert spec.steps.gguf.quantizations == ["Q4_K_M", "Q8_0"]
