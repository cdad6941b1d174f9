"""ftctl validate-data FILE: check an OpenAI chat fine-tuning JSONL file.

Prints each problem as `FILE:LINE: kind: message`, then a count per kind, and
exits non-zero when there is any problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common.errors import EXIT_INVALID
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
        help="check an OpenAI chat fine-tuning JSONL file",
        description="Check a chat fine-tuning file against OpenAI's data-prep checklist, at least "
        "10 examples and a per-example token limit (tokens are estimated).",
    )
    parser.add_argument("file", type=Path, help="JSONL file, one {\"messages\": [...]} per line")
    parser.add_argument(
        "--max-tokens", type=_positive, default=DEFAULT_MAX_TOKENS,
        help=f"token limit per example (default {DEFAULT_MAX_TOKENS})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = str(args.file)
    result = validate_chat_jsonl(read_file(args.file, name), args.max_tokens)
    for line in format_report(name, result):
        print(line)
    return 0 if result.ok else EXIT_INVALID
