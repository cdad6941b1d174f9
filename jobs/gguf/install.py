"""Install llama.cpp's own HF -> GGUF converter from the llama-cpp-python sdist.

    python -m jobs.gguf.install [--version 0.3.36] [--dir DIR] [--sdist FILE] [--sha256 HEX]

No wheel on PyPI carries `convert_hf_to_gguf.py`; the llama-cpp-python sdist
vendors the whole llama.cpp tree, converter and `gguf-py` included. This
fetches that sdist with pip (so pip's cache and index settings apply) and
unpacks the converter's files into DIR: `$LLAMA_CPP_DIR`, by default
`~/.cache/finetune-operator/llama.cpp`. The version defaults to the installed
llama-cpp-python, so the converter writes the GGUF format its quantizer reads.

It is idempotent (a stamp records what was installed) and atomic (the files are
unpacked beside DIR and renamed into place). Prints DIR.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "llama-cpp-python"
ENV_DIR = "LLAMA_CPP_DIR"
STAMP = ".finetune-operator-install.json"
CONVERTER = "convert_hf_to_gguf.py"
# What the converter reads, relative to vendor/llama.cpp/: its model classes (`conversion/`,
# newer releases), gguf-py, the templates some model classes load, the pinned requirements.
REQUIRED = (CONVERTER, "gguf-py/")
OPTIONAL = ("conversion/", "models/templates/", "requirements/", "requirements.txt", "LICENSE")
VENDOR = "vendor/llama.cpp/"


class InstallError(Exception):
    pass


def default_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "finetune-operator" / "llama.cpp")


def installed_version() -> str | None:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_stamp(target: Path) -> dict | None:
    try:
        return json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_current(target: Path, version: str) -> bool:
    """An earlier install of this version whose converter is unchanged."""
    stamp = read_stamp(target)
    converter = target / CONVERTER
    return bool(
        stamp
        and stamp.get("version") == version
        and converter.is_file()
        and sha256_of(converter) == stamp.get("converterSha256")
    )


def sdist_version(sdist: Path) -> str:
    """The version in an sdist's file name, llama_cpp_python-<version>.tar.gz."""
    return sdist.name.removeprefix("llama_cpp_python-").removesuffix(".tar.gz")


def download_sdist(version: str, dest: Path) -> Path:
    """The sdist for `version`, fetched by pip into `dest`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", DISTRIBUTION,
           f"{DISTRIBUTION}=={version}", "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not found:
        raise InstallError(f"pip could not download {DISTRIBUTION}=={version}:\n{done.stderr[-2000:]}")
    return found[0]


def _vendored_members(tar: tarfile.TarFile) -> tuple[str, list[tarfile.TarInfo]]:
    """The sdist's top folder and the members of vendor/llama.cpp/ the converter needs."""
    names = tar.getnames()
    top = names[0].split("/")[0]
    root = f"{top}/{VENDOR}"
    wanted = REQUIRED + OPTIONAL
    members = [
        m for m in tar.getmembers()
        if m.name.startswith(root) and any(
            m.name[len(root):] == w.rstrip("/") or (w.endswith("/") and m.name[len(root):].startswith(w))
            for w in wanted
        )
    ]
    present = {m.name[len(root):] for m in members}
    missing = [w for w in REQUIRED if not any(p == w.rstrip("/") or p.startswith(w) for p in present)]
    if missing:
        raise InstallError(f"the sdist has no {VENDOR}{', '.join(missing)}")
    unsafe = [m.name for m in members if not _plain(m)]
    if unsafe:
        raise InstallError(f"the sdist has members that are not plain files under its root: {', '.join(unsafe[:5])}")
    return root, members


def _plain(m: tarfile.TarInfo) -> bool:
    """A regular file or folder with a relative path that stays inside: tarfile's "data" filter
    does this check from Python 3.11.4 on, and Debian's 3.11 is 3.11.2."""
    parts = Path(m.name).parts
    return (m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in parts


def extract(sdist: Path, target: Path, version: str) -> Path:
    """Unpack the converter's files from `sdist` into `target`, replacing it atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with tarfile.open(sdist) as tar:
            root, members = _vendored_members(tar)
            tar.extractall(work, members=members)
        staged = work / root
        stamp = {
            "distribution": DISTRIBUTION,
            "version": version,
            "sdist": sdist.name,
            "sdistSha256": sha256_of(sdist),
            "converterSha256": sha256_of(staged / CONVERTER),
        }
        (staged / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        previous = work / "previous"
        if target.exists():
            target.rename(previous)
        try:
            staged.rename(target)
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def install(version: str, target: Path, sdist: Path | None = None, sha256: str | None = None) -> Path:
    if is_current(target, version) and (sha256 is None or read_stamp(target).get("sdistSha256") == sha256):
        return target
    if target.exists() and any(target.iterdir()) and read_stamp(target) is None:
        raise InstallError(f"{target} exists and was not installed by this command; not replacing it")
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as tmp:
        path = sdist or download_sdist(version, Path(tmp))
        if sha256 and sha256_of(path) != sha256:
            raise InstallError(f"{path.name}: sha256 {sha256_of(path)} does not match the expected {sha256}")
        return extract(path, target, version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.gguf.install", description=__doc__.split("\n")[0])
    parser.add_argument("--version", help="llama-cpp-python version (default: the installed one)")
    parser.add_argument("--dir", type=Path, default=None, help=f"target folder (default: ${ENV_DIR} or ~/.cache/...)")
    parser.add_argument("--sdist", type=Path, help="use this sdist file instead of downloading")
    parser.add_argument("--sha256", help="expected sha256 of the sdist")
    args = parser.parse_args(argv)
    version = args.version or (sdist_version(args.sdist) if args.sdist else installed_version())
    if not version:
        parser.error(f"{DISTRIBUTION} is not installed; pass --version (or run `make llamacpp`)")
    try:
        target = install(version, (args.dir or default_dir()).expanduser(), args.sdist, args.sha256)
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
