"""A local Hugging Face causal LM, optionally with a LoRA adapter, through transformers.

Chats are rendered with the tokenizer's chat template, batched with left
padding (sorted by length so a batch pads little), and decoded greedily at
temperature 0, by sampling otherwise. With a PEFT model, `use_adapter=False`
answers with the adapter switched off, so base and tuned answers come from one
loaded model. `score` gives the summed negative log-likelihood of reference
answers, for loss and perplexity.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Sequence

from jobs.common.backends.base import Messages, OnReply, Reply
from jobs.common.errors import InvalidInput
from jobs.common.spec import Decoding


class HFBackend:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        use_adapter: bool = True,
        batch_size: int = 8,
        seed: int = 42,
        identity: dict[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.use_adapter = use_adapter
        self.batch_size = batch_size
        self.seed = seed
        self.identity = identity or {"kind": "hf"}
        if tokenizer.pad_token_id is None:  # many causal LMs ship without one; eos pads safely
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInput(f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} has no chat template")

    def _adapter(self):
        if not self.use_adapter and hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def prompt_text(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _tokenize(self, texts: list[str], side: str):
        self.tokenizer.padding_side = side
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.model.device) for k, v in enc.items()}

    def generate(
        self, batch: Sequence[Messages], decoding: Decoding, on_reply: OnReply | None = None
    ) -> list[Reply]:
        import torch
        from transformers import set_seed

        texts = [self.prompt_text(m) for m in batch]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        replies: list[Reply | None] = [None] * len(texts)
        sampling = decoding.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": decoding.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling:
            options.update(temperature=decoding.temperature, top_p=decoding.top_p)
            set_seed(self.seed)
        else:  # greedy: no sampling knobs, so generate() does not warn about unused ones
            options.update(temperature=None, top_p=None, top_k=None)
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        with self._adapter(), torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                started = time.perf_counter()
                enc = self._tokenize([texts[i] for i in chunk], "left")
                out = self.model.generate(**enc, **options)
                latency = time.perf_counter() - started  # a batch's items finish together
                width = enc["input_ids"].shape[1]
                for row, index in enumerate(chunk):
                    new = out[row, width:].tolist()
                    end = next((k for k, t in enumerate(new) if t in stops), len(new))
                    reply = Reply(
                        text=self.tokenizer.decode(new[:end], skip_special_tokens=True).strip(),
                        prompt_tokens=int(enc["attention_mask"][row].sum()),
                        completion_tokens=min(end + 1, len(new)),
                        latency=latency,
                    )
                    replies[index] = reply
                    if on_reply:
                        on_reply(index, reply)
        return replies  # type: ignore[return-value]

    def _answer_ids(self, messages: Messages, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the answer as the chat template renders it."""
        prompt = self.prompt_text(messages)
        full = self.tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": answer}], tokenize=False
        )
        rest = full[len(prompt) :] if full.startswith(prompt) else answer + (self.tokenizer.eos_token or "")
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return encode(prompt), encode(rest)

    def score(self, pairs: Sequence[tuple[Messages, str]]) -> list[tuple[float, int]]:
        """(summed NLL in nats, token count) of each answer given its prompt."""
        import torch
        import torch.nn.functional as F

        rows = [self._answer_ids(m, a) for m, a in pairs]
        results: list[tuple[float, int]] = []
        pad = self.tokenizer.pad_token_id
        with self._adapter(), torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                width = max(len(p) + len(a) for p, a in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                labels = torch.full((len(chunk), width), -100, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, (p, a) in enumerate(chunk):
                    ids[r, : len(p) + len(a)] = torch.tensor(p + a)
                    labels[r, len(p) : len(p) + len(a)] = torch.tensor(a)
                    mask[r, : len(p) + len(a)] = 1
                device = self.model.device
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
                target = labels[:, 1:].to(device)
                nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=-100, reduction="none")
                for r in range(len(chunk)):
                    results.append((float(nll[r].sum()), int((target[r] != -100).sum())))
        return results

    def close(self) -> None:
        pass


def load_hf_backend(
    model_dir: Path, adapter_dir: Path | None = None, *, identity: dict[str, Any] | None = None, **options: Any
) -> HFBackend:
    """An HFBackend over the model in `model_dir` (plus the adapter, when given)."""
    from jobs.common.modelload import load_causal_lm

    model, tokenizer = load_causal_lm(model_dir, adapter_dir)
    return HFBackend(model, tokenizer, identity=identity, **options)
