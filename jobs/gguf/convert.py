"""Hugging Face folder -> GGUF with llama.cpp's own convert_hf_to_gguf.py.

The converter runs as a child process of this Python, with its vendored
gguf-py first on PYTHONPATH and the hub switched off, so a conversion never
downloads anything. It is found in $LLAMA_CPP_DIR (default
~/.cache/finetune-operator/llama.cpp), put there by `make llamacpp`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from importlib import metadata

from jobs.common.errors import FtError, InvalidInput, MissingInput
from jobs.gguf.install import CONVERTER, default_dir, read_stamp

log = logging.getLogger(__name__)

# spec.steps.gguf.mergeDtype -> the converter's --outtype
OUTTYPE = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}
INSTALL_HINT = "run `make llamacpp` (or `python -m jobs.gguf.install`), or set LLAMA_CPP_DIR to a llama.cpp folder"


def converter_dir() -> Path:
    """The llama.cpp folder holding the converter and its gguf-py; a clear error when absent."""
    root = default_dir()
    if not (root / CONVERTER).is_file() or not (root / "gguf-py").is_dir():
        raise MissingInput(
            f"llama.cpp's {CONVERTER} is not installed in {root} (LLAMA_CPP_DIR): {INSTALL_HINT}",
            code="LlamaCppMissing",
        )
    return root


def converter_version(root: Path) -> str:
    stamp = read_stamp(root)
    return f"llama-cpp-python {stamp['version']}" if stamp else f"llama.cpp at {root}"


def _requirements(path: Path) -> list[str]:
    """Requirement lines of a pip requirements file, following `-r` includes."""
    found: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            found += _requirements(path.parent / line[2:].strip())
        elif line and not line.startswith("-"):
            found.append(line)
    return found


def version_mismatches(root: Path) -> list[str]:
    """Where the installed packages fall outside what the converter's requirements file pins.

    llama.cpp tests its converter with those pins; a conversion that fails under other
    versions is worth reading with this list at hand.
    """
    from packaging.requirements import Requirement

    path = root / "requirements" / "requirements-convert_hf_to_gguf.txt"
    if not path.is_file():
        return []
    out = []
    for line in _requirements(path):
        req = Requirement(line)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(f"{req.name}: the converter wants {req.specifier}, not installed")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            out.append(f"{req.name}: the converter pins {req.specifier}, installed {installed}")
    return out


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "gguf-py"), env.get("PYTHONPATH")) if p)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(root: Path, args: list[str], log_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(root / CONVERTER), *args]
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, env=_env(root), cwd=root, capture_output=True, text=True)
    if log_file is not None:
        log_file.write_text(done.stdout + done.stderr)
    return done


@functools.lru_cache(maxsize=4)
def supported_architectures(root: Path) -> tuple[str, ...]:
    """The text-model architectures the converter registers, from its --print-supported-models."""
    done = _run(root, ["--print-supported-models"])
    names: list[str] = []
    section = None
    for line in (done.stdout + done.stderr).splitlines():
        if header := re.search(r"(\w+) models:\s*$", line):
            section = header.group(1)
        elif section == "TEXT" and (m := re.search(r"-\s+(\w+)\s*$", line)):
            names.append(m.group(1))
    if not names:
        raise FtError(
            f"{CONVERTER} --print-supported-models listed nothing:\n{_tail(done.stderr)}", code="ConvertFailed"
        )
    return tuple(sorted(set(names)))


def architecture_of(model_dir: Path) -> str:
    config = model_dir / "config.json"
    try:
        archs = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError) as err:
        raise InvalidInput(f"{config}: cannot read the model config ({err})") from None
    if not archs:
        raise InvalidInput(f"{config}: no `architectures` entry; the converter picks its model class by it")
    return archs[0]


def _unsupported(arch: str, root: Path, detail: str) -> InvalidInput:
    return InvalidInput(
        f"{detail}\nllama.cpp's converter ({converter_version(root)}) cannot convert {arch}. "
        f"Architectures it converts: {', '.join(supported_architectures(root))}",
        code="UnsupportedArchitecture",
    )


def check_supported(model_dir: Path, root: Path) -> str:
    """The model's architecture, or an error listing the ones the converter knows."""
    arch = architecture_of(model_dir)
    if arch not in supported_architectures(root):
        raise _unsupported(arch, root, f"{model_dir / 'config.json'}: architecture {arch} is not supported")
    return arch


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def convert(model_dir: Path, out_file: Path, outtype: str, log_file: Path) -> None:
    """Write `out_file` (GGUF, `outtype` f16/bf16/f32) from an HF folder."""
    root = converter_dir()
    done = _run(root, [str(model_dir), "--outfile", str(out_file), "--outtype", outtype], log_file)
    if done.returncode == 0 and out_file.is_file():
        return
    tail = _tail(done.stdout + done.stderr)
    if re.search(r"Model \S+ is not supported|Architecture \S+ not supported", tail):
        raise _unsupported(architecture_of(model_dir), root, tail)
    pins = "; ".join(version_mismatches(root)) or "none"
    raise FtError(
        f"{CONVERTER} failed (exit {done.returncode}); last lines:\n{tail}\n"
        f"Versions outside the converter's pins: {pins}",
        code="ConvertFailed",
    )
