"""Readers: the bytes of one data file in, Records out.

Each reader is a pure function of (name, text) so it can be fuzzed; the only
exceptions they raise are InvalidData and MissingInput, with a message that
names the file and the line (or item) and, for CSV and mapped JSON, the column.

Formats:
    openai_chat   JSONL of {"messages": [{"role", "content"}, ...], "tools"?}, with tool_calls, tool
                  messages, legacy function_call and content parts (images: dropped, reason image_content)
    alpaca        JSON array or JSONL of {"instruction", "input"?, "output", "system"?, "history"?}
                  (history: [[instruction, output], ...] of the earlier turns)
    sharegpt      JSON array or JSONL of {"conversations": [{"from", "value"}, ...], "system"?, "tools"?}
                  (from: human/gpt/system/function_call/observation)
    csv           a header row; columns mapped to roles (e.g. chunk_text,frame_name -> text,label)
    json          JSON array or JSONL of objects, fields mapped to roles like csv
    dpo           JSON array or JSONL of {"prompt", "chosen", "rejected", "system"?}, where prompt may
                  be a message list and chosen/rejected assistant message lists (TRL's conversational
                  shape, also without prompt: the shared turns are the prompt), or OpenAI's preference
                  rows {"input": {"messages"}, "preferred_output", "non_preferred_output"}
    openai_chat and sharegpt files whose keys or role names differ are renamed first by the
    source's chatFields (jobs.pack.fieldmap).
    KTO rows (a completion with label true/false) are refused: pack writes no KTO data, and an
    answer labelled false must never become an SFT target.
    eval_results  the eval step's results.jsonl: a {"meta"} line, then items with id,
                  messages, expected, response, passed, checks
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from jobs.common.errors import InvalidData, MissingInput
from jobs.common.labels import LABEL_COLUMNS, answer_is_label
from jobs.pack.conversations import content_text, pending_call_id, sharegpt_tools, tool_call_message
from jobs.pack.fieldmap import remap_row
from jobs.pack.records import Record, chat
from jobs.pack.validate import example_problems, message_problems

if TYPE_CHECKING:
    from jobs.common.spec import ChatFields

ROLES = ("instruction", "input", "output", "text", "label", "system")
# Column names recognised for each role when a source gives no `columns` mapping.
ALIASES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "question", "prompt", "query"),
    "input": ("input", "context"),
    "output": ("output", "answer", "response", "completion"),
    "text": ("text", "chunk_text", "sentence"),
    "label": LABEL_COLUMNS,
    "system": ("system", "system_prompt"),
}
ALPACA_FIELDS = {"instruction": "instruction", "input": "input", "output": "output", "system": "system"}
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
}
TOOL_ROLES = ("function_call", "observation")
CSV_DELIMITERS = ",;\t|"
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DECODER = json.JSONDecoder()


# --- bytes and JSON ----------------------------------------------------------------------------


def read_file(path: Path, name: str) -> bytes:
    """The bytes of a data file, or MissingInput/InvalidData naming it."""
    if not path.exists():
        raise MissingInput(f"{name}: no such file ({path})")
    if path.is_dir():
        raise InvalidData(f"{name}: is a directory, not a data file ({path})")
    try:
        return path.read_bytes()
    except OSError as err:
        raise MissingInput(f"{name}: cannot be read ({err.strerror})") from None


def decode(name: str, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidData(f"{name}: the file is UTF-16; save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise InvalidData(
            f"{name}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _check_strings(where: str, obj: Any) -> None:
    """Lone surrogates (from escapes like "\\ud800") cannot be written back as UTF-8."""
    if isinstance(obj, str):
        if _SURROGATE.search(obj):
            raise InvalidData(f"{where}: a string holds an unpaired surrogate escape (\\ud800-\\udfff)")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_strings(where, value)
    elif isinstance(obj, list):
        for value in obj:
            _check_strings(where, value)


def _json_error(where: str, err: Exception) -> InvalidData:
    if isinstance(err, json.JSONDecodeError):
        return InvalidData(f"{where}: not valid JSON (column {err.colno}): {err.msg}")
    return InvalidData(f"{where}: not valid JSON: {err or 'nested too deeply'}")


def json_rows(name: str, text: str) -> Iterator[tuple[str, Any]]:
    """(where, value) for each row of a JSON array document or of JSON Lines (blank lines skipped)."""
    start = len(text) - len(text.lstrip())
    if text.startswith("[", start):
        try:
            items, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as err:
            raise _json_error(f"{name}:{err.lineno}", err) from None
        except (ValueError, RecursionError) as err:
            raise _json_error(name, err) from None
        if not text[end:].strip():  # else: JSON Lines whose first row is an array
            if _ESCAPED_SURROGATE.search(text):
                _check_strings(name, items)
            for k, item in enumerate(items, start=1):
                yield f"{name}: item {k}", item
            return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:
            raise _json_error(where, err) from None
        if _ESCAPED_SURROGATE.search(line):
            _check_strings(where, row)
        yield where, row


def _object(where: str, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InvalidData(f"{where}: expected a JSON object, found {type(row).__name__}")
    return row


def _text(where: str, field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise InvalidData(f"{where}: field {field!r} is a JSON {type(value).__name__}, expected text")


def _unknown(row: dict[str, Any], known: set[str]) -> tuple[str, ...]:
    return tuple(sorted(str(k) for k in row if k not in known))


def _refuse_kto(where: str, row: dict[str, Any]) -> None:
    if isinstance(row.get("label"), bool) and "completion" in row:
        raise InvalidData(
            f"{where}: a KTO row (completion with label true/false); pack writes no KTO data, and an "
            "answer labelled false must not be trained on as SFT, so the file is refused"
        )


def _row_id(where: str, row: dict[str, Any], fallback: str) -> str:
    value = row.get("id")
    if value is None:
        return fallback
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidData(f"{where}: 'id' must be a string or an integer, found {type(value).__name__}")
    return str(value)


def _fallback_id(name: str, where: str) -> str:
    """`file:12` (or `file#3` for an array item): stable, and unique within one source."""
    suffix = where[len(name):]
    base = PurePosixPath(name).name
    return f"{base}#{suffix.removeprefix(': item ')}" if suffix.startswith(": item") else base + suffix


# --- column mapping (csv, json, alpaca) --------------------------------------------------------


def resolve_columns(name: str, available: list[str], columns: dict[str, str]) -> dict[str, str]:
    """role -> column for a table whose columns are `available`, from `columns` or the aliases."""
    if columns:
        missing = [c for c in columns.values() if c not in available]
        if missing:
            raise InvalidData(
                f"{name}: column(s) {', '.join(map(repr, missing))} from the columns mapping are not "
                f"in the file; it has: {', '.join(map(repr, available)) or '(none)'}"
            )
        mapping = dict(columns)
    else:
        mapping = {
            role: next(a for a in ALIASES[role] if a in available)
            for role in ROLES
            if any(a in available for a in ALIASES[role])
        }
    if not ({"instruction", "output"} <= mapping.keys() or {"text", "label"} <= mapping.keys()):
        raise InvalidData(
            f"{name}: no columns for instruction and output, or for text and label (mapped: "
            f"{mapping or 'none'}); the file has: {', '.join(map(repr, available)) or '(none)'}. "
            "Name them in data.sources[].columns, e.g. {text: chunk_text, label: frame_name}"
        )
    return mapping


def _mapped_record(where: str, row_id: str, values: dict[str, str], mapping: dict[str, str]) -> Record:
    system = values.get("system") or None
    if "instruction" in mapping and "output" in mapping:
        instruction, extra = values["instruction"], values.get("input", "")
        # A generative mapping onto a label column (output: frame_name) is classification by intent:
        # the answer is kept as the row's label, so splits are stratified and dedupe is label-aware.
        labelled = answer_is_label(mapping)
        return Record(
            row_id, where, chat(f"{instruction}\n\n{extra}" if extra else instruction, values["output"], system),
            instruction=instruction, input=extra, label=values["output"].strip() if labelled else None,
            label_column=mapping["output"] if labelled else None,
        )
    label = values["label"].strip()
    return Record(row_id, where, chat(values["text"], label, system), label=label, label_column=mapping["label"])


def read_mapped(name: str, text: str, columns: dict[str, str], defaults: dict[str, str] | None = None) -> list[Record]:
    """JSON objects whose fields map to roles (format json; alpaca with `defaults`)."""
    rows = [(where, _object(where, row)) for where, row in json_rows(name, text)]
    if defaults is not None:
        mapping = {**defaults, **columns}
    else:
        available = list(dict.fromkeys(key for _, row in rows for key in row))
        mapping = resolve_columns(name, available, columns)
    required = [r for r in ("instruction", "output", "text", "label") if r in mapping]
    known = {*mapping.values(), "id", *(("history",) if defaults is not None else ())}
    records = []
    for where, row in rows:
        _refuse_kto(where, row)
        if _conversational_completion(row):
            records.append(_prompt_completion_record(where, _row_id(where, row, _fallback_id(name, where)), row))
            continue
        missing = [f"{mapping[r]!r}" for r in required if mapping[r] not in row]
        if missing:
            has = ", ".join(map(repr, row)) or "nothing"
            raise InvalidData(f"{where}: no field {', '.join(missing)}; the row has: {has}")
        values = {role: _text(where, field, row.get(field)) for role, field in mapping.items()}
        record = _mapped_record(where, _row_id(where, row, _fallback_id(name, where)), values, mapping)
        if defaults is not None and row.get("history"):
            record.messages[-2:-2] = _history(where, row["history"])
        record.unknown_keys = _unknown(row, known)
        records.append(record)
    return records


def _history(where: str, history: Any) -> list[dict[str, str]]:
    """Alpaca's earlier turns, [[instruction, output], ...], as user/assistant messages."""
    if not isinstance(history, list):
        raise InvalidData(f"{where}: 'history' must be a list of [instruction, output] pairs")
    messages = []
    for k, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise InvalidData(f"{where}: history[{k}] must be an [instruction, output] pair")
        messages += [
            {"role": "user", "content": _text(where, f"history[{k}][0]", pair[0])},
            {"role": "assistant", "content": _text(where, f"history[{k}][1]", pair[1])},
        ]
    return messages


def _conversational_completion(row: dict[str, Any]) -> bool:
    """TRL's conversational prompt/completion: both are message lists."""
    return isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list)


def _prompt_completion_record(where: str, row_id: str, row: dict[str, Any]) -> Record:
    messages, image = _messages(where, row["prompt"] + row["completion"])
    problems = example_problems({"messages": messages})
    if problems:
        raise InvalidData(f"{where}: {problems[0][0]}: {problems[0][1]}")
    return _chat_record(
        where, row_id, messages, reject=image, unknown_keys=_unknown(row, {"id", "prompt", "completion"})
    )


def read_csv(name: str, text: str, columns: dict[str, str]) -> list[Record]:
    first_line = text.split("\n", 1)[0]
    delimiter = max(CSV_DELIMITERS, key=first_line.count) if any(d in first_line for d in CSV_DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = []
    try:
        header = [h.strip() for h in next(reader, [])]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise InvalidData(f"{name}:1: the header repeats column(s) {', '.join(map(repr, dupes))}")
        mapping = resolve_columns(name, header, columns)
        index = {role: header.index(col) for role, col in mapping.items()}
        id_col = header.index("id") if "id" in header and "id" not in mapping.values() else None
        for row in reader:
            where = f"{name}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidData(f"{where}: {len(row)} field(s), but the header has {len(header)}")
            values = {role: row[i].strip() for role, i in index.items()}
            row_id = row[id_col].strip() if id_col is not None and row[id_col].strip() else _fallback_id(name, where)
            records.append(_mapped_record(where, row_id, values, mapping))
    except csv.Error as err:
        raise InvalidData(f"{name}:{reader.line_num}: not valid CSV: {err}") from None
    return records


# --- conversations -----------------------------------------------------------------------------


def _chat_record(where: str, row_id: str, messages: list[dict[str, Any]], **fields: Any) -> Record:
    if messages[-1].get("role") != "assistant":
        raise InvalidData(
            f"{where}: the conversation ends with a {messages[-1].get('role')!r} message; "
            "the last message must be the assistant's answer"
        )
    return Record(row_id, where, messages, **fields)


def _messages(where: str, messages: Any) -> tuple[Any, str | None]:
    """(messages with content parts joined to text, "image_content" if a part was an image).
    An image-only message keeps a placeholder text: the row is dropped for its image anyway."""
    if not isinstance(messages, list):
        return messages, None
    out, image = [], False
    for k, message in enumerate(messages):
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            text, has_image = content_text(f"{where}: messages[{k}]", message["content"])
            message, image = {**message, "content": text or ("(image)" if has_image else text)}, image or has_image
        out.append(message)
    return out, "image_content" if image else None


def _tools(where: str, value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise InvalidData(f"{where}: 'tools' must be a list of tool objects")
    return value


OPENAI_KEYS = {"id", "messages", "tools", "parallel_tool_calls"}


def _chat_rows(name: str, text: str, fields: ChatFields | None, fmt: str) -> Iterator[tuple[str, Any]]:
    """The rows of a chat file, renamed from the file's key and role names (chatFields) to the format's."""
    for where, row in json_rows(name, text):
        yield where, remap_row(where, _object(where, row), fields, fmt) if fields is not None else row


def read_openai_chat(name: str, text: str, fields: ChatFields | None = None) -> list[Record]:
    records = []
    for where, row in _chat_rows(name, text, fields, "openai_chat"):
        image = None
        if isinstance(row, dict):
            messages, image = _messages(where, row.get("messages"))
            row = {**row, "messages": messages}
        problems = example_problems(row)
        if problems:
            kind, message = problems[0]
            more = f" (and {len(problems) - 1} more problem(s); run ftctl validate-data)" if len(problems) > 1 else ""
            raise InvalidData(f"{where}: {kind}: {message}{more}")
        records.append(
            _chat_record(
                where, _row_id(where, row, _fallback_id(name, where)), row["messages"], reject=image,
                tools=_tools(where, row.get("tools")), unknown_keys=_unknown(row, OPENAI_KEYS),
            )
        )
    return records


def read_sharegpt(name: str, text: str, fields: ChatFields | None = None) -> list[Record]:
    records = []
    for where, row in _chat_rows(name, text, fields, "sharegpt"):
        row = _object(where, row)
        turns = row.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise InvalidData(f"{where}: expected a non-empty 'conversations' list")
        system = _text(where, "system", row.get("system"))
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        calls = 0
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise InvalidData(f"{where}: conversations[{k}] needs 'from' and 'value'")
            source = str(turn["from"]).lower()
            here = f"{where}: conversations[{k}]"
            if source == "function_call":
                messages.append(tool_call_message(here, turn["value"], calls))
                calls += len(messages[-1]["tool_calls"])
                continue
            if source == "observation":
                call_id = pending_call_id(messages)
                if call_id is None:
                    raise InvalidData(f"{here}: an observation must follow the function_call it answers")
                messages.append({"role": "tool", "tool_call_id": call_id, "content": _text(here, "value", turn["value"])})
                continue
            role = SHAREGPT_ROLES.get(source)
            if role is None:
                known = ", ".join([*SHAREGPT_ROLES, *TOOL_ROLES])
                raise InvalidData(f"{here} is from {turn['from']!r}; known: {known}")
            messages.append({"role": role, "content": _text(where, f"conversations[{k}].value", turn["value"])})
        records.append(
            _chat_record(
                where, _row_id(where, row, _fallback_id(name, where)), messages,
                tools=sharegpt_tools(where, row.get("tools")),
                unknown_keys=_unknown(row, {"id", "conversations", "system", "tools"}),
            )
        )
    return records


def read_dpo(name: str, text: str) -> list[Record]:
    records = []
    for where, row in json_rows(name, text):
        row = _object(where, row)
        _refuse_kto(where, row)
        if "preferred_output" in row or isinstance(row.get("chosen"), list):
            records.append(_preference_record(where, _row_id(where, row, _fallback_id(name, where)), row))
            continue
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise InvalidData(
                f"{where}: no field {', '.join(map(repr, missing))}; a dpo row has prompt, chosen, rejected"
            )
        values = {k: _text(where, k, row[k]) for k in ("prompt", "chosen", "rejected")}
        system = _text(where, "system", row.get("system")) or None
        records.append(
            Record(
                _row_id(where, row, _fallback_id(name, where)), where,
                chat(values["prompt"], values["chosen"], system), rejected=values["rejected"],
                unknown_keys=_unknown(row, {"id", "prompt", "chosen", "rejected", "system"}),
            )
        )
    return records


def _answer(where: str, field: str, value: Any) -> dict[str, Any]:
    """The one assistant message of a conversational chosen/rejected."""
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)):
        raise InvalidData(f"{where}: {field} must hold exactly one assistant message")
    message = value[0]
    if message.get("role") != "assistant" or not isinstance(message.get("content"), str):
        raise InvalidData(f"{where}: {field} must be an assistant message with text content")
    return message


def _preference_record(where: str, row_id: str, row: dict[str, Any]) -> Record:
    """Conversational (TRL) or OpenAI preference rows: prompt turns plus one chosen and one rejected answer."""
    if "preferred_output" in row:
        given = row.get("input")
        if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
            raise InvalidData(f"{where}: an OpenAI preference row needs input.messages")
        prompt, chosen, rejected = given["messages"], row["preferred_output"], row.get("non_preferred_output")
        fields, tools = {"id", "input", "preferred_output", "non_preferred_output"}, given.get("tools")
    else:
        chosen, rejected, prompt = row["chosen"], row.get("rejected"), row.get("prompt")
        if prompt is None and isinstance(rejected, list):  # implicit prompt: the turns both share
            shared = 0
            while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
                shared += 1
            prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        fields, tools = {"id", "prompt", "chosen", "rejected", "system", "tools"}, row.get("tools")
        if row.get("system") and isinstance(prompt, list) and not (prompt and prompt[0].get("role") == "system"):
            prompt = [{"role": "system", "content": _text(where, "system", row["system"])}, *prompt]
    if not isinstance(prompt, list) or not prompt:
        raise InvalidData(f"{where}: the preference row has no prompt turns")
    messages, image = _messages(where, prompt)
    for i, message in enumerate(messages):
        problems = message_problems(i, message)
        if problems:
            raise InvalidData(f"{where}: prompt: {problems[0][0]}: {problems[0][1]}")
    return Record(
        row_id, where, [*messages, _answer(where, "chosen", chosen)],
        rejected=_answer(where, "rejected", rejected)["content"],
        reject=image, tools=_tools(where, tools), unknown_keys=_unknown(row, fields),
    )


def _expected_text(where: str, value: Any) -> str | None:
    """An eval item's expected answer; the first one when it lists several."""
    if isinstance(value, list):
        value = value[0] if value else None
    return _text(where, "expected", value) or None


def read_eval_results(name: str, text: str, curate: str) -> list[Record]:
    """Items of the eval step's results. curate="passed" keeps the model's responses that passed
    their checks; "expected" uses each item's expected answer. Others are marked, not dropped,
    so that the report lists them."""
    records = []
    for where, row in json_rows(name, text):
        row = _object(where, row)
        if "meta" in row and "messages" not in row:
            continue
        if "id" not in row:
            raise InvalidData(f"{where}: an eval result needs an 'id'")
        prompt = row.get("messages")
        if not isinstance(prompt, list) or not prompt:
            raise InvalidData(f"{where}: an eval result needs a non-empty 'messages' list")
        for i, message in enumerate(prompt):
            problems = message_problems(i, message)
            if problems:
                raise InvalidData(f"{where}: {problems[0][0]}: {problems[0][1]}")
        if curate == "passed":
            passed = row.get("passed")
            if not isinstance(passed, bool):
                raise InvalidData(f"{where}: 'passed' must be true or false, found {passed!r:.40}")
            answer = _text(where, "response", row.get("response"))
            reject = None if passed else "not_passed"
        else:
            answer = _expected_text(where, row.get("expected")) or ""
            reject = None if answer else "no_expected"
        messages = prompt + [{"role": "assistant", "content": answer}]
        records.append(Record(_row_id(where, row, _fallback_id(name, where)), where, messages, reject=reject))
    return records


# --- dispatch ----------------------------------------------------------------------------------


def read_source(
    name: str, data: bytes, fmt: str, *, columns: dict[str, str] | None = None, curate: str = "passed",
    chat_fields: ChatFields | None = None,
) -> list[Record]:
    """All rows of one data file. An empty file or one without rows is an error."""
    text = decode(name, data)
    if not text.strip():
        raise InvalidData(f"{name}: the file is empty; there is nothing to pack")
    columns = columns or {}
    readers = {
        "openai_chat": lambda: read_openai_chat(name, text, chat_fields),
        "alpaca": lambda: read_mapped(name, text, columns, ALPACA_FIELDS),
        "sharegpt": lambda: read_sharegpt(name, text, chat_fields),
        "csv": lambda: read_csv(name, text, columns),
        "json": lambda: read_mapped(name, text, columns),
        "dpo": lambda: read_dpo(name, text),
        "eval_results": lambda: read_eval_results(name, text, curate),
    }
    if fmt not in readers:
        raise InvalidData(f"{name}: unknown format {fmt!r}; known: {', '.join(readers)}")
    records = readers[fmt]()
    if not records:
        raise InvalidData(f"{name}: no rows (the file holds only a header, blank lines or metadata)")
    return records
