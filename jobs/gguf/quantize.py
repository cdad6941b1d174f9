"""F16 GGUF -> a quantized GGUF with llama.cpp's llama_model_quantize, in process.

No `llama-quantize` binary is needed: llama-cpp-python's shared library has
the quantizer. llama.cpp's own log lines are collected so that a failure (a
type that needs an importance matrix, say) is reported with its reason.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

from jobs.common.errors import FtError, MissingInput
from jobs.common.quant import QUANT_TYPES
from jobs.gguf.cpus import usable_cpus

log = logging.getLogger(__name__)


def require_llama_cpp():
    """The llama_cpp module, or an error naming the install command."""
    try:
        import llama_cpp
    except ImportError as err:
        raise MissingInput(
            f"llama-cpp-python is not installed ({err}): run `make llamacpp`", code="LlamaCppMissing"
        ) from None
    return llama_cpp


class _LlamaLog:
    """Collects llama.cpp's log lines while active, then restores llama-cpp-python's logger."""

    def __init__(self, llama_cpp):
        self.llama_cpp = llama_cpp
        self.lines: list[str] = []

        @llama_cpp.llama_log_callback
        def collect(level, text, user_data):  # noqa: ARG001 (ctypes signature)
            self.lines.append(text.decode("utf-8", errors="replace"))

        self._callback = collect  # ctypes keeps only a raw pointer: hold a reference

    def __enter__(self) -> _LlamaLog:
        self.llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc) -> None:
        from llama_cpp import _logger

        self.llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))

    def tail(self, n: int = 15) -> str:
        return "\n".join("".join(self.lines).strip().splitlines()[-n:])


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """Write `dst`, the GGUF at `src` quantized to `quant` (a name from QUANT_TYPES)."""
    llama_cpp = require_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant]
    params.nthread = threads or usable_cpus()
    tmp = dst.with_name(dst.name + ".part")
    with _LlamaLog(llama_cpp) as llama_log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    log.debug("llama_model_quantize %s:\n%s", quant, "".join(llama_log.lines))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise FtError(
            f"llama.cpp could not quantize to {quant} (llama_model_quantize returned {rc}):\n{llama_log.tail()}",
            code="QuantizeFailed",
        )
    tmp.replace(dst)
