"""What can be checked in the Dockerfiles without a container engine.

Bases pinned to an exact version, a non-root numeric USER, an ENTRYPOINT that runs a
module that exists, only extras that pyproject defines (and no torch where it does not
belong), installs constrained to images/constraints.txt, and the gguf image building
llama.cpp from the llama-cpp-python sdist. The builds themselves run in `make images`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
CONSTRAINTS = IMAGES / "constraints.txt"

# component -> (module run by the ENTRYPOINT, extras installed, may use the CUDA base)
COMPONENTS = {
    "controller": ("controller", {"controller"}, False),
    "eval": ("jobs.eval", {"eval"}, False),
    "pack": ("jobs.pack", {"pack"}, False),
    "train": ("jobs.train", {"train"}, True),
    "evaluate": ("jobs.evaluate", {"train"}, True),
    "gguf": ("jobs.gguf", {"gguf", "llamacpp"}, True),
}
GPU_COMPONENTS = [c for c, (_, _, gpu) in COMPONENTS.items() if gpu]

# An image reference pinned by digest, or by a tag holding an exact version:
# 3.11.13-slim-bookworm, 12.8.1-cudnn-runtime-ubuntu22.04, 0.8.22, RELEASE.2025-04-22T22-12-26Z.
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
EXACT_TAG = re.compile(r":(v?\d+\.\d+\.\d+([-.][\w.-]+)?|RELEASE\.\d{4}-\d\d-\d\dT[\w-]+)$")
EXTRA_SPEC = re.compile(r"""["']?\.\[([a-z0-9_,-]+)\]["']?""")


def parse(component: str, variant: str | None = None) -> DockerfileParser:
    parser = DockerfileParser(str(IMAGES / component / "Dockerfile"), env_replace=True)
    if variant:
        parser.build_args = {"VARIANT": variant}
    return parser


def stages(parser: DockerfileParser) -> list[list[dict]]:
    """The instructions of each stage, in order."""
    out: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def stage_names(parser: DockerfileParser) -> set[str]:
    names = set()
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                names.add(parts[2])
    return names


def external_images(parser: DockerfileParser) -> list[str]:
    """Every image pulled from a registry: FROM bases and COPY --from sources."""
    names = stage_names(parser)
    images = [p for p in parser.parent_images if p not in names]
    for ins in parser.structure:
        if ins["instruction"] == "COPY":
            m = re.search(r"--from=(\S+)", ins["value"])
            if m and m.group(1) not in names and not m.group(1).isdigit():
                images.append(m.group(1))
    return images


def final_base(parser: DockerfileParser) -> str:
    """The registry image the last stage is built on, following stage references."""
    names = {}
    for ins, base in zip(
        [i for i in parser.structure if i["instruction"] == "FROM"], parser.parent_images
    ):
        parts = ins["value"].split()
        names[parts[2] if len(parts) == 3 else None] = base
    base = parser.parent_images[-1]
    while base in names:
        base = names[base]
    return base


def installed_extras(parser: DockerfileParser) -> set[str]:
    found: set[str] = set()
    for ins in parser.structure:
        if ins["instruction"] == "RUN":
            for m in EXTRA_SPEC.finditer(ins["value"]):
                found.update(m.group(1).split(","))
    return found


def constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            req = Requirement(line)
            spec = str(req.specifier)
            assert spec.startswith("==") and "," not in spec, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = spec[2:]
    return pins


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_registry_image_is_pinned(component: str) -> None:
    images = external_images(parse(component))
    assert images, f"{component}: no base image found"
    for image in images:
        assert DIGEST.search(image) or EXACT_TAG.search(image), (
            f"images/{component}/Dockerfile: {image!r} is not pinned to a digest or an exact version"
        )


@pytest.mark.parametrize("component", COMPONENTS)
def test_cuda_base_only_where_a_gpu_is_used(component: str) -> None:
    gpu = COMPONENTS[component][2]
    for variant in ("cuda", "cpu") if gpu else (None,):
        base = final_base(parse(component, variant))
        if variant == "cuda":
            assert base.startswith("nvidia/cuda:"), f"{component} (cuda): built on {base}"
        else:
            assert base.startswith("python:") and "slim" in base, f"{component} ({variant}): built on {base}"
    if not gpu:
        assert not any("cuda" in i for i in external_images(parse(component)))


@pytest.mark.parametrize("component", GPU_COMPONENTS)
def test_gpu_images_default_to_cuda_and_take_a_cpu_variant(component: str) -> None:
    parser = parse(component)
    args = [i["value"] for i in parser.structure if i["instruction"] == "ARG"]
    assert "VARIANT=cuda" in args, f"{component}: needs ARG VARIANT=cuda (cpu for kind)"
    cpu = "".join(i["value"] for i in stages(parse(component, "cpu"))[1])
    assert "download.pytorch.org/whl/cpu" in cpu, f"{component}: the CPU variant must install CPU torch"


@pytest.mark.parametrize("component", COMPONENTS)
def test_runs_as_a_numeric_non_root_user(component: str) -> None:
    last = stages(parse(component, "cpu"))[-1]
    users = [i["value"] for i in last if i["instruction"] == "USER"]
    assert users, f"{component}: the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{component}: USER {users[-1]!r} must be a non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"{component}: group of {users[-1]!r}"
    entry = [i for i in last if i["instruction"] == "ENTRYPOINT"][-1]
    assert entry["startline"] > [i for i in last if i["instruction"] == "USER"][-1]["startline"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_entrypoint_runs_a_module_that_exists(component: str) -> None:
    parser = parse(component)
    entries = [i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"]
    assert len(entries) == 1, f"{component}: expected one ENTRYPOINT"
    argv = json.loads(entries[0])  # exec form: no shell between the kubelet and python
    module = COMPONENTS[component][0]
    assert argv == ["python", "-m", module]
    main = ROOT.joinpath(*module.split("."), "__main__.py")
    assert main.is_file(), f"{component}: `python -m {module}` needs {main.relative_to(ROOT)}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_installs_only_its_own_extras(component: str) -> None:
    extras = installed_extras(parse(component))
    assert extras == COMPONENTS[component][1], f"{component}: installs extras {sorted(extras)}"
    unknown = extras - set(EXTRAS)
    assert not unknown, f"{component}: extras {sorted(unknown)} are not in pyproject.toml"


@pytest.mark.parametrize("component", ["controller", "eval", "pack"])
def test_small_images_pull_no_torch(component: str) -> None:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in COMPONENTS[component][1]:
        reqs += EXTRAS[extra]
    heavy = {"torch", "transformers", "llama-cpp-python"}
    assert not {canonicalize_name(Requirement(r).name) for r in reqs} & heavy


@pytest.mark.parametrize("component", COMPONENTS)
def test_installs_are_constrained(component: str) -> None:
    runs = [i["value"] for i in parse(component).structure if i["instruction"] == "RUN"]
    installs = [r for r in runs if EXTRA_SPEC.search(r)]
    assert installs
    for run in installs:
        assert "--constraint constraints.txt" in run, f"{component}: {run!r} is not constrained"


def test_constraints_pin_everything_the_images_install() -> None:
    pins = constraints()
    wanted = list(PYPROJECT["project"]["dependencies"])
    for _, extras, _ in COMPONENTS.values():
        for extra in extras:
            wanted += EXTRAS[extra]
    missing = sorted({canonicalize_name(Requirement(r).name) for r in wanted} - set(pins))
    assert not missing, f"images/constraints.txt pins no version of {missing} (make images-constraints)"
    for req in map(Requirement, wanted):
        version = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), (
            f"images/constraints.txt: {req.name}=={version} does not satisfy pyproject's {req}"
        )


def test_gguf_builds_llama_cpp_from_the_sdist() -> None:
    parser = parse("gguf", "cpu")
    text = "\n".join(i["value"] for i in parser.structure)
    assert "-DGGML_NATIVE=OFF" in text, "llama.cpp must not be tuned to the build machine's CPU"
    assert "--no-binary llama-cpp-python" in text, "llama-cpp-python must be built from its sdist"
    assert "sha256sum -c" in text, "the sdist must be checked against its pinned sha256"
    assert "python -m jobs.gguf.install" in text, "the converter is extracted by jobs.gguf.install"
    assert (ROOT / "jobs" / "gguf" / "install.py").is_file()
    envs = parser.envs
    assert envs.get("LLAMA_CPP_DIR"), "the gguf step finds the converter through LLAMA_CPP_DIR"
    copies = [i["value"] for i in stages(parser)[-1] if i["instruction"] == "COPY"]
    assert any(envs["LLAMA_CPP_DIR"] in c and "--from=" in c for c in copies), (
        "the runtime stage copies the converter from the build stage"
    )


def test_gguf_pins_the_llama_cpp_release_make_llamacpp_tests() -> None:
    """The image builds the same llama-cpp-python sdist, by version and checksum, that
    `make llamacpp` builds for the test suite, and that constraints.txt pins."""
    args = dict(
        i["value"].split("=", 1)
        for i in parse("gguf").structure
        if i["instruction"] == "ARG" and "=" in i["value"]
    )
    mk = dict(re.findall(r"^(LLAMA_CPP_\w+) \?= (\S+)$", (ROOT / "jobs/gguf/llamacpp.mk").read_text(), re.M))
    assert args["LLAMA_CPP_PYTHON_VERSION"] == mk["LLAMA_CPP_PYTHON_VERSION"]
    assert args["LLAMA_CPP_SDIST_SHA256"] == mk["LLAMA_CPP_SDIST_SHA256"]
    assert constraints()["llama-cpp-python"] == mk["LLAMA_CPP_PYTHON_VERSION"]


@pytest.mark.parametrize("component", ["train", "evaluate"])
def test_qlora_gets_bitsandbytes_on_cuda_only(component: str) -> None:
    """spec.steps.train.quantization: 4bit loads the base with bitsandbytes, which needs CUDA."""
    cuda, cpu = stages(parse(component))[:2]
    cuda_env = " ".join(i["value"] for i in cuda if i["instruction"] == "ENV")
    cpu_env = " ".join(i["value"] for i in cpu if i["instruction"] == "ENV")
    assert re.search(r"GPU_PACKAGES=bitsandbytes==\d+\.\d+\.\d+", cuda_env)
    assert re.search(r"GPU_PACKAGES=(\s|$)", cpu_env)
    runs = [i["value"] for i in stages(parse(component))[-1] if i["instruction"] == "RUN"]
    assert any("$GPU_PACKAGES" in r and ".[train]" in r for r in runs)
