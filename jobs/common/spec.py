"""The FineTuneRun spec: the one source of truth.

The CRD schema (crds/), `ftctl validate`, the controller and every step's typed
config come from these models. Fields are camelCase on the wire, as Kubernetes
users expect; unknown fields are errors everywhere.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from jobs.common.names import STEP_ORDER

# RFC 1123 label: what Kubernetes accepts for a Job name part, and what is safe in a store key.
# Patterns spell out ASCII classes: `\w` is Unicode in Python and ASCII in the API server's
# RE2, so it would let homoglyphs through `ftctl validate` that `kubectl apply` refuses.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Run names become Job names `<run>-<step>` (step names are at most 8 chars + dash), and Job
# names must stay within 63 characters so that their pods' labels are valid.
MAX_RUN_NAME = 50


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


# Env var names a Secret key may not take (see Endpoint.api_key_secret): the steps' own
# settings, the cloud SDKs', the interpreter's and the dynamic loader's, and proxies.
RESERVED_ENV_PREFIXES = ("FT_", "AWS_", "WANDB_", "HF_", "TRANSFORMERS_", "PYTHON", "LD_", "KUBERNETES_")
RESERVED_ENV = frozenset(
    {"PATH", "HOME", "TMPDIR", "BROWSER", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    | {p + "_PROXY" for p in ("HTTP", "HTTPS", "ALL", "NO")}
    | {p + "_proxy" for p in ("http", "https", "all", "no")}
)


class SecretKeyRef(Model):
    """A key in a Kubernetes Secret (or, locally, an environment variable of the same name)."""

    name: str = Field(pattern=DNS_LABEL, max_length=253, description="Secret name.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key within the Secret."
    )


class Metadata(Model):
    name: str = Field(pattern=DNS_LABEL, max_length=MAX_RUN_NAME)
    namespace: str = Field(default="default", pattern=DNS_LABEL, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# --- model -----------------------------------------------------------------------------------


class BaseModelSource(Model):
    """Where the base model comes from. Exactly one of the source fields is set."""

    hf: str | None = Field(
        default=None, description="A Hugging Face model directory: local path or s3:// URI."
    )
    gguf: str | None = Field(
        default=None,
        description="A GGUF file: local path, s3:// URI, or package://<dist>/<file> for a "
        "model shipped in a Python package. It is dequantized once into an HF directory.",
    )
    hub: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*(/[-_.A-Za-z0-9]+)?$",
        description="A Hugging Face hub id; needs a reachable hub.",
    )
    revision: str | None = Field(default=None, max_length=128)
    name: str | None = Field(
        default=None, max_length=128, description="A display name used in reports."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> BaseModelSource:
        given = [f for f in ("hf", "gguf", "hub") if getattr(self, f)]
        if len(given) != 1:
            raise ValueError("set exactly one of hf, gguf or hub")
        return self

    @property
    def kind(self) -> str:
        return next(f for f in ("hf", "gguf", "hub") if getattr(self, f))

    @property
    def location(self) -> str:
        return getattr(self, self.kind)


# --- data ------------------------------------------------------------------------------------

InputFormat = Literal["openai_chat", "alpaca", "sharegpt", "csv", "json", "eval_results", "dpo"]
# The roles a chatFields.roles mapping may name, per format (sharegpt's function_call is a call turn).
CHAT_ROLES = {
    "openai_chat": ("system", "user", "assistant", "tool"),
    "sharegpt": ("system", "user", "assistant", "tool", "function_call"),
}


class ChatFields(Model):
    """Names a chat file uses instead of the format's own (Axolotl's field_messages and
    message_property_mappings, LLaMA-Factory's columns and tags)."""

    messages: str | None = Field(default=None, max_length=200, description="Key of the turn list (messages / conversations).")
    role: str | None = Field(default=None, max_length=200, description="Key of a turn's role (role / from).")
    content: str | None = Field(default=None, max_length=200, description="Key of a turn's text (content / value).")
    system: str | None = Field(default=None, max_length=200, description="Top-level key of the system prompt.")
    tools: str | None = Field(default=None, max_length=200, description="Top-level key of the tool list.")
    roles: dict[str, list[str]] = Field(
        default_factory=dict, description="role -> the names the file uses for it, e.g. {user: [human, person]}."
    )


class DataSource(Model):
    path: str | None = Field(
        default=None,
        description="File path (relative to the manifest), file:// or s3:// URI.",
        max_length=4096,
    )
    from_step: Literal["eval"] | None = Field(
        default=None, description="Read another step's output (eval results) instead of a file."
    )
    format: InputFormat | None = Field(
        default=None, description="How the file is read; omitted, it is detected from the rows (see report.json)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column mapping for csv/json: role -> column, roles are "
        "instruction, input, output, text, label, system.",
    )
    chat_fields: ChatFields | None = Field(
        default=None, description="Key and role names of an openai_chat or sharegpt file whose names differ."
    )
    split: Literal["train", "val", "test"] | None = Field(
        default=None,
        description="Put every row of this source in that split (a fixed validation or test file); "
        "unset, rows are split by steps.pack.split.",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if bool(self.path) == bool(self.from_step):
            raise ValueError("set exactly one of path or fromStep")
        if self.from_step and self.format not in (None, "eval_results"):
            raise ValueError("fromStep: eval needs format: eval_results")
        if self.chat_fields and self.format not in CHAT_ROLES:
            raise ValueError(f"chatFields needs format {' or '.join(CHAT_ROLES)}")
        if self.chat_fields:
            bad_roles = set(self.chat_fields.roles) - set(CHAT_ROLES[self.format])
            if bad_roles:
                raise ValueError(
                    f"chatFields.roles: {sorted(bad_roles)} are not {self.format} roles "
                    f"({', '.join(CHAT_ROLES[self.format])})"
                )
        bad = set(self.columns) - {"instruction", "input", "output", "text", "label", "system"}
        if bad:
            raise ValueError(f"unknown column role(s) {sorted(bad)}")
        return self


class Data(Model):
    sources: list[DataSource] = Field(min_length=1, max_length=64)


# --- steps -----------------------------------------------------------------------------------

CheckKind = Literal["exact", "contains", "regex", "json_valid", "any_of", "judge"]


class Check(Model):
    # exact, contains and any_of without value/values compare against the item's expected
    # answer (any_of adds its synonyms), so one check list serves a whole eval set or test split.
    # judge asks the step's judge model whether the answer meets `rubric`.
    type: CheckKind
    value: str | None = Field(default=None, max_length=10_000)
    values: list[str] = Field(default_factory=list)
    ignore_case: bool = True
    rubric: str | None = Field(
        default=None, max_length=10_000, description="judge: what a passing answer does, for the judge model."
    )

    @model_validator(mode="after")
    def _rubric(self) -> Check:
        if self.type == "judge" and not (self.rubric or "").strip():
            raise ValueError("a judge check needs rubric")
        if self.type != "judge" and self.rubric is not None:
            raise ValueError("rubric applies only to type: judge")
        return self

    @model_validator(mode="after")
    def _compiles(self) -> Check:
        if self.type == "regex":
            if not self.value:
                raise ValueError("regex check needs value")
            try:
                re.compile(self.value)
            except re.error as err:
                raise ValueError(f"regex does not compile: {err}") from None
        return self


class Endpoint(Model):
    """An OpenAI-compatible HTTP endpoint."""

    base_url: str = Field(max_length=2048)
    model: str = Field(max_length=256)
    api_key_secret: SecretKeyRef | None = None
    allow_insecure_http: bool = Field(
        default=False, description="Allow plain http to a non-loopback host."
    )

    @field_validator("base_url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
            raise ValueError("must be an http(s) URL")
        if "@" in v.split("/", 3)[2]:
            raise ValueError("credentials in the URL are not allowed; use apiKeySecret")
        return v.rstrip("/")

    @field_validator("api_key_secret")
    @classmethod
    def _own_env_name(cls, v: SecretKeyRef | None) -> SecretKeyRef | None:
        # In a pod the key becomes an env var of the same name: it must not replace one the
        # step runs with (FT_STORE_URI, AWS_*, PYTHONPATH, LD_PRELOAD, proxies, ...).
        if v is not None and (v.key in RESERVED_ENV or v.key.startswith(RESERVED_ENV_PREFIXES)):
            raise ValueError(
                f"key {v.key!r} would replace an environment variable of the step; "
                "name the Secret's key like OPENAI_API_KEY"
            )
        return v

    @model_validator(mode="after")
    def _tls(self) -> Endpoint:
        from jobs.common.urls import is_loopback_http

        if self.base_url.startswith("http://") and not (
            self.allow_insecure_http or is_loopback_http(self.base_url)
        ):
            raise ValueError(
                "plain http is allowed only for loopback hosts; use https or set allowInsecureHttp"
            )
        return self


class Backend(Model):
    """Which model answers: exactly one of endpoint, asgi, hf (the spec's base model), gguf."""

    endpoint: Endpoint | None = None
    asgi: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][_.A-Za-z0-9]*:[A-Za-z_][_A-Za-z0-9]*$",
        description="An ASGI app called in-process, as package.module:attr.",
    )
    base_model: bool = Field(default=False, description="The spec's base model via transformers.")
    gguf: str | None = Field(default=None, description="A GGUF file run through llama.cpp.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Backend:
        given = [self.endpoint is not None, bool(self.asgi), self.base_model, bool(self.gguf)]
        if sum(given) != 1:
            raise ValueError("set exactly one of endpoint, asgi, baseModel or gguf")
        return self


class Decoding(Model):
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_new_tokens: int = Field(default=128, gt=0, le=32_768)
    top_p: float = Field(default=1.0, gt=0, le=1)


class Judge(Model):
    """The model that grades `type: judge` checks: an OpenAI-compatible endpoint (its key only by
    apiKeySecret) or a local backend. Its verdicts are cached like the eval step's answers."""

    backend: Backend
    decoding: Decoding = Field(default_factory=Decoding)
    cache: bool = True
    concurrency: int = Field(default=4, ge=1, le=256)
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    retries: int = Field(default=3, ge=0, le=20)


def _judge_for_checks(checks: list[Check], judge: Judge | None) -> None:
    if judge is None and any(c.type == "judge" for c in checks):
        raise ValueError("checks: a judge check needs judge: (the model that grades it)")


class EvalStep(Model):
    items: str = Field(description="Eval set JSONL: path, file:// or s3:// URI.", max_length=4096)
    backend: Backend
    decoding: Decoding = Field(default_factory=Decoding)
    checks: list[Check] = Field(
        default_factory=list, description="Checks applied to items that name none."
    )
    synonyms: str | None = Field(default=None, description="Synonyms JSON file.")
    synonyms_override: str | None = Field(
        default=None, description="Local override file merged over synonyms."
    )
    mode: str = Field(default="eval", max_length=64, description="Eval mode; part of the cache key.")
    cache: bool = True
    concurrency: int = Field(default=4, ge=1, le=256)
    timeout_seconds: float = Field(default=60, gt=0, le=3600)
    retries: int = Field(default=3, ge=0, le=20)
    allow_partial: bool = False
    judge: Judge | None = Field(default=None, description="Grades judge checks, the step's and the items' own.")

    @model_validator(mode="after")
    def _judged(self) -> EvalStep:
        _judge_for_checks(self.checks, self.judge)
        refs = [e.api_key_secret for e in (self.backend.endpoint, self.judge and self.judge.backend.endpoint) if e]
        if len(refs) == 2 and refs[0] and refs[1] and refs[0].key == refs[1].key and refs[0] != refs[1]:
            raise ValueError(
                f"judge.backend.endpoint.apiKeySecret: key {refs[1].key!r} is the endpoint's key name from another "
                "Secret; both become one environment variable, so name the keys apart"
            )
        return self


class Split(Model):
    train: float = Field(default=0.8, gt=0, lt=1)
    val: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("train + val + test must be 1")
        return self


class PackStep(Model):
    format: Literal["openai_chat", "alpaca", "classification", "dpo"] = "openai_chat"
    split: Split = Field(default_factory=Split)
    seed: int = Field(default=42, ge=0)
    min_output_tokens: int = Field(
        default=3, ge=0, description="Drop free-text answers with fewer cl100k_base tokens (labels are exempt)."
    )
    dedupe: bool = Field(
        default=True, description="Drop duplicate instructions; false also turns off near-duplicate removal."
    )
    near_dup_threshold: float | None = Field(
        default=0.8, gt=0, le=1, description="Token-Jaccard level at which rows are near-duplicates; null disables."
    )
    curate: Literal["passed", "expected"] = Field(
        default="passed",
        description="From eval results: keep items whose checks passed (their response), or "
        "use every item's expected answer.",
    )
    system_prompt: str | None = Field(default=None, max_length=10_000)
    max_tokens: int = Field(default=4096, gt=0, le=1_000_000)


class Lora(Model):
    r: int = Field(default=16, gt=0, le=1024)
    alpha: int = Field(default=32, gt=0, le=4096)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


IMPORT_PATH = r"^[A-Za-z_][_.A-Za-z0-9]*:[A-Za-z_][_A-Za-z0-9]*$"


class GrpoReward(Model):
    """One reward term: an eval check (1 when it passes, else 0) or a function by import path."""

    check: Check | None = None
    function: str | None = Field(
        default=None,
        pattern=IMPORT_PATH,
        description="package.module:attr, called as TRL reward functions are: (prompts, completions, **columns).",
    )
    weight: float = Field(default=1.0, ge=-100, le=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> GrpoReward:
        if (self.check is None) == (self.function is None):
            raise ValueError("set exactly one of check or function")
        if self.check is not None and self.check.type == "judge":
            raise ValueError("a judge check cannot reward GRPO (no judge model runs in training); use a function")
        return self


class GrpoFormat(Model):
    """A format reward: the completion matches this regex (anchor it with ^...$ for the whole answer)."""

    regex: str = Field(max_length=10_000)
    weight: float = Field(default=0.2, ge=-100, le=100)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        Check(type="regex", value=v)
        return v


class Grpo(Model):
    num_generations: int = Field(default=4, ge=2, le=256, description="Completions sampled per prompt.")
    max_completion_length: int = Field(default=64, gt=0, le=32_768)
    temperature: float = Field(default=1.0, gt=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    kl_beta: float = Field(default=0.0, ge=0, le=10, description="KL coefficient; 0 loads no reference model.")
    rewards: list[GrpoReward] = Field(
        default_factory=list,
        max_length=32,
        description="Reward terms; empty: the evaluate (or eval) step's checks, else the expected answer (any_of).",
    )
    format: GrpoFormat | None = None


class Distributed(Model):
    """Training over several processes: torchrun in each pod, an Indexed Job of `nodes` pods."""

    nodes: int = Field(default=1, ge=1, le=256, description="Pods of the train step; over 1, an Indexed Job with a headless Service.")
    procs_per_node: int = Field(default=1, ge=1, le=64, description="Worker processes per pod (torchrun's --nproc-per-node); one per GPU.")
    strategy: Literal["ddp", "fsdp", "zero3"] = Field(
        default="ddp", description="ddp: a full replica per process; fsdp: FSDP2 shards; zero3: DeepSpeed ZeRO-3 through accelerate."
    )
    rendezvous_timeout_seconds: int = Field(default=300, ge=5, le=3600, description="Pre-flight: every rank must join within this.")
    port: int = Field(default=29500, ge=1024, le=65535, description="The master's rendezvous port.")

    @model_validator(mode="after")
    def _shipped_strategy(self) -> Distributed:
        if self.strategy == "zero3":
            raise ValueError(
                "strategy: zero3 runs DeepSpeed, which the train image does not ship; fsdp (FSDP2) shards "
                "parameters, gradients and optimizer states across the processes as ZeRO-3 does"
            )
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


class TrainStep(Model):
    method: Literal["sft", "dpo", "classification", "grpo", "kto", "orpo"] = "sft"
    lora: Lora | None = Field(
        default_factory=Lora, description="LoRA settings; null for a full fine-tune."
    )
    quantization: Literal["none", "4bit"] = "none"
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    epochs: float = Field(default=3, gt=0, le=1000)
    max_steps: int | None = Field(default=None, gt=0, le=10_000_000)
    batch_size: int = Field(default=4, gt=0, le=4096)
    gradient_accumulation: int = Field(default=1, gt=0, le=4096)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1, description="Warmup as a share of the total steps.")
    warmup_steps: int | None = Field(default=None, ge=0, le=10_000_000, description="Warmup in steps; instead of warmupRatio.")
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
    ] = Field(default="linear", description="Learning-rate schedule after the warmup (transformers' scheduler types).")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay (not on biases and norms).")
    max_length: int = Field(default=1024, gt=0, le=1_048_576)
    packing: bool = True
    assistant_only_loss: bool = True
    seed: int = Field(default=42, ge=0)
    checkpoint_every: int = Field(default=50, gt=0, description="Save a checkpoint every N steps.")
    early_stopping_patience: int = Field(default=3, ge=0)
    beta: float = Field(default=0.1, gt=0, description="DPO and KTO beta; ORPO's lambda.")
    eval_every: int | None = Field(default=None, gt=0)
    grpo: Grpo | None = Field(default=None, description="GRPO sampling and rewards (method: grpo).")
    distributed: Distributed = Field(default_factory=Distributed, description="Processes and pods; the default is one process.")

    @model_validator(mode="after")
    def _one_warmup(self) -> TrainStep:
        if self.warmup_steps is not None and self.warmup_ratio:
            raise ValueError("set warmupSteps or warmupRatio, not both")
        return self

    @model_validator(mode="after")
    def _quantized_needs_adapters(self) -> TrainStep:
        # 4-bit base weights are frozen: only LoRA adapters can train over them. Under fsdp the
        # train step stores them as bfloat16 (bitsandbytes' bnb_4bit_quant_storage for FSDP-QLoRA),
        # so FSDP shards them like the other weights; under ddp every process holds them whole.
        if self.quantization == "4bit" and self.lora is None:
            raise ValueError("quantization: 4bit (QLoRA) trains LoRA adapters over frozen 4-bit weights; set lora")
        return self

    @model_validator(mode="after")
    def _grpo_settings(self) -> TrainStep:
        if self.grpo is not None and self.method != "grpo":
            raise ValueError("grpo: settings only apply to method: grpo")
        n = (self.grpo or Grpo()).num_generations
        if self.method == "grpo" and (self.batch_size * self.gradient_accumulation) % n:
            raise ValueError(
                f"grpo.numGenerations ({n}) must divide batchSize x gradientAccumulation "
                f"({self.batch_size} x {self.gradient_accumulation}): each batch holds whole groups of completions"
            )
        return self


class EvaluateStep(Model):
    decoding: Decoding = Field(default_factory=Decoding)
    checks: list[Check] = Field(default_factory=list)
    max_items: int | None = Field(default=None, gt=0)
    gate: str | None = Field(
        default=None,
        max_length=512,
        description="Promotion gate, e.g. 'tunedPassRate >= basePassRate + 0.05'.",
    )
    gate_confidence: float | None = Field(
        default=None,
        ge=0.5,
        lt=1,
        description="Each gate clause must hold over its paired-bootstrap interval at this level (for >=: the "
        "lower bound clears the threshold); the report's intervals use it too (else 0.95).",
    )
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples of the test split.")
    judge: Judge | None = Field(default=None, description="Grades the judge checks.")

    @model_validator(mode="after")
    def _judged(self) -> EvaluateStep:
        _judge_for_checks(self.checks, self.judge)
        return self

    @field_validator("gate")
    @classmethod
    def _gate_parses(cls, v: str | None) -> str | None:
        if v is not None:
            from jobs.common.gate import parse_gate

            parse_gate(v)
        return v

    @model_validator(mode="after")
    def _confident_gate_has_intervals(self) -> EvaluateStep:
        if self.gate and self.gate_confidence is not None:
            from jobs.common.gate import check_confidence

            try:
                check_confidence(self.gate)
            except ValueError as err:
                raise ValueError(f"gateConfidence: {err}") from None
        return self


def _quant_names() -> set[str]:
    from jobs.common.quant import QUANT_TYPES

    return set(QUANT_TYPES)


class GgufStep(Model):
    quantizations: list[str] = Field(default_factory=lambda: ["Q4_K_M", "Q8_0"], min_length=1)
    merge_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    model_name: str | None = Field(default=None, pattern=r"^[a-z0-9][-a-z0-9_.:]*$", max_length=128)
    system_prompt: str | None = Field(default=None, max_length=10_000)
    num_ctx: int = Field(default=2048, gt=0, le=1_048_576)
    smoke_prompts: int = Field(default=2, ge=0, le=20)
    score: bool = Field(
        default=True,
        description="With steps.evaluate: score every quantization on the test split with llama.cpp (evaluate's "
        "checks, judge and decoding), so the gate may name q4_k_mPassRate and the like.",
    )

    @field_validator("quantizations")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = _quant_names()
        bad = [q for q in v if q not in known]
        if bad:
            raise ValueError(f"unknown quantization {bad}; valid: {', '.join(sorted(known))}")
        return v


class Steps(Model):
    eval: EvalStep | None = None
    pack: PackStep | None = None
    train: TrainStep | None = None
    evaluate: EvaluateStep | None = None
    gguf: GgufStep | None = None

    def enabled(self) -> list[str]:
        return [s for s in STEP_ORDER if getattr(self, s) is not None]


# --- platform --------------------------------------------------------------------------------


# Named apart from jobs.common.store.Store, the open store this location names.
class StoreLocation(Model):
    """Where the run's artifacts go."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        description="file:///path or s3://bucket/prefix; defaults to the controller's or "
        "ftctl's setting.",
    )
    secret_ref: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_ENDPOINT_URL.",
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from jobs.common.errors import InvalidKey
        from jobs.common.keys import validate_store_uri

        try:
            validate_store_uri(v)
        except InvalidKey as err:
            raise ValueError(err.message) from None
        return v


Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$", max_length=32)]


class StepResources(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: int | None = Field(default=None, ge=0, le=64, alias="nvidia.com/gpu")
    gpu_memory: Quantity | None = Field(
        default=None,
        description="Memory of one GPU on the nodes the step runs on, e.g. 80Gi: not a request (GPUs come "
        "whole); ftctl validate warns when the train step's estimate (ftctl estimate) exceeds it.",
    )


class Resources(Model):
    eval: StepResources | None = None
    pack: StepResources | None = None
    train: StepResources | None = None
    evaluate: StepResources | None = None
    gguf: StepResources | None = None


class Wandb(Model):
    project: str = Field(max_length=128, pattern=r"^[-_.A-Za-z0-9]+$")
    run_name: str | None = Field(
        default=None,
        max_length=128,
        description="Run name; placeholders such as {learning_rate}, {lora_r}, {model_name}, "
        "{run_name} are filled from the spec.",
    )
    entity: str | None = Field(default=None, max_length=128)
    mode: Literal["offline", "online", "disabled"] = "offline"
    api_key_secret: SecretKeyRef | None = None

    @field_validator("run_name")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        from jobs.common.runname import check_template

        return v if v is None else check_template(v)


class Tracking(Model):
    wandb: Wandb | None = None


class Toleration(Model):
    key: str | None = Field(default=None, max_length=253)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Scheduling(Model):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)


class JobPolicy(Model):
    backoff_limit: int = Field(default=2, ge=0, le=20)
    active_deadline_seconds: int | None = Field(default=None, gt=0, le=30 * 86400)
    ttl_seconds_after_finished: int | None = Field(default=86400, ge=0, le=30 * 86400)
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=1, le=3600,
        description="Seconds a step's pod has after SIGTERM (node drain, preemption) before it is killed: the "
        "train step saves a checkpoint in them. Unset: the cluster's default (30).",
    )


class FineTuneRunSpec(Model):
    model: BaseModelSource
    data: Data | None = None
    steps: Steps
    store: StoreLocation = Field(default_factory=StoreLocation)
    resources: Resources = Field(default_factory=Resources)
    tracking: Tracking = Field(default_factory=Tracking)
    queue: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63, description="Kueue LocalQueue.")
    scheduling: Scheduling = Field(default_factory=Scheduling)
    job: JobPolicy = Field(default_factory=JobPolicy)
    suspend: bool = Field(default=False, description="Stop the current step; false resumes.")
    cleanup: Literal["keepArtifacts", "deleteArtifacts"] = "keepArtifacts"

    @model_validator(mode="after")
    def _quantized_gate(self) -> FineTuneRunSpec:
        """A gate naming a quantization's metric needs the gguf step to make and score that quantization."""
        from jobs.common.gate import gate_terms, quant_term

        evaluate, gguf = self.steps.evaluate, self.steps.gguf
        named = {q for t in (gate_terms(evaluate.gate) if evaluate and evaluate.gate else ()) if (q := quant_term(t))}
        if not named:
            return self
        quants = sorted({q for q, _ in named})
        if gguf is None or not gguf.score:
            raise ValueError(
                f"steps.evaluate.gate names {', '.join(quants)} metrics: enable steps.gguf with score: true"
            )
        missing = [q for q in quants if q not in gguf.quantizations]
        if missing:
            raise ValueError(
                f"steps.evaluate.gate names {', '.join(missing)}, which steps.gguf.quantizations "
                f"({', '.join(gguf.quantizations)}) does not make"
            )
        if evaluate.gate_confidence is not None:
            raise ValueError(
                "steps.evaluate.gateConfidence: clauses naming a quantization are compared on their values, "
                "with no interval; drop gateConfidence or those clauses"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> FineTuneRunSpec:
        enabled = self.steps.enabled()
        if not enabled:
            raise ValueError("steps: enable at least one step")
        needs_data = "pack" in enabled
        if needs_data and self.data is None:
            raise ValueError("data: the pack step needs data.sources")
        if self.data:
            for i, src in enumerate(self.data.sources):
                if src.from_step == "eval" and "eval" not in enabled:
                    raise ValueError(f"data.sources[{i}].fromStep: eval is not enabled")
        if "train" in enabled and "pack" not in enabled:
            raise ValueError("steps.train needs steps.pack (train reads pack's splits)")
        if "evaluate" in enabled and "train" not in enabled:
            raise ValueError("steps.evaluate needs steps.train")
        if "gguf" in enabled and "train" not in enabled:
            raise ValueError("steps.gguf needs steps.train")
        train = self.steps.train
        if train and self.steps.pack:
            want = {"sft": ("openai_chat", "alpaca"), "dpo": ("dpo",), "classification": ("classification",),
                    "grpo": ("openai_chat", "alpaca"), "kto": ("dpo", "kto"), "orpo": ("dpo",)}
            if self.steps.pack.format not in want[train.method]:
                raise ValueError(
                    f"steps.pack.format: {train.method} training needs {' or '.join(want[train.method])}"
                )
        gate = self.steps.evaluate.gate if self.steps.evaluate else None
        if train and gate:
            from jobs.common.gate import check_measured
            from jobs.common.labels import labelled_sources

            labelled = self.steps.pack is not None and self.steps.pack.format in ("openai_chat", "alpaca") and (
                self.data is not None and labelled_sources(self.data.sources)
            )
            try:
                check_measured(gate, train.method, labelled)
            except ValueError as err:
                raise ValueError(f"steps.evaluate.gate: {err}") from None
        if train and train.method == "classification" and "gguf" in enabled:
            raise ValueError("steps.gguf: a classification model cannot be exported to GGUF")
        gpus = self.resources.train.gpu if self.resources.train else None
        if train and gpus and train.distributed.procs_per_node > gpus:
            raise ValueError(
                f"steps.train.distributed.procsPerNode: {train.distributed.procs_per_node} processes per pod, but "
                f"resources.train asks for {gpus} GPU(s) (nvidia.com/gpu): each process needs a GPU of its own"
            )
        return self


# A run's spec travels whole as one env var of each step's pod (the kernel refuses to start a
# container with a string over 128 KiB) and twice in the run's annotations (the controller's
# spec snapshot and kubectl's last-applied copy; 256 KiB for all of them together).
MAX_SPEC_BYTES = 64 * 1024


class FineTuneRun(Model):
    api_version: Literal["finetune.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FineTuneRun"]
    metadata: Metadata
    spec: FineTuneRunSpec

    @model_validator(mode="after")
    def _fits_a_pod(self) -> FineTuneRun:
        size = len(json.dumps(self.snapshot(), sort_keys=True))  # the longer of the forms it travels in
        if size > MAX_SPEC_BYTES:
            raise ValueError(
                f"the run is {size} bytes as JSON, over the {MAX_SPEC_BYTES}-byte limit: a step's pod "
                "carries it in one environment variable (128 KiB at most) and the API server keeps it "
                "twice in annotations (256 KiB in all); move long prompts, checks or column lists into files"
            )
        return self

    def snapshot(self) -> dict[str, Any]:
        """The JSON form a step receives and `spec.json` stores. Nulls stay: `lora: null` (a full
        fine-tune) or `nearDupThreshold: null` (off) must not fall back to their defaults."""
        return self.model_dump(mode="json", by_alias=True)

