"""Quantization types llama.cpp knows by name, read from the gguf package's own enum.

`gguf.LlamaFileType` mirrors llama.cpp's `llama_ftype`; its members are named
`MOSTLY_Q4_K_M` and so on. Using it keeps `ftctl validate` in step with the
quantizer without importing llama.cpp in the controller.
"""

from gguf import LlamaFileType

# Not quantizations, or not produced by llama_model_quantize.
_EXCLUDED = {"GUESSED"}

QUANT_TYPES: dict[str, int] = {
    member.name.removeprefix("MOSTLY_"): int(member.value)
    for member in LlamaFileType
    if member.name.removeprefix("MOSTLY_") not in _EXCLUDED
}
