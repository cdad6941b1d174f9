"""The static quantization table matches the gguf package, and checking names imports neither gguf nor numpy."""

from __future__ import annotations

import subprocess
import sys

from jobs.common.quant import QUANT_TYPES


def test_table_equals_gguf_llama_file_types():
    from gguf import LlamaFileType

    expected = {m.name.removeprefix("MOSTLY_"): int(m.value) for m in LlamaFileType if m.name != "GUESSED"}
    assert QUANT_TYPES == expected


def test_validating_a_gguf_step_imports_neither_gguf_nor_numpy():
    code = (
        "import sys; from jobs.common.spec import GgufStep; GgufStep(quantizations=['Q4_K_M']); "
        "print(sorted(m for m in ('gguf', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
