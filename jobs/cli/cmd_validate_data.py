"""ftctl validate-data TRAIN... [--val VAL...]: check OpenAI chat fine-tuning JSONL files.

Prints each problem as `FILE:LINE: kind: message`, then a count per kind, and
exits non-zero when any file has a problem. The 10-example minimum applies to
training files only. Tokens are cl100k_base's, or with --model DIR those of the model's own
tokenizer and chat template (jobs.pack.modeltokens).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common.errors import EXIT_INVALID
from jobs.pack.modeltokens import model_chat_tokens
from jobs.pack.readers import read_file
from jobs.pack.validate import DEFAULT_MAX_TOKENS, format_report, validate_chat_jsonl


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate-data",
        help="check OpenAI chat fine-tuning JSONL files",
        description="Check chat fine-tuning files against OpenAI's data-prep checklist, at least "
        "10 examples per training file and a per-example token limit (cl100k_base tokens).",
    )
    parser.add_argument("files", type=Path, nargs="+", help="training JSONL files, one {\"messages\": [...]} per line")
    parser.add_argument(
        "--val", type=Path, action="append", default=[], help="a validation file (repeatable; no minimum size)"
    )
    parser.add_argument(
        "--max-tokens", type=_positive, default=DEFAULT_MAX_TOKENS,
        help=f"token limit per example (default {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--model", type=Path, default=None,
        help="count tokens with this model's tokenizer and chat template (a model directory or a .gguf "
        "file) instead of cl100k_base",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    count = model_chat_tokens(args.model) if args.model else None
    ok = True
    for path, training in [*((p, True) for p in args.files), *((p, False) for p in args.val)]:
        name = str(path)
        result = validate_chat_jsonl(
            read_file(path, name), args.max_tokens, training=training,
            count=count, counted_with=count.name if count else None,
        )
        for line in format_report(name, result):
            print(line)
        ok = ok and result.ok
    return 0 if ok else EXIT_INVALID
