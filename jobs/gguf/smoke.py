"""Smoke test of a GGUF file: read it back, load it with llama.cpp, chat on test prompts.

The answers come from llama-cpp-python's chat completion, which formats the
conversation with the chat template stored in the GGUF itself, so a broken
template or tokenizer shows here before anyone imports the file into Ollama.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobs.common.handoff import chat_messages
from jobs.gguf.cpus import usable_cpus
from jobs.gguf.quantize import require_llama_cpp


def readback(path: Path) -> dict[str, Any]:
    """What the gguf package's reader finds in the file: architecture, tensor count, file type."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    file_type = reader.fields.get("general.file_type")
    ftype = int(file_type.contents()) if file_type is not None else None
    try:
        name = LlamaFileType(ftype).name.removeprefix("MOSTLY_")
    except ValueError:
        name = None
    template = reader.fields.get("tokenizer.chat_template")
    return {
        "architecture": arch,
        "tensorCount": len(reader.tensors),
        "fileType": ftype,
        "fileTypeName": name,
        "hasChatTemplate": template is not None,
    }


def smoke_cases(rows: list[dict[str, Any]], fmt: str, limit: int) -> list[dict[str, Any]]:
    """Prompts (the conversation before the last answer) and expected answers from pack's test rows."""
    cases = []
    for n, row in enumerate(rows, start=1):
        if fmt == "dpo":
            prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
            expected = row["chosen"] if isinstance(row["chosen"], str) else row["chosen"][-1]["content"]
        else:
            messages = chat_messages(row, f"pack/test.jsonl row {n}")
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            if last == 0:
                continue  # nothing to ask before the answer
            prompt, expected = messages[:last], messages[last]["content"]
        cases.append({"id": row.get("id"), "messages": prompt, "expected": expected})
        if len(cases) >= limit:
            break
    return cases


def chat(path: Path, cases: list[dict[str, Any]], n_ctx: int, max_tokens: int) -> list[dict[str, Any]]:
    """Greedy answers to each case from the GGUF, with timings."""
    if not cases:
        return []
    llama_cpp = require_llama_cpp()
    cpus = usable_cpus()
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=cpus, n_threads_batch=cpus, seed=0, verbose=False
    )
    try:
        results = []
        for case in cases:
            started = time.perf_counter()
            out = llm.create_chat_completion(messages=case["messages"], max_tokens=max_tokens, temperature=0.0)
            seconds = time.perf_counter() - started
            usage = out["usage"]
            results.append(
                {
                    **case,
                    "answer": out["choices"][0]["message"]["content"],
                    "finishReason": out["choices"][0]["finish_reason"],
                    "promptTokens": usage["prompt_tokens"],
                    "completionTokens": usage["completion_tokens"],
                    "seconds": round(seconds, 3),
                    "tokensPerSec": round(usage["completion_tokens"] / seconds, 2) if seconds else None,
                    "chatFormat": llm.chat_format,
                }
            )
        return results
    finally:
        llm.close()


def smoke_test(path: Path, cases: list[dict[str, Any]], n_ctx: int, max_tokens: int = 64) -> dict[str, Any]:
    info = readback(path)
    answers = chat(path, cases, n_ctx, max_tokens)
    tokens = sum(a["completionTokens"] for a in answers)
    seconds = sum(a["seconds"] for a in answers)
    return {
        "file": path.name,
        **info,
        "answers": answers,
        "tokensPerSec": round(tokens / seconds, 2) if seconds else None,
    }
