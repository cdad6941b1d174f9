"""ftctl chat RUN: talk to a run's tuned model in the terminal.

    ftctl chat my-run                      # base model + the run's adapter (or its full model)
    ftctl chat my-run --base               # the base model alone, to compare
    ftctl chat my-run --gguf my-run-Q4_K_M.gguf   # a GGUF file (local, or from the run's gguf step)
    echo "What is the capital of France?" | ftctl chat my-run

RUN is a run name (its spec.json and outputs are read from the store) or the
run's YAML file. Each line is one user turn; the conversation is kept until
/reset. /exit, /quit or end of input ends the chat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a run's tuned model in the terminal")
    p.add_argument("run", help="run name, or the run's YAML file")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--store", help="store URI or path (default: FT_STORE_URI, spec.store.uri, ./ft-store)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--gguf", help="chat with this GGUF file (a path, or a file of the run's gguf step)")
    which.add_argument("--base", action="store_true", help="the base model without the run's adapter")
    p.add_argument("--system", help="a system prompt")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=run)


def load_run_and_store(target: str, namespace: str, store_override: str | None) -> tuple[Any, Any, Path]:
    """(FineTuneRun, Store, base_dir) from a YAML file or from the store's spec.json."""
    import json

    from jobs.cli.local_store import store_uri
    from jobs.common import keys
    from jobs.common.errors import MissingInput
    from jobs.common.spec import FineTuneRun
    from jobs.common.specio import load_run
    from jobs.common.store import open_store

    path = Path(target)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        ftr = load_run(path)
        return ftr, open_store(store_uri(ftr, store_override)), path.resolve().parent
    store = open_store(store_uri(None, store_override))
    raw = store.get_bytes(keys.join(keys.run_prefix(namespace, target), "spec.json"))
    if raw is None:
        raise MissingInput(
            f"no run {namespace}/{target} in {store.uri} (no spec.json); pass the run's YAML file or --store/--namespace"
        )
    return FineTuneRun.model_validate(json.loads(raw)), store, Path.cwd()


def gguf_file(ctx: Any, name: str) -> Path:
    from jobs.common.errors import MissingInput

    local = Path(name)
    if local.is_file():
        return local
    manifest = ctx.input_manifest("gguf")
    match = [f["path"] for f in manifest["files"] if Path(f["path"]).name == local.name]
    if not match:
        found = ", ".join(f["path"] for f in manifest["files"] if f["path"].endswith(".gguf"))
        raise MissingInput(f"--gguf: {name} is neither a local file nor an output of the run's gguf step ({found})")
    return ctx.input_dir("gguf", only=match[0]) / match[0]


def open_chat_backend(ctx: Any, args: argparse.Namespace) -> tuple[Any, str]:
    """The backend and a description of what answers."""
    from jobs.common.errors import InvalidInput

    if args.gguf:
        from jobs.common.backends.llamacpp import LlamaCppBackend

        path = gguf_file(ctx, args.gguf)
        return LlamaCppBackend(path, n_ctx=4096), path.name
    train = ctx.spec.steps.train
    if train is not None and train.method == "classification":
        raise InvalidInput(f"run {ctx.name} trained a classifier; chat needs a generative model")
    from jobs.common.backends.hf import HFBackend, load_hf_backend
    from jobs.common.modelload import base_model_dir, load_causal_lm
    from jobs.common.handoff import train_output

    name = ctx.spec.model.name or ctx.spec.model.location
    if args.base:
        return load_hf_backend(base_model_dir(ctx)), f"{name} (base)"
    kind, folder = train_output(ctx)
    if kind == "model":
        return load_hf_backend(folder), f"{name} fully fine-tuned by run {ctx.name}"
    model, tokenizer = load_causal_lm(base_model_dir(ctx), folder)
    return HFBackend(model, tokenizer), f"{name} + adapter of run {ctx.name}"


def run(args: argparse.Namespace) -> int:
    from jobs.cli.reader import reader_context
    from jobs.common.spec import Decoding

    ftr, store, base_dir = load_run_and_store(args.run, args.namespace, args.store)
    ctx = reader_context(ftr, store, base_dir, "chat")
    backend, what = open_chat_backend(ctx, args)
    decoding = Decoding(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    start = [{"role": "system", "content": args.system}] if args.system else []
    history = list(start)
    interactive = sys.stdin.isatty()
    print(f"chatting with {what}; /reset clears the conversation, /exit or Ctrl-D ends it", file=sys.stderr)
    try:
        while True:
            if interactive:
                print("you> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                history = list(start)
                print("(conversation cleared)", file=sys.stderr)
                continue
            history.append({"role": "user", "content": text})
            [reply] = backend.generate([history], decoding)
            history.append({"role": "assistant", "content": reply.text})
            print(f"model> {reply.text}" if interactive else reply.text, flush=True)
    finally:
        backend.close()
    return 0
