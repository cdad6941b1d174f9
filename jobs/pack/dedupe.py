"""Exact and near-duplicate detection over instruction texts.

Exact: texts equal after Unicode NFKC, case folding and collapsing everything
that is not a letter or digit.

Near: token-set Jaccard >= threshold. Tokens are lowercase words, and character
bigrams inside runs of CJK characters (Chinese and Japanese are written without
spaces). Candidates come from MinHash + LSH banding; only candidate pairs are
compared, with the exact Jaccard of their token sets, so the work grows with
the number of candidates, never with all n² pairs.

The MinHash is datasketch's (its "affine32" permutations: h -> a*fmix32(h) + b
mod 2^32, with datasketch's permutation parameters), computed for all rows at
once with numpy instead of one MinHash object per row; a test pins the
signatures to `datasketch.MinHash.update_batch`. Banding is done with numpy
sorts too: an index with a Python insert per row and band would dominate the
run time at a million rows.

Which row is kept: rows are taken in order, and a row is dropped when it is a
duplicate of an earlier row that was kept.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
import zlib
from itertools import islice
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

NUM_PERM = 128
SEED = 1
# The band shape is the longest band (fewest false candidates) for which a pair at
# exactly the threshold still becomes a candidate with this probability.
MIN_CANDIDATE_PROBABILITY = 0.95
# A bucket larger than this pairs each member only with its first MAX_BUCKET members:
# those are the rows a later member would be dropped for, and it bounds the pairs.
MAX_BUCKET = 64
# Token ids gathered per verification batch (bounds memory at a few hundred MB).
VERIFY_BATCH_TOKENS = 20_000_000

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_WORD = re.compile(r"\w+")
_NOT_WORD = re.compile(r"[\W_]+")
# ASCII text (most rows) takes a path of str and bytes methods that gives the same result as the
# regexes: NFKC changes no ASCII character, casefold is lower(), and \w is [A-Za-z0-9_] there.
# Rows are handled a chunk at a time, joined by NUL, so one C call translates a whole chunk.
_ASCII_WORD = string.ascii_letters + string.digits
_ASCII_SPACE_NOT_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if c not in _ASCII_WORD + "_"})
_ASCII_SPACE_NOT_ALNUM = str.maketrans({c: " " for c in map(chr, range(128)) if c not in _ASCII_WORD})
_SEP = "\x00"


def _bytes_table(keep: str) -> bytes:
    """A bytes.translate table: NUL and `keep` stay, every other byte becomes a space."""
    return bytes(b if chr(b) in keep or b == 0 else 32 for b in range(256))


_BYTES_KEEP_WORD = _bytes_table(_ASCII_WORD + "_")
_BYTES_KEEP_ALNUM = _bytes_table(_ASCII_WORD)
CHUNK_ROWS = 50_000


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def normalize(text: str) -> str:
    """The key for exact duplicates."""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_SPACE_NOT_ALNUM).split())
    return _NOT_WORD.sub(" ", _fold(text)).strip()


def tokens(text: str) -> list[str]:
    """Lowercase words; character bigrams inside CJK runs (a lone CJK character is itself)."""
    if text.isascii():
        return text.lower().translate(_ASCII_SPACE_NOT_WORD).split()
    text = _fold(text)
    if not _CJK_RUN.search(text):
        return _WORD.findall(text)
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if len(tok) > 1 and _CJK_RUN.fullmatch(tok):
            out += [tok[i : i + 2] for i in range(len(tok) - 1)]
        else:
            out.append(tok)
    return out


def jaccard(a: str, b: str) -> float:
    """Exact token-set Jaccard of two texts (1.0 for two texts without tokens)."""
    sa, sb = set(tokens(a)), set(tokens(b))
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def _ascii_chunk(chunk: list[str]) -> bytes | None:
    """The chunk's rows joined by NUL, lowercased, as bytes, when they are ASCII without NUL."""
    joined = _SEP.join(chunk)
    if not joined.isascii() or joined.count(_SEP) != len(chunk) - 1:
        return None
    return joined.encode("ascii").lower()


def _chunks(texts: Iterable[str]) -> Iterator[list[str]]:
    it = iter(texts)
    while chunk := list(islice(it, CHUNK_ROWS)):
        yield chunk


def _exact_keys(chunk: list[str]) -> Iterator[bytes]:
    """normalize(text) as UTF-8, for each row of the chunk."""
    ascii_bytes = _ascii_chunk(chunk)
    if ascii_bytes is None:
        return (normalize(t).encode("utf-8", "surrogatepass") for t in chunk)
    return (b" ".join(row.split()) for row in ascii_bytes.translate(_BYTES_KEEP_ALNUM).split(b"\x00"))


def exact_duplicates(texts: Iterable[str]) -> dict[int, int]:
    """dropped row -> the earlier row it repeats. Rows are keyed by a 128-bit BLAKE2 digest of the
    normalized text (16 bytes a row, sorted with numpy, rather than a dict of the texts), read
    once, so `texts` may be a stream; two different texts share a digest with odds near 2^-128."""
    digests = bytearray()
    for chunk in _chunks(texts):
        for key in _exact_keys(chunk):
            digests += hashlib.blake2b(key, digest_size=16).digest()
    keys = np.frombuffer(bytes(digests), dtype=[("hi", "<u8"), ("lo", "<u8")])
    if keys.size < 2:
        return {}
    order = np.lexsort((keys["lo"], keys["hi"]))  # stable: equal keys stay in row order
    ordered = keys[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    first = order[np.flatnonzero(new)][np.cumsum(new) - 1]  # the earliest row of each key, per position
    repeat = ~new
    return dict(zip(order[repeat].tolist(), first[repeat].tolist()))


def band_shape(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows per band)."""
    best = 1
    for r in range(1, num_perm + 1):
        if 1 - (1 - threshold**r) ** (num_perm // r) >= MIN_CANDIDATE_PROBABILITY:
            best = r
    return num_perm // best, best


@dataclass
class NearDuplicates:
    duplicate_of: dict[int, tuple[int, float]] = field(default_factory=dict)  # dropped -> (kept, jaccard)
    rows: int = 0
    candidate_pairs: int = 0  # distinct pairs whose exact Jaccard was computed
    similar_pairs: int = 0  # of those, pairs at or above the threshold
    bands: int = 0
    rows_per_band: int = 0


@dataclass
class TokenSets:
    """Each row's distinct token ids, flattened: row i is ids[starts[i]:starts[i] + sizes[i]]."""

    ids: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    vocab: list[str]


def _chunk_token_ids(chunk: list[str], vocab: dict[bytes, int]) -> tuple[np.ndarray, np.ndarray]:
    """(row within the chunk, token id) of every token of the chunk; id 0 is the row separator."""
    ascii_bytes = _ascii_chunk(chunk)
    if ascii_bytes is not None:
        words = ascii_bytes.translate(_BYTES_KEEP_WORD).replace(b"\x00", b" \x00 ").split()
        ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
        separator = ids == 0
        return np.cumsum(separator)[~separator], ids[~separator]
    per_row = [[vocab[t.encode("utf-8", "surrogatepass")] for t in tokens(text)] for text in chunk]
    rows = np.repeat(np.arange(len(chunk)), [len(r) for r in per_row])
    return rows, np.fromiter((i for r in per_row for i in r), dtype=np.int64, count=rows.size)


def token_sets(texts: Iterable[str]) -> TokenSets:
    """Read once, so `texts` may be a stream; ids are int32 (4 bytes a token), tokens UTF-8 bytes."""
    vocab: defaultdict[bytes, int] = defaultdict()
    vocab.default_factory = vocab.__len__  # a new token gets the next id, without a Python-level call
    vocab[b"\x00"]  # id 0: the row separator inside a chunk, never a token
    ids, sizes = [np.empty(0, np.int32)], [np.empty(0, np.int64)]
    for chunk in _chunks(texts):
        rows, chunk_ids = _chunk_token_ids(chunk, vocab)
        keys = np.sort((rows << 32) | chunk_ids)  # a sort, not np.unique: its hash path is far slower here
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # each row's distinct ids, rows in order
        ids.append((keys & 0xFFFFFFFF).astype(np.int32))
        sizes.append(np.bincount(keys >> 32, minlength=len(chunk)))
    size_array = np.concatenate(sizes).astype(np.int64)
    starts = np.zeros(size_array.size, dtype=np.int64)
    np.cumsum(size_array[:-1], out=starts[1:])
    return TokenSets(np.concatenate(ids), starts, size_array, list(vocab))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before its permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def token_hash(token: str | bytes) -> int:
    """The 32-bit hash of a token's UTF-8 bytes (stable across processes, unlike hash())."""
    return zlib.crc32(token if isinstance(token, bytes) else token.encode("utf-8"))


def signature_columns(
    sets: TokenSets, rows: np.ndarray, num_perm: int = NUM_PERM, seed: int = SEED
) -> Iterator[np.ndarray]:
    """Column k of the MinHash signatures of `rows` (rows with at least one token), one at a time,
    so the whole (rows x num_perm) matrix is never held. The affine map is done in uint32, whose
    wrap-around is datasketch's mod 2^32."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    vocab_hash = _fmix32(np.fromiter((token_hash(t) for t in sets.vocab), dtype=np.uint32, count=len(sets.vocab)))
    every_row = rows.size == sets.sizes.size  # then the ids are already in row order: no gather
    hashed = vocab_hash[sets.ids if every_row else _gather(sets, rows)]
    offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(sets.sizes[rows][:-1], out=offsets[1:])
    work = np.empty_like(hashed)
    for k in range(num_perm):
        np.multiply(hashed, np.uint32(a[k] & 0xFFFFFFFF), out=work)
        np.add(work, np.uint32(b[k] & 0xFFFFFFFF), out=work)
        yield np.minimum.reduceat(work, offsets)


def signatures(sets: TokenSets, rows: np.ndarray, num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """MinHash signatures (len(rows), num_perm) of rows that have at least one token."""
    return np.stack(list(signature_columns(sets, rows, num_perm, seed)), axis=1)


def _gather(sets: TokenSets, rows: np.ndarray) -> np.ndarray:
    """The token ids of `rows`, concatenated in that order."""
    sizes = sets.sizes[rows]
    shift = np.repeat(sets.starts[rows] - (np.cumsum(sizes) - sizes), sizes)
    return sets.ids[np.arange(shift.size) + shift]


def _band_keys(columns: Iterable[np.ndarray]) -> np.ndarray:
    """One 64-bit key per row for a band of signature columns (collisions only add candidates)."""
    key = None
    for col in columns:
        if key is None:
            key = np.full(col.size, 0xCBF29CE484222325, dtype=np.uint64)
        key ^= col.astype(np.uint64)
        key *= np.uint64(0x100000001B3)
    return key


def _bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) index pairs, i < j, of rows sharing a key: every pair in a bucket of up to
    MAX_BUCKET + 1 rows; in a larger one, each row with the bucket's first MAX_BUCKET rows."""
    order = np.argsort(keys, kind="stable")  # ties keep row order, so a bucket is sorted by row
    sorted_keys = keys[order]
    new = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    bucket = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, keys.size])
    pos = np.arange(keys.size) - starts[bucket]
    members = np.flatnonzero(sizes[bucket] > 1)
    firsts, seconds = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for d in range(min(MAX_BUCKET, int(sizes.max(initial=1)) - 1)):
        members = members[pos[members] > d]
        firsts.append(order[starts[bucket[members]] + d])
        seconds.append(order[members])
    return np.concatenate(firsts), np.concatenate(seconds)


def _jaccard_pairs(sets: TokenSets, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each pair's token sets: the ids of both rows, keyed by pair and sorted;
    an id that occurs twice within a pair is in the intersection."""
    out = np.empty(first.size)
    vocab = max(len(sets.vocab), 1)
    cost = np.cumsum(sets.sizes[first] + sets.sizes[second])
    cuts = np.searchsorted(cost, np.arange(VERIFY_BATCH_TOKENS, cost[-1] if cost.size else 0, VERIFY_BATCH_TOKENS))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, first.size]):
        f, s = first[lo:hi], second[lo:hi]
        pair = np.arange(f.size, dtype=np.int64)
        keys = np.concatenate(
            [np.repeat(pair, sets.sizes[f]) * vocab + _gather(sets, f),
             np.repeat(pair, sets.sizes[s]) * vocab + _gather(sets, s)]
        )
        keys.sort()
        same = keys[1:] == keys[:-1]
        inter = np.bincount(keys[1:][same] // vocab, minlength=f.size)
        out[lo:hi] = inter / (sets.sizes[f] + sets.sizes[s] - inter)
    return out


def near_duplicates(
    texts: Iterable[str], threshold: float, *, num_perm: int = NUM_PERM, seed: int = SEED
) -> NearDuplicates:
    """Rows whose token-set Jaccard with an earlier kept row is >= threshold (0 < threshold <= 1).
    Rows without any token are left to exact dedupe. `texts` is read once (it may be a stream)."""
    sets = token_sets(texts)
    n = sets.sizes.size
    bands, per_band = band_shape(threshold, num_perm)
    result = NearDuplicates(rows=n, bands=bands, rows_per_band=per_band)
    rows = np.flatnonzero(sets.sizes > 0)
    if rows.size < 2:
        return result
    columns = signature_columns(sets, rows, num_perm, seed)
    codes = [np.empty(0, np.int64)]
    for _ in range(bands):
        i, j = _bucket_pairs(_band_keys(next(columns) for _ in range(per_band)))
        codes.append(rows[i] * n + rows[j])
    pairs = np.unique(np.concatenate(codes))  # sorted by first row, then second
    first, second = np.divmod(pairs, n)
    similarity = _jaccard_pairs(sets, first, second)
    similar = similarity >= threshold
    result.candidate_pairs = int(pairs.size)
    result.similar_pairs = int(similar.sum())
    dropped = result.duplicate_of
    for i, j, sim in zip(first[similar].tolist(), second[similar].tolist(), similarity[similar].tolist()):
        if i not in dropped and j not in dropped:
            dropped[j] = (i, sim)
    return result
