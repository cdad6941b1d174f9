"""What can be checked in the Dockerfiles without a container engine.

Bases pinned to an exact version and overridable (BASE_IMAGE), a non-root numeric USER, an
ENTRYPOINT that runs a module that exists, only extras that pyproject defines (and no torch
where it does not belong), installs constrained to images/constraints.txt, the dependencies
installed before the code is copied, no uv, and the gguf image taking llama-cpp-python from a
prebuilt wheel, never compiling it. The builds themselves run in `make images-smoke` and
`make images-local` (tests/images/test_images_run.py).
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

IMAGES_MK = (IMAGES / "images.mk").read_text()

# component -> (module run by the ENTRYPOINT, extras installed, carries torch). The train image
# serves the evaluate step too (the Job builder runs `python -m jobs.evaluate` in it).
COMPONENTS = {
    "controller": ("controller", {"controller", "api"}, False),  # the API server runs from it too
    "eval": ("jobs.eval", {"eval"}, False),
    "pack": ("jobs.pack", {"pack"}, False),
    "train": ("jobs.train", {"train"}, True),
    "gguf": ("jobs.gguf", {"gguf", "llamacpp"}, True),
}
TORCH_COMPONENTS = [c for c, (_, _, torch) in COMPONENTS.items() if torch]

# An image reference pinned by digest, or by a tag holding an exact version:
# 3.11.13-slim-bookworm, 12.8.1-cudnn-runtime-ubuntu22.04, 0.8.22, RELEASE.2025-04-22T22-12-26Z.
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
EXACT_TAG = re.compile(r":(v?\d+\.\d+\.\d+([-.][\w.-]+)?|RELEASE\.\d{4}-\d\d-\d\dT[\w-]+)$")
EXTRA_SPEC = re.compile(r"""["']?\.\[([a-z0-9_,-]+)\]["']?""")


def parse(component: str, build_args: dict[str, str] | None = None) -> DockerfileParser:
    parser = DockerfileParser(str(IMAGES / component / "Dockerfile"), env_replace=True)
    if build_args:
        parser.build_args = build_args
    return parser


def build_args(make_var: str) -> dict[str, str]:
    """The --build-arg pairs of one images.mk variable, e.g. VARIANT_ARGS_cpu."""
    line = re.search(rf"^{make_var} :?= ?(.*)$", IMAGES_MK, re.M).group(1)
    return dict(a.split("=", 1) for a in re.findall(r"--build-arg (\S+)", line))


def instructions(component: str) -> list[dict]:
    return [i for i in parse(component).structure if i["instruction"] != "COMMENT"]


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
def test_every_image_takes_its_base_from_a_build_arg(component: str) -> None:
    """python slim by default (torch's own wheels carry CUDA), any base through BASE_IMAGE."""
    assert parse(component).parent_images == ["python:3.11.13-slim-bookworm"]
    assert parse(component, {"BASE_IMAGE": "local/base:1"}).parent_images == ["local/base:1"]


@pytest.mark.parametrize("component", TORCH_COMPONENTS)
def test_torch_images_default_to_cuda_torch_and_take_the_cpu_index(component: str) -> None:
    assert parse(component).args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu128"
    cpu = build_args("VARIANT_ARGS_cpu")
    assert cpu["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert parse(component, cpu).args["TORCH_INDEX_URL"] == cpu["TORCH_INDEX_URL"]
    runs = [i["value"] for i in instructions(component) if i["instruction"] == "RUN"]
    assert any('--index-url "$TORCH_INDEX_URL"' in r and 'torch==${TORCH_VERSION}' in r for r in runs)


@pytest.mark.parametrize("component", TORCH_COMPONENTS)
def test_the_torch_layer_depends_on_the_torch_pin_only(component: str) -> None:
    """torch installs before constraints.txt is copied, at its pin passed by images.mk (and the
    same default), so that pinning another package does not reinstall torch."""
    assert parse(component).args["TORCH_VERSION"] == constraints()["torch"]
    assert "--build-arg TORCH_VERSION=$(TORCH_VERSION)" in IMAGES_MK
    assert re.search(r"^TORCH_VERSION := \$\(shell sed -n 's/\^torch==//p' images/constraints.txt\)$", IMAGES_MK, re.M)
    ins = instructions(component)
    torch = next(n for n, i in enumerate(ins) if i["instruction"] == "RUN" and "TORCH_VERSION" in i["value"])
    assert not any(i["instruction"] == "COPY" for i in ins[:torch]), f"{component}: a COPY before torch's layer"


def test_train_and_gguf_share_the_torch_layer() -> None:
    """Identical instructions up to torch's install, so the engine stores that layer once."""
    def through_torch(component: str) -> list[tuple[str, str]]:
        ins = [(i["instruction"], i["value"]) for i in instructions(component)]
        end = next(n for n, (kind, value) in enumerate(ins) if kind == "RUN" and "TORCH_INDEX_URL" in value)
        return ins[: end + 1]
    assert through_torch("train") == through_torch("gguf")


@pytest.mark.parametrize("component", COMPONENTS)
def test_dependencies_are_installed_before_the_code_is_copied(component: str) -> None:
    """A code edit rebuilds the last layers only: the dependency layer sees pyproject and the
    constraints, not jobs/ or the README; the code layer installs with --no-deps."""
    ins = instructions(component)
    copies = [n for n, i in enumerate(ins) if i["instruction"] == "COPY" and re.match(r"(jobs|controller|README\.md) ", i["value"])]
    installs = [n for n, i in enumerate(ins) if i["instruction"] == "RUN" and EXTRA_SPEC.search(i["value"])]
    assert copies and len(installs) == 2, f"{component}: expected a dependency and a code install"
    assert installs[0] < min(copies) < installs[1], f"{component}: the code is copied before the dependencies install"
    assert "--no-deps" in ins[installs[1]]["value"] and "--no-deps" not in ins[installs[0]]["value"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_no_uv_in_the_images(component: str) -> None:
    text = "\n".join(i["value"] for i in instructions(component))
    assert not re.search(r"\buv\b", text), f"{component}: uv would stay in the image"


@pytest.mark.parametrize("component", COMPONENTS)
def test_runs_as_a_numeric_non_root_user(component: str) -> None:
    last = stages(parse(component))[-1]
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


def test_gguf_takes_llama_cpp_from_the_prebuilt_wheel_only() -> None:
    """llama-cpp-python compiles for 15-20 minutes: the image installs the wheel `make llamacpp`
    built (for any x86-64 CPU) from the context's wheels/, and never an sdist."""
    parser = parse("gguf")
    text = "\n".join(i["value"] for i in parser.structure)
    assert "cmake" not in text and "build-essential" not in text, "the gguf build must not compile llama.cpp"
    install = next(i["value"] for i in parser.structure if i["instruction"] == "RUN" and ".[gguf,llamacpp]" in i["value"])
    assert "--only-binary llama-cpp-python" in install and "--find-links wheels" in install
    assert any(i["instruction"] == "COPY" and i["value"].split()[0] == "wheels" for i in parser.structure)
    assert "-DGGML_NATIVE=OFF" in (ROOT / "jobs/gguf/llamacpp.mk").read_text(), (
        "the wheel must not be tuned to the build machine's CPU"
    )
    assert re.search(r"cp \$\(LLAMA_CPP_WHEEL\) \$\(IMAGE_CONTEXT\)/wheels/", IMAGES_MK), "image-context copies the wheel"


def test_gguf_unpacks_the_converter_from_the_checksummed_sdist() -> None:
    parser = parse("gguf")
    runs = [i["value"] for i in parser.structure if i["instruction"] == "RUN"]
    assert any("python install.py" in r and '--sha256 "${LLAMA_CPP_SDIST_SHA256}"' in r for r in runs), (
        "the converter is unpacked by jobs/gguf/install.py from the sdist, checked against its sha256"
    )
    assert any(i["instruction"] == "COPY" and i["value"].startswith("jobs/gguf/install.py") for i in parser.structure)
    assert parser.envs.get("LLAMA_CPP_DIR") == "/opt/llama.cpp", "the gguf step finds the converter through LLAMA_CPP_DIR"


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


def test_qlora_gets_bitsandbytes_on_cuda_only() -> None:
    """spec.steps.train.quantization: 4bit loads the base with bitsandbytes, which needs CUDA."""
    assert re.fullmatch(r"bitsandbytes==\d+\.\d+\.\d+", parse("train").args["GPU_PACKAGES"])
    assert build_args("VARIANT_ARGS_cpu")["GPU_PACKAGES"] == ""
    runs = [i["value"] for i in instructions("train") if i["instruction"] == "RUN"]
    assert any("$GPU_PACKAGES" in r and ".[train]" in r and "--no-deps" not in r for r in runs)
