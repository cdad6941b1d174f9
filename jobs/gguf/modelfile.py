"""An Ollama Modelfile built from the tokenizer's own chat template.

Ollama speaks Go's text/template, not Jinja, so the template is not translated
line by line. Instead the Jinja template is rendered on probe conversations
whose contents are unique markers; what surrounds each marker is the text that
template puts before and after a message of that role. Those pieces become a
Go template, and the result is checked against the Jinja template on sample
conversations: a template whose output cannot be reproduced this way (one that
merges the system prompt into the first user turn, say) is reported as not
convertible, and the Modelfile then carries no TEMPLATE, saying why.

The stop tokens are read off the same probe: the special token that closes an
assistant turn, plus the tokenizer's EOS tokens. Nothing here depends on a
model's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

Message = dict[str, str]
# Renders a conversation with the Jinja chat template: (messages, add_generation_prompt) -> text.
Renderer = Callable[[list[Message], bool], str]

ROLES = ("system", "user", "assistant")
# Marker contents: no spaces and no punctuation, so a template that trims or escapes content
# leaves them intact.
_MARK = {"system": "QZSYSTEMQZ", "user": "QZUSERQZ", "assistant": "QZASSISTANTQZ"}
_ORDER = ["system", "user", "assistant", "user", "assistant"]


class TemplateNotConvertible(Exception):
    """The chat template cannot be written as an Ollama TEMPLATE; the message says why."""


@dataclass(frozen=True)
class ChatFormat:
    """A chat template reduced to text around each message."""

    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str
    default_system: str | None


def _probe_conversation() -> list[Message]:
    return [{"role": r, "content": f"{_MARK[r]}{i}"} for i, r in enumerate(_ORDER)]


def _without_bos(text: str, bos_token: str | None) -> str:
    # llama.cpp and Ollama add BOS when tokenizing, so it is not part of the TEMPLATE.
    return text[len(bos_token):] if bos_token and text.startswith(bos_token) else text


def probe_chat_format(render: Renderer, bos_token: str | None = None) -> ChatFormat:
    """Read the text each role gets around its content off the Jinja template's own output."""
    conv = _probe_conversation()

    def rendered(msgs: list[Message], gen: bool) -> str:
        try:
            return _without_bos(render(msgs, gen), bos_token)
        except Exception as err:  # the template's raise_exception and friends
            roles = [m["role"] for m in msgs]
            raise TemplateNotConvertible(f"the template fails on a {roles} conversation: {err}") from None

    prefix: dict[str, str] = {}
    suffix: dict[str, str] = {}
    previous = ""
    for k, msg in enumerate(conv, start=1):
        text = rendered(conv[:k], False)
        if not text.startswith(previous):
            raise TemplateNotConvertible(
                "adding a message changes how the earlier ones render, which a per-message Go template cannot express"
            )
        block = text[len(previous):]
        if block.count(msg["content"]) != 1:
            raise TemplateNotConvertible(f"the {msg['role']} message content is not rendered verbatim")
        before, after = block.split(msg["content"])
        if msg["role"] in prefix and (prefix[msg["role"]], suffix[msg["role"]]) != (before, after):
            raise TemplateNotConvertible(f"{msg['role']} messages render differently depending on their position")
        prefix[msg["role"]], suffix[msg["role"]] = before, after
        previous = text
    upto_user = rendered(conv[:4], False)
    with_prompt = rendered(conv[:4], True)
    if not with_prompt.startswith(upto_user):
        raise TemplateNotConvertible("the generation prompt changes the text before it")
    generation_prompt = with_prompt[len(upto_user):]
    default_system = _default_system(rendered([conv[1]], False), conv[1]["content"], prefix, suffix)
    return ChatFormat(prefix, suffix, generation_prompt, default_system)


def _default_system(text: str, user: str, prefix: dict[str, str], suffix: dict[str, str]) -> str | None:
    """The system prompt the template inserts when a conversation has none, if any."""
    user_block = prefix["user"] + user + suffix["user"]
    if text == user_block:
        return None
    head = text[: -len(user_block)] if text.endswith(user_block) else None
    if head is None or not head.startswith(prefix["system"]) or not head.endswith(suffix["system"]):
        raise TemplateNotConvertible("a conversation without a system message renders an unrecognised header")
    return head[len(prefix["system"]) : len(head) - len(suffix["system"])]


def render_like_ollama(fmt: ChatFormat, messages: Sequence[Message], system: str | None) -> str:
    """What the Go template from `go_template` produces, as Ollama fills it in.

    Ollama puts the Modelfile's SYSTEM in front of a conversation that has no
    system message; the last assistant message is a prefill, left open.
    """
    msgs = list(messages)
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    out = []
    for i, m in enumerate(msgs):
        last = i == len(msgs) - 1
        if m["role"] not in ROLES:
            continue
        out.append(fmt.prefix[m["role"]] + m["content"])
        if not (last and m["role"] == "assistant"):
            out.append(fmt.suffix[m["role"]])
        if last and m["role"] != "assistant":
            out.append(fmt.generation_prompt)
    return "".join(out)


def _go_text(text: str) -> str:
    """Literal text as a Go template action, so that `{{` and edge whitespace survive."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def go_template(fmt: ChatFormat) -> str:
    """The Ollama TEMPLATE (Go text/template over .Messages) for a chat format."""
    branches = []
    for keyword, role in zip(("if", "else if", "else if"), ROLES, strict=True):
        close = _go_text(fmt.suffix[role])
        if role == "assistant" and close:
            close = "{{ if not $last }}" + close + "{{ end }}"
        branches.append(f'{{{{- {keyword} eq .Role "{role}" }}}}{_go_text(fmt.prefix[role])}{{{{ .Content }}}}{close}')
    lines = [
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        *branches,
        "{{- end }}",
        '{{- if and $last (ne .Role "assistant") }}' + _go_text(fmt.generation_prompt) + "{{ end }}",
        "{{- end }}",
    ]
    return "\n".join(lines)


# Conversations the derived format must reproduce exactly: multi-turn, with and without a
# system message, with newlines and template-like braces in the contents.
CHECK_CONVERSATIONS: list[list[Message]] = [
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?\nBe brief, no {{ braces }}."},
    ],
    [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
]
# Contents with edge whitespace, which some templates trim (Llama 3's `| trim`); Go templates cannot.
EDGE_SPACES: list[Message] = [{"role": "user", "content": "  spaced out \n"}]


def check_format(fmt: ChatFormat, render: Renderer, bos_token: str | None) -> str | None:
    """Raise TemplateNotConvertible unless the format renders CHECK_CONVERSATIONS like Jinja does.

    Returns a caveat when the only difference is that the Jinja template trims contents.
    """
    for conv in CHECK_CONVERSATIONS:
        want = _without_bos(render(conv, True), bos_token)
        got = render_like_ollama(fmt, conv, fmt.default_system)
        if got != want:
            raise TemplateNotConvertible(
                f"the derived template renders {got!r} where the Jinja template renders {want!r}"
            )
    if render_like_ollama(fmt, EDGE_SPACES, fmt.default_system) != _without_bos(render(EDGE_SPACES, True), bos_token):
        return "the chat template trims message contents; Ollama's template passes them as they are"
    return None


def stop_tokens(fmt: ChatFormat | None, special_tokens: Sequence[str], eos_tokens: Sequence[str]) -> list[str]:
    """The tokens that end an assistant turn: the template's end-of-turn token, then EOS.

    End-of-turn is the first special token in the text the template puts after
    an assistant message (`<|im_end|>` for ChatML). Stopping on anything else
    either cuts answers short or, when the real one is missing, lets the model
    run on into a new turn.
    """
    found: list[str] = []
    if fmt is not None:
        after = fmt.suffix["assistant"]
        hits = [(after.find(t), -len(t), t) for t in special_tokens if t and t in after]
        if hits:
            found.append(min(hits)[2])
    for eos in eos_tokens:
        if eos and eos not in found:
            found.append(eos)
    return found


def _quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise ValueError(f'{what} contains """, which a Modelfile cannot quote')
    return f'"""{value}"""'


@dataclass(frozen=True)
class Modelfile:
    text: str
    template_converted: bool
    note: str | None
    stops: list[str]
    system: str | None


def build_modelfile(
    *,
    gguf_file: str,
    render: Renderer | None,
    bos_token: str | None,
    special_tokens: Sequence[str],
    eos_tokens: Sequence[str],
    system_prompt: str | None,
    num_ctx: int,
    alternatives: Sequence[str] = (),
) -> Modelfile:
    """The Modelfile text for `gguf_file` (a name beside the Modelfile).

    `render` is the tokenizer's chat template (None when it has none);
    `bos_token` the BOS text that template writes itself, which is dropped
    because llama.cpp adds BOS when tokenizing. SYSTEM is `system_prompt` when
    given, else the template's own default system prompt.
    """
    fmt: ChatFormat | None = None
    note = None
    if render is None:
        note = "the tokenizer has no chat template"
    else:
        try:
            fmt = probe_chat_format(render, bos_token)
            note = check_format(fmt, render, bos_token)
        except TemplateNotConvertible as err:
            fmt, note = None, str(err)
    system = system_prompt or (fmt.default_system if fmt else None)
    stops = stop_tokens(fmt, special_tokens, eos_tokens)
    lines = [f"FROM ./{gguf_file}"]
    lines += [f"# or: FROM ./{alt}" for alt in alternatives]
    if fmt is not None:
        lines.append(f"TEMPLATE {_quoted(go_template(fmt), 'the template')}")
        lines += [f"# Note: {note}."] if note else []
    else:
        lines.append(f"# No TEMPLATE: the chat template could not be converted ({note}).")
        lines.append("# Ollama falls back to its own detection from the GGUF; check the output before use.")
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'the system prompt')}")
    for stop in stops:
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    return Modelfile("\n".join(lines) + "\n", fmt is not None, note, stops, system)


def ollama_create_command(name: str) -> str:
    return f"ollama create {name} -f Modelfile"


def modelfile_for_model(model_dir: Path, *, gguf_file: str, system_prompt: str | None, num_ctx: int,
                        alternatives: Sequence[str] = ()) -> Modelfile:
    """The Modelfile for a GGUF converted from the HF folder `model_dir`, from its tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    def render(messages: list[Message], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    special = [t.content for t in tok.added_tokens_decoder.values() if t.special]
    eos = [tok.eos_token] if tok.eos_token else []
    gen_config = Path(model_dir) / "generation_config.json"
    if gen_config.is_file():
        ids = json.loads(gen_config.read_text()).get("eos_token_id")
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        eos += [t for t in tok.convert_ids_to_tokens(ids) if t not in eos]
    return build_modelfile(
        gguf_file=gguf_file,
        render=render if tok.chat_template else None,
        # Only a template that writes bos_token itself has it to strip; SmolLM2's BOS is <|im_start|>.
        bos_token=tok.bos_token if tok.chat_template and "bos_token" in tok.chat_template else None,
        special_tokens=sorted(set(special) | set(tok.all_special_tokens)),
        eos_tokens=eos,
        system_prompt=system_prompt,
        num_ctx=num_ctx,
        alternatives=alternatives,
    )
