"""Unpacking the converter from a llama-cpp-python sdist: what is kept, idempotence, checks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from jobs.common.errors import MissingInput
from jobs.gguf import convert
from jobs.gguf.install import CONVERTER, STAMP, InstallError, install, main, sha256_of

TOP = "llama_cpp_python-9.9.9"


def make_sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def vendored(**extra: str) -> dict[str, str]:
    v = f"{TOP}/vendor/llama.cpp/"
    return {
        f"{TOP}/pyproject.toml": "[project]",
        f"{v}{CONVERTER}": "print('converter')",
        f"{v}gguf-py/gguf/__init__.py": "",
        f"{v}conversion/__init__.py": "",
        f"{v}conversion/llama.py": "",
        f"{v}models/templates/x.jinja": "{{ x }}",
        f"{v}models/ggml-vocab-llama.gguf": "big vocab test file",
        f"{v}requirements/requirements-convert_hf_to_gguf.txt": "torch==2.11.0",
        f"{v}src/llama.cpp": "int main() {}",
        **extra,
    }


@pytest.fixture
def sdist(tmp_path) -> Path:
    return make_sdist(tmp_path / f"{TOP}.tar.gz", vendored())


def test_unpacks_only_what_the_converter_reads(sdist, tmp_path):
    target = install("9.9.9", tmp_path / "llama.cpp", sdist=sdist)
    assert (target / CONVERTER).read_text() == "print('converter')"
    assert (target / "gguf-py/gguf/__init__.py").is_file()
    assert (target / "conversion/llama.py").is_file()
    assert (target / "models/templates/x.jinja").is_file()
    assert (target / "requirements/requirements-convert_hf_to_gguf.txt").is_file()
    assert not (target / "src").exists() and not (target / "models/ggml-vocab-llama.gguf").exists()
    stamp = json.loads((target / STAMP).read_text())
    assert stamp["version"] == "9.9.9" and stamp["sdistSha256"] == sha256_of(sdist)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".llama.cpp.tmp")] == []


def test_second_run_is_a_no_op_and_a_changed_converter_is_restored(sdist, tmp_path):
    target = install("9.9.9", tmp_path / "llama.cpp", sdist=sdist)
    before = (target / CONVERTER).stat().st_mtime_ns
    install("9.9.9", target, sdist=tmp_path / "not-read.tar.gz")
    assert (target / CONVERTER).stat().st_mtime_ns == before
    (target / CONVERTER).write_text("tampered")
    install("9.9.9", target, sdist=sdist)
    assert (target / CONVERTER).read_text() == "print('converter')"


def test_another_version_replaces_the_install(sdist, tmp_path):
    target = install("9.9.9", tmp_path / "llama.cpp", sdist=sdist)
    newer = make_sdist(tmp_path / "new.tar.gz", vendored(**{f"{TOP}/vendor/llama.cpp/{CONVERTER}": "v2"}))
    install("10.0.0", target, sdist=newer)
    assert (target / CONVERTER).read_text() == "v2"
    assert json.loads((target / STAMP).read_text())["version"] == "10.0.0"


def test_checksum_mismatch_installs_nothing(sdist, tmp_path):
    with pytest.raises(InstallError, match="does not match the expected"):
        install("9.9.9", tmp_path / "llama.cpp", sdist=sdist, sha256="0" * 64)
    assert not (tmp_path / "llama.cpp").exists()


def test_a_folder_it_did_not_install_is_left_alone(sdist, tmp_path):
    own = tmp_path / "my-llama.cpp"
    own.mkdir()
    (own / "README.md").write_text("my checkout")
    with pytest.raises(InstallError, match="not installed by this command"):
        install("9.9.9", own, sdist=sdist)
    assert (own / "README.md").read_text() == "my checkout"


def test_sdist_without_the_converter_is_refused(tmp_path):
    bad = make_sdist(tmp_path / "bad.tar.gz", {f"{TOP}/vendor/llama.cpp/README.md": "no converter"})
    with pytest.raises(InstallError, match="has no vendor/llama.cpp/convert_hf_to_gguf.py"):
        install("9.9.9", tmp_path / "llama.cpp", sdist=bad)


def test_members_escaping_the_folder_are_refused(tmp_path):
    escaping = f"{TOP}/vendor/llama.cpp/conversion/../../../../../evil.py"
    evil = make_sdist(tmp_path / "evil.tar.gz", vendored(**{escaping: "x"}))
    with pytest.raises(InstallError, match="not plain files under its root: .*evil.py"):
        install("9.9.9", tmp_path / "deep/er/llama.cpp", sdist=evil)
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "deep/er/llama.cpp").exists()


def test_links_are_refused_on_every_python(tmp_path):
    # Checked by the project itself: tarfile's "data" filter exists only from Python 3.11.4 on.
    path = make_sdist(tmp_path / "link.tar.gz", vendored())
    plain = tmp_path / "link.tar"
    with tarfile.open(path) as src, tarfile.open(plain, "w") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m))
        link = tarfile.TarInfo(f"{TOP}/vendor/llama.cpp/models/templates/passwd.jinja")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    with pytest.raises(InstallError, match="passwd.jinja"):
        install("9.9.9", tmp_path / "llama.cpp", sdist=plain)
    assert not (tmp_path / "llama.cpp").exists()


def test_cli_prints_the_folder_and_reads_the_version_from_the_file(sdist, tmp_path, capsys):
    assert main(["--sdist", str(sdist), "--dir", str(tmp_path / "lc")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "lc")
    assert json.loads((tmp_path / "lc" / STAMP).read_text())["version"] == "9.9.9"


def test_the_step_finds_the_converter_through_llama_cpp_dir(sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(MissingInput, match="make llamacpp") as err:
        convert.converter_dir()
    assert err.value.code == "LlamaCppMissing" and str(tmp_path / "elsewhere") in err.value.message
    install("9.9.9", tmp_path / "elsewhere", sdist=sdist)
    assert convert.converter_dir() == tmp_path / "elsewhere"
    assert convert.converter_version(tmp_path / "elsewhere") == "llama-cpp-python 9.9.9"


def test_versions_outside_the_converters_pins_are_listed(tmp_path):
    req = tmp_path / "requirements"
    req.mkdir()
    (req / "requirements-convert_legacy_llama.txt").write_text("pytest>=1  # fine\nno-such-package-xyz>=1\n")
    (req / "requirements-convert_hf_to_gguf.txt").write_text(
        "-r ./requirements-convert_legacy_llama.txt\n--extra-index-url https://example.invalid\ntorch==0.0.1\n"
    )
    found = convert.version_mismatches(tmp_path)
    assert len(found) == 2
    assert found[0] == "no-such-package-xyz: the converter wants >=1, not installed"
    assert found[1].startswith("torch: the converter pins ==0.0.1, installed 2.")
