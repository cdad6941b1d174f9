"""The chart installs the generated CRD unchanged, behind crds.install, kept on uninstall."""

from __future__ import annotations

import yaml

from tests.chart.chartlib import CHART, ROOT, Render, one

GENERATED = ROOT / "crds" / "finetune.dev_finetuneruns.yaml"
CHART_COPY = CHART / "files" / "finetune.dev_finetuneruns.yaml"


def test_chart_copy_is_the_generated_crd() -> None:
    assert CHART_COPY.read_bytes() == GENERATED.read_bytes(), (
        "charts/finetune-operator/files/ is out of date: run `make chart-crd`"
    )


def test_rendered_crd_is_the_generated_one(render: Render) -> None:
    rendered = one(render(), "CustomResourceDefinition")
    generated = yaml.safe_load(GENERATED.read_text())
    assert rendered["spec"] == generated["spec"]
    assert rendered["metadata"]["name"] == generated["metadata"]["name"] == "finetuneruns.finetune.dev"
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crd_is_kept_on_uninstall_unless_told(render: Render) -> None:
    kept = one(render(), "CustomResourceDefinition")
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    dropped = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in dropped["metadata"]


def test_crds_install_false_skips_it(render: Render) -> None:
    assert not [o for o in render({"crds": {"install": False}}) if o["kind"] == "CustomResourceDefinition"]
