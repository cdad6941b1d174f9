"""Reading FineTuneRun manifests, with errors that name the field or the line."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs.common.errors import InvalidSpec
from jobs.common.spec import FineTuneRun


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[")) or part in ("str", "list[str]"):
            continue  # union branch names carry no meaning for the user
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _message(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "string_too_long": "must be at most {max_length} characters",
        "string_too_short": "must be at least {min_length} characters",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} item(s)",
        "string_pattern_mismatch": "must match {pattern}",
        "literal_error": "must be one of {expected}",
    }
    if kind in simple:
        return simple[kind].format(**ctx)
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def format_validation_error(err: ValidationError, root: str = "") -> list[str]:
    """One line per problem: `spec.steps.train.learningRate: must be > 0`."""
    lines = []
    for e in err.errors():
        path = _path(e["loc"])
        if root:
            path = f"{root}.{path}" if path != "(document)" else root
        lines.append(f"{path}: {_message(e)}")
    return sorted(set(lines), key=lines.index)


class SpecLoader(yaml.SafeLoader):
    """YAML read the way the API server reads it, so `ftctl validate` and `kubectl apply` agree:
    `5e-5` is a number (YAML 1.1 wants a dot), dates stay strings, and a key given twice is an
    error instead of the last one silently winning."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as err:  # a constructor choking on its scalar, e.g. `!!int abc`
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {err}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def parse_document(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InvalidSpec(f"{source}:{where}: malformed YAML/JSON: {problem}") from None
    except RecursionError:
        raise InvalidSpec(f"{source}: malformed YAML/JSON: nested too deeply") from None


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidSpec(f"{path}: is a directory, expected a file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidSpec(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None


def run_from_obj(obj: Any, source: str = "manifest") -> FineTuneRun:
    if not isinstance(obj, dict):
        raise InvalidSpec(f"{source}: expected a mapping (a FineTuneRun manifest), got {type(obj).__name__}")
    try:
        # Strict, as the API server is: "4" is not a number and true is not a count.
        return FineTuneRun.model_validate(obj, strict=True)
    except ValidationError as err:
        raise InvalidSpec("\n".join(format_validation_error(err))) from None


def apply_overrides(obj: Any, overrides: list[str]) -> Any:
    """Set `FIELD=VALUE` overrides (`steps.train.learningRate=1e-4`, paths under `spec`, list
    items by index: `data.sources.0.path=x.csv`) on a parsed manifest. Values are read as YAML
    scalars, so `1e-4` is a number and `null` clears; the result is validated like the file."""
    for item in overrides:
        field, sep, raw = item.partition("=")
        if not sep or not field:
            raise InvalidSpec(f"override {item!r}: expected FIELD=VALUE, e.g. steps.train.learningRate=1e-4")
        path = field.removeprefix("spec.").split(".")
        node = obj.setdefault("spec", {}) if isinstance(obj, dict) else None
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                key: Any = int(part)
            elif isinstance(node, dict) and part:
                key = part
            else:
                where = ".".join(["spec", *path[:depth]])
                raise InvalidSpec(f"override {item!r}: spec field {where} has no {part!r} to set")
            if last:
                node[key] = parse_document(raw, f"override {field}") if raw else ""
            else:
                if isinstance(node, dict) and node.get(key) is None:
                    node[key] = {}
                node = node[key]
    return obj


def load_run(path: Path | None, text: str | None = None, overrides: list[str] | None = None) -> FineTuneRun:
    """Load and validate a FineTuneRun from a YAML/JSON file (or text), with FIELD=VALUE
    overrides applied first. Raises InvalidSpec."""
    source = str(path) if path else "spec"
    if text is None:
        assert path is not None
        text = read_text(path)
    return run_from_obj(apply_overrides(parse_document(text, source), overrides or []), source)


def dump_json(run: FineTuneRun) -> str:
    return json.dumps(run.snapshot(), indent=2, sort_keys=True)
