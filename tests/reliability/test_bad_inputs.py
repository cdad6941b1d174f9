"""The bad-input corpus (tests/data/bad/): every file is refused, with a message that names the
field or the line, and no process dies with a traceback.

Manifests carry their expectation in their first lines:

    # expect: <text the error must contain>
    # crd: reject <field path> | controller | apiserver | unparsable

`reject`: the CRD's openAPIV3Schema refuses the object at that path (as `kubectl apply` with
its default strict field validation would). `controller`: the schema cannot say it (a rule across
fields, a check in code); the controller's validation, `run_from_obj` on the spec it reads,
refuses it. `apiserver`: apiVersion, kind and metadata, which the API server checks itself.
`unparsable`: not a YAML mapping at all.

Datasets have a sidecar `<file>.expect` with the text the error must contain (the line or
the column it names), and optionally `<file>.source.json`, the spec's data source for a pack
reader (format, columns) when the file is not an OpenAI chat JSONL.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.common.errors import InvalidSpec
from jobs.common.names import API_VERSION, KIND
from jobs.common.specio import parse_document, read_text, run_from_obj

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "bad"
MANIFESTS = sorted((BAD / "manifests").glob("*.yaml"))
CRD = REPO / "crds" / "finetune.dev_finetuneruns.yaml"


def header(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_bytes().decode("ascii", errors="replace").splitlines()[:3]:
        if m := re.match(r"^# (expect|crd): (.*)$", line):
            out[m.group(1)] = m.group(2)
    return out


def ftctl(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli.main", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


# --- the CRD schema as a JSON-schema validator ---------------------------------------------


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI v3.0 (structural, Kubernetes flavour) -> JSON Schema draft 4.

    Draft 4 shares OpenAPI 3.0's boolean exclusiveMinimum/Maximum. `nullable` becomes a null
    type (and a null enum member). Objects with declared properties refuse undeclared ones,
    which is what the API server does under strict field validation (`kubectl apply`'s default);
    without it, unknown fields are pruned silently and the controller never sees them.
    """
    if isinstance(node, list):
        return [_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("nullable", "default", "description") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = _to_jsonschema(value)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node and "additionalProperties" not in node and not node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validator():
    import jsonschema

    crd = yaml.safe_load(CRD.read_text())
    schema = _to_jsonschema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def crd_error_paths(validator, obj: dict) -> set[str]:
    """The field paths the schema refuses. Never str() an error: its instance may be huge."""
    paths = set()
    for err in validator.iter_errors(obj):
        base = _dotted(err.absolute_path)
        if err.validator == "required":
            names = [n for n in err.validator_value if n not in err.instance]
        elif err.validator == "additionalProperties":
            names = [n for n in err.instance if n not in err.schema.get("properties", {})]
        else:
            paths.add(base)
            continue
        paths.update(f"{base}.{n}" if base else n for n in names)
    return paths


def as_the_controller_reads(obj: dict) -> dict:
    """What controller/reconcile.py validates: the spec, under the run's name and namespace."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace", "default")},
        "spec": obj.get("spec"),
    }


# --- manifests -------------------------------------------------------------------------------


def test_corpus_size_and_headers():
    assert len(MANIFESTS) >= 50
    for path in MANIFESTS:
        h = header(path)
        assert h.get("expect"), f"{path.name}: no '# expect:' line"
        kind = h.get("crd", "").split(" ", 1)[0]
        assert kind in ("reject", "controller", "apiserver", "unparsable"), f"{path.name}: bad '# crd:' line"


def test_the_validator_accepts_a_good_manifest(crd_validator):
    """The baseline: the corpus' errors come from its mistakes, not from a broken checker."""
    good = REPO / "examples" / "quickstart.yaml"
    obj = parse_document(good.read_text(), str(good))
    assert crd_error_paths(crd_validator, obj) == set()
    run_from_obj(obj)
    done = ftctl("validate", str(good))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_ftctl_validate_refuses(path: Path, capsys):
    """`ftctl validate FILE` exits 2 and names the field or line (run in-process per file)."""
    from jobs.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["validate", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert header(path)["expect"] in err


def test_ftctl_validate_subprocess_refuses_all_without_traceback():
    """One real `ftctl validate` process over the whole corpus: exit 2, a block per file."""
    done = ftctl("validate", *[str(p.relative_to(REPO)) for p in MANIFESTS])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert done.stdout == ""
    blocks = dict(re.findall(r"^(\S+): invalid\n((?:  .*\n?)+)", done.stderr, flags=re.M))
    for path in MANIFESTS:
        rel = str(path.relative_to(REPO))
        assert rel in blocks, f"{rel}: no error block"
        assert header(path)["expect"] in blocks[rel], rel


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_crd_schema_or_controller_refuses(path: Path, crd_validator):
    kind, _, where = header(path)["crd"].partition(" ")
    expect = header(path)["expect"]
    try:
        obj = parse_document(read_text(path), str(path))
    except InvalidSpec:
        obj = None
    if kind == "unparsable":
        assert not isinstance(obj, dict), "parses as a mapping: it is not 'unparsable'"
        return
    assert isinstance(obj, dict)
    if kind == "reject":
        paths = crd_error_paths(crd_validator, obj)
        assert where in paths, f"the CRD schema does not refuse {where}; it refuses {sorted(paths)}"
    elif kind == "controller":
        with pytest.raises(InvalidSpec) as exc:
            run_from_obj(as_the_controller_reads(obj))
        assert expect in exc.value.message
    else:  # apiserver: apiVersion, kind and metadata, which the API server checks itself
        assert re.match(r"^(apiVersion|kind|metadata)\b", expect), "an 'apiserver' case is about apiVersion/kind/metadata"
        with pytest.raises(InvalidSpec) as exc:
            run_from_obj(obj)
        assert expect in exc.value.message


# --- datasets --------------------------------------------------------------------------------

DATASETS = sorted(p for p in (BAD / "datasets").iterdir() if not p.name.endswith((".expect", ".source.json")))
CHAT_FILES = [p for p in DATASETS if not p.with_name(p.name + ".source.json").exists()]
PACK_FILES = [p for p in DATASETS if p.with_name(p.name + ".source.json").exists()]


def expected(path: Path) -> str:
    return path.with_name(path.name + ".expect").read_text(encoding="utf-8").strip()


def _clean_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/tmp", **extra}


def _pack(path: Path, work: Path) -> tuple[subprocess.CompletedProcess, Path]:
    source = json.loads(path.with_name(path.name + ".source.json").read_text())
    spec = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "bad-data", "namespace": "corpus"},
        "spec": {
            "model": {"gguf": "models/base.gguf"},
            "data": {"sources": [{"path": str(path), **{k: v for k, v in source.items() if k != "pack"}}]},
            "steps": {"pack": source.get("pack", {})},
        },
    }
    work.mkdir(parents=True)
    store = work / "store"
    done = subprocess.run(
        [sys.executable, "-m", "jobs.pack"],
        cwd=REPO,
        env=_clean_env(FT_SPEC=json.dumps(spec), FT_STORE_URI=store.as_uri(), FT_SCRATCH=str(work / "scratch")),
        capture_output=True, text=True, timeout=300,
    )
    return done, store


@pytest.fixture(scope="module")
def dataset_runs(tmp_path_factory):
    """Every pack-reader dataset through a real `python -m jobs.pack`, a few at a time."""
    work = tmp_path_factory.mktemp("bad-datasets")
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {p: pool.submit(_pack, p, work / p.name) for p in PACK_FILES}
        return {p: f.result() for p, f in runs.items()}


def test_dataset_corpus_size():
    assert len(DATASETS) >= 30
    assert all(expected(p) for p in DATASETS)
    assert CHAT_FILES and PACK_FILES


@pytest.mark.parametrize("path", CHAT_FILES, ids=lambda p: p.name)
def test_validate_data_refuses(path: Path, capsys, monkeypatch):
    """`ftctl validate-data FILE` (in-process: any exception but SystemExit fails the test)."""
    from jobs.cli.main import main

    monkeypatch.chdir(path.parent)
    with pytest.raises(SystemExit) as exc:
        main(["validate-data", path.name])
    out = capsys.readouterr()
    assert exc.value.code == 2, out.out + out.err
    assert expected(path) in out.out


def test_validate_data_subprocess_names_the_line():
    """The same as a real process, on one file: exit 2, `FILE:LINE: kind`, no traceback."""
    path = BAD / "datasets" / "chat-malformed-json.jsonl"
    done = ftctl("validate-data", str(path))
    assert done.returncode == 2
    assert f"{path}:6: invalid_json" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.name)
def test_pack_step_refuses(path: Path, dataset_runs):
    """`python -m jobs.pack` on the file: exit 2, one error naming the line or column, and
    nothing written to the store (no manifest, no split files)."""
    done, store = dataset_runs[path]
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"type": "error"')]
    assert len(errors) == 1, done.stdout
    assert errors[0]["code"] in ("InvalidData", "MissingInput")
    assert expected(path) in errors[0]["message"]
    assert "Traceback" not in done.stdout + done.stderr
    written = [p for p in (store / "runs").rglob("*") if p.is_file()] if (store / "runs").exists() else []
    assert written == [], f"a refused input left files behind: {written}"
