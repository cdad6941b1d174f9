"""A synthetic instruction set with planted duplicates whose token Jaccard is known.

Rows read like instructions: an opener ("explain", "write a short", ...) followed by made-up
lowercase words drawn from a Zipf-distributed vocabulary, so a few words are in most rows
(as "the" and "what" are) and two unrelated rows share little. Row lengths follow a
log-normal spread (median about 18 words, a long tail).

A fraction of the rows are planted copies of an earlier row:
    edit      k words replaced by other words           J = (n-k)/(n+k)
    delete    k words removed                           J = (n-k)/n
    insert    k words added                             J = n/(n+k)
    reorder   the words shuffled, then k replaced       J = (n-k)/(n+k)
    swap      k words replaced by a fixed "synonym"     (a paraphrase; J computed)
    exact     the same words, other case, punctuation and spacing   J = 1
with k chosen for a target Jaccard drawn from LEVELS (both sides of the usual 0.8
threshold). Each planted row records its source row and the exact Jaccard of the two
token sets, which is what `jobs.pack.dedupe.jaccard` computes on the rendered texts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

OPENERS = [
    "explain", "what is the", "write a short", "summarize", "how do i", "give me a list of",
    "translate into french", "describe", "why does", "compare", "write a poem about",
    "classify the following", "what are the main", "rewrite this sentence", "list three",
    "can you tell me", "draft an email about", "outline", "what happens when", "define",
]
LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
KINDS = ("edit", "delete", "insert", "reorder", "swap")
VOCAB = 60_000
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


@dataclass(frozen=True)
class Planted:
    row: int
    source: int
    kind: str
    jaccard: float


@dataclass
class Dataset:
    texts: list[str]
    planted: list[Planted]


def _vocabulary(rng: np.random.Generator) -> list[str]:
    lengths = rng.integers(4, 10, size=VOCAB * 2)
    chars = LETTERS[rng.integers(0, 26, size=(VOCAB * 2, 9))]
    words = dict.fromkeys("".join(row[:n]) for row, n in zip(chars, lengths))
    return list(words)[:VOCAB]


class _Words:
    """Zipf draws from the vocabulary, in blocks (one numpy call per block, not per word)."""

    def __init__(self, rng: np.random.Generator, vocab: list[str]):
        self.rng = rng
        self.vocab = vocab
        weights = 1.0 / (np.arange(len(vocab)) + 2.7) ** 1.07
        self.cdf = np.cumsum(weights) / weights.sum()
        self.cdf[-1] = 1.0
        self.buffer: list[str] = []
        self.pos = 0

    def take(self, k: int) -> list[str]:
        if self.pos + k > len(self.buffer):
            block = np.searchsorted(self.cdf, self.rng.random(max(k, 1 << 18)), side="right")
            self.buffer = self.buffer[self.pos :] + [self.vocab[i] for i in block.tolist()]
            self.pos = 0
        self.pos += k
        return self.buffer[self.pos - k : self.pos]

    def draw(self) -> str:
        return self.take(1)[0]

    def fresh(self, avoid: set[str], k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            w = self.draw()
            if w not in avoid:
                avoid.add(w)
                out.append(w)
        return out

    def synonym(self, word: str) -> str:
        """A fixed partner word (the neighbour in a shuffled pairing of the vocabulary)."""
        i = hash_index(word, len(self.vocab))
        return self.vocab[i ^ 1] if (i ^ 1) < len(self.vocab) else self.vocab[0]


def hash_index(word: str, n: int) -> int:
    return zlib.crc32(word.encode()) % n


def _original(words: _Words, n: int, opener: str) -> list[str]:
    tokens = opener.split()
    want = n + len(tokens)
    tokens = list(dict.fromkeys(tokens + words.take(n + n // 2 + 4)))[:want]
    seen = set(tokens)
    while len(tokens) < want:  # common words repeat; top up with fresh ones
        tokens += words.fresh(seen, want - len(tokens))
    return tokens


def _variant(src: list[str], kind: str, target: float, words: _Words, rng: np.random.Generator) -> list[str]:
    n = len(src)
    out = list(src)
    if kind == "delete":
        k = min(n - 1, round(n * (1 - target)))
        drop = set(rng.choice(n, size=k, replace=False).tolist())
        return [t for i, t in enumerate(out) if i not in drop]
    if kind == "insert":
        k = max(1, round(n * (1 / target - 1)))
        for w in words.fresh(set(out), k):
            out.insert(int(rng.integers(len(out) + 1)), w)
        return out
    k = max(1, round(n * (1 - target) / (1 + target)))
    if kind == "reorder":
        rng.shuffle(out)
    where = rng.choice(n, size=min(k, n), replace=False).tolist()
    if kind == "swap":
        for i in where:
            out[i] = words.synonym(out[i])
        return list(dict.fromkeys(out))  # a synonym may already be in the row
    for i, w in zip(where, words.fresh(set(out), len(where))):
        out[i] = w
    return out


def render(tokens: list[str], style: int) -> str:
    """The sentence for a token list; `style` varies case, punctuation and spacing only."""
    if style == 0:
        text = " ".join(tokens)
        return text[0].upper() + text[1:] + "?"
    if style == 1:
        return " ".join(t.upper() if i % 3 == 0 else t for i, t in enumerate(tokens)) + "!!"
    return "  " + ",  ".join(tokens).capitalize() + " ..."


def jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb)


def generate(n: int, seed: int = 0, near_fraction: float = 0.10, exact_fraction: float = 0.02) -> Dataset:
    rng = np.random.default_rng(seed)
    words = _Words(rng, _vocabulary(rng))
    lengths = np.clip(rng.lognormal(np.log(18), 0.6, size=n), 4, 120).astype(int).tolist()
    openers = rng.integers(len(OPENERS), size=n).tolist()
    roll, pick = rng.random(n).tolist(), rng.random(n).tolist()
    kinds, levels = rng.integers(len(KINDS), size=n).tolist(), rng.choice(LEVELS, size=n).tolist()
    rows: list[list[str]] = []
    texts: list[str] = []
    planted: list[Planted] = []
    originals: list[int] = []
    for i in range(n):
        if originals and roll[i] < exact_fraction + near_fraction:
            src = originals[int(pick[i] * len(originals))]
            if roll[i] < exact_fraction:
                tokens, kind, style = rows[src], "exact", 1 + i % 2
            else:
                kind = KINDS[kinds[i]]
                tokens, style = _variant(rows[src], kind, levels[i], words, rng), i % 3
            rows.append(tokens)
            texts.append(render(tokens, style))
            planted.append(Planted(i, src, kind, 1.0 if kind == "exact" else jaccard(rows[src], tokens)))
        else:
            originals.append(i)
            rows.append(_original(words, lengths[i], OPENERS[openers[i]]))
            texts.append(render(rows[-1], 0))
    return Dataset(texts, planted)
