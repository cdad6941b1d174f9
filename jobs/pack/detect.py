"""The input format of a data file whose source names none, told from its rows.

Each of the first rows is matched against the shapes the readers know (a `messages` list, a
`conversations` list, chosen/rejected, instruction/output, an eval result); a file whose rows
match no such shape but have columns the json reader maps is `json`. A row matching two shapes,
or rows matching different ones, make the file ambiguous: it is refused with the candidates, so
that nothing is read the wrong way without a word.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from jobs.common.errors import InvalidData
from jobs.pack.readers import ALIASES, decode, json_rows

# Rows looked at: enough to see a mixed file, few enough to cost nothing on a large one.
SAMPLE_ROWS = 1000
SHAPES = {
    "openai_chat": "a 'messages' list",
    "sharegpt": "a 'conversations' list",
    "dpo": "'chosen' and 'rejected' (or 'preferred_output')",
    "alpaca": "'instruction' and 'output'",
    "eval_results": "the eval step's results ('messages' with 'passed' or 'response')",
    "json": "columns the json reader maps (e.g. prompt/completion, question/answer, text/label)",
}


def _shapes(row: dict[str, Any]) -> set[str]:
    found = set()
    if isinstance(row.get("messages"), list):
        found.add("eval_results" if "passed" in row or "response" in row else "openai_chat")
    if isinstance(row.get("conversations"), list):
        found.add("sharegpt")
    if "preferred_output" in row or ("chosen" in row and "rejected" in row):
        found.add("dpo")
    if "instruction" in row and "output" in row:
        found.add("alpaca")
    return found


def _mapped_columns(row: dict[str, Any]) -> bool:
    has = {role for role, names in ALIASES.items() if any(n in row for n in names)}
    return {"instruction", "output"} <= has or {"text", "label"} <= has


def detect_format(name: str, data: bytes) -> str:
    """The format to read `data` with, or InvalidData naming the candidates and the rows."""
    text = decode(name, data)
    if not text.lstrip().startswith(("{", "[")):
        return "csv"
    first: dict[str, str] = {}  # format -> where its first row is
    for where, row in islice(json_rows(name, text), SAMPLE_ROWS):
        if not isinstance(row, dict):
            raise InvalidData(f"{where}: expected a JSON object, found {type(row).__name__}")
        if "meta" in row and "messages" not in row:
            shapes = {"eval_results"}  # the eval results' header line
        else:
            shapes = _shapes(row) or ({"json"} if _mapped_columns(row) else set())
        if len(shapes) > 1:
            raise _ambiguous(name, {s: where for s in shapes}, f"{where} matches several formats")
        if not shapes:
            keys = ", ".join(map(repr, row)) or "none"
            raise InvalidData(
                f"{where}: cannot tell the format (keys: {keys}); set data.sources[].format, one of: "
                + "; ".join(f"{fmt} ({shape})" for fmt, shape in SHAPES.items())
            )
        first.setdefault(shapes.pop(), where)
    if not first:
        raise InvalidData(f"{name}: no rows (the file holds only blank lines)")
    if len(first) > 1:
        raise _ambiguous(name, first, "its rows match different formats")
    return next(iter(first))


def _ambiguous(name: str, candidates: dict[str, str], why: str) -> InvalidData:
    listed = "; ".join(f"{fmt}: {SHAPES[fmt]} (at {where})" for fmt, where in sorted(candidates.items()))
    return InvalidData(
        f"{name}: the format is ambiguous, {why}: {listed}. Set data.sources[].format to the one meant"
    )
