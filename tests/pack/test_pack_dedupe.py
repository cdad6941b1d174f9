"""Exact and near-duplicate detection: tokens, MinHash = datasketch's, LSH never compares all pairs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given
from hypothesis import strategies as st

from jobs.pack import dedupe
from jobs.pack.dedupe import exact_duplicates, jaccard, near_duplicates, tokens


def test_tokens_are_lowercase_words_and_cjk_bigrams():
    assert tokens("Der Fluß, die STRASSE!") == ["der", "fluss", "die", "strasse"]
    assert tokens("我们明天去公园") == ["我们", "们明", "明天", "天去", "去公", "公园"]
    assert tokens("東京タワーは高い") == ["東京", "京タ", "タワ", "ワー", "ーは", "は高", "高い"]
    assert tokens("GPU 训练 ok 快") == ["gpu", "训练", "ok", "快"]
    assert tokens("ＡＢＣ full-width") == ["abc", "full", "width"]  # NFKC


def test_exact_duplicates_ignore_case_spacing_and_punctuation():
    texts = ["What is 2+2?", "what is 2 + 2", "What is 3+3?", "  WHAT   IS 2+2!! "]
    assert exact_duplicates(texts) == {1: 0, 3: 0}


def test_signatures_are_datasketch_minhashes():
    texts = ["the quick brown fox jumps over the lazy dog", "我们今天去公园散步", "Der schnelle braune Fuchs"]
    sets = dedupe.token_sets(texts)
    sig = dedupe.signatures(sets, np.arange(len(texts)))
    for row, text in zip(sig, texts):
        expected = MinHash(num_perm=dedupe.NUM_PERM, seed=dedupe.SEED, hashfunc=dedupe.token_hash)
        expected.update_batch(set(tokens(text)))
        assert np.array_equal(row, expected.hashvalues)


NEAR = {
    "english": (
        "How do I reset the password of my email account on the new phone app",
        "How do I reset the password of my email account on the new mobile app",
    ),
    "german": (
        "Wie kann ich das Passwort meines E-Mail-Kontos in der neuen Handy-App zurücksetzen",
        "Wie kann ich das Passwort meines E-Mail-Kontos in der neuen Handy-App schnell zurücksetzen",
    ),
    "chinese": (
        "请问如何在新的手机应用程序中重置我的电子邮件账户密码",
        "请问如何在新的手机应用程序里重置我的电子邮件账户密码",
    ),
}
DIFFERENT = [
    "Explain how photosynthesis turns light into chemical energy in plants",
    "Wie hoch ist die Zugspitze und wo liegt sie genau",
    "北京今天的天气怎么样，会下雨吗",
    "Write a haiku about autumn leaves falling in the park",
]


@pytest.mark.parametrize("language", NEAR)
def test_near_duplicates_found_per_language(language):
    a, b = NEAR[language]
    similarity = jaccard(a, b)
    assert 0.8 <= similarity < 1.0
    found = near_duplicates([a, *DIFFERENT, b], 0.8)
    assert found.duplicate_of == {5: (0, pytest.approx(similarity))}


def test_different_texts_are_not_merged():
    found = near_duplicates(DIFFERENT + [NEAR["english"][0], NEAR["german"][0], NEAR["chinese"][0]], 0.5)
    assert found.duplicate_of == {}


def test_threshold_is_applied_to_the_exact_jaccard():
    a, b = NEAR["german"]
    similarity = jaccard(a, b)
    assert near_duplicates([a, b], similarity).duplicate_of == {1: (0, pytest.approx(similarity))}
    assert near_duplicates([a, b], similarity + 0.01).duplicate_of == {}


def test_a_row_is_dropped_only_for_a_kept_row():
    # b is near a and near c, a and c are not near each other: b goes, c stays.
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven eight nine ten eleven twelve"
    c = "three four five six seven eight nine ten eleven twelve"
    assert jaccard(a, b) >= 0.8 and jaccard(b, c) >= 0.8 and jaccard(a, c) < 0.8
    assert set(near_duplicates([a, b, c], 0.8).duplicate_of) == {1}
    assert set(near_duplicates([b, a, c], 0.8).duplicate_of) == {1, 2}


def _planted(n: int, seed: int = 0) -> list[str]:
    """Random instructions over a 5000-word vocabulary; a fifth are one-word edits of earlier rows."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.2:
            base = rng.choice(out).split()
            base[rng.randrange(len(base))] = rng.choice(words)
            out.append(" ".join(base))
        else:
            out.append(" ".join(rng.choices(words, k=rng.randint(12, 30))))
    return out


def _all_pairs_greedy(texts: list[str], threshold: float) -> set[int]:
    """The reference: every pair compared, same keep-the-first rule."""
    sets = [set(tokens(t)) for t in texts]
    dropped: set[int] = set()
    for i in range(len(texts)):
        if i in dropped:
            continue
        for j in range(i + 1, len(texts)):
            if j not in dropped and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
                dropped.add(j)
    return dropped


def test_lsh_matches_all_pairs_on_a_sample():
    texts = _planted(600)
    expected = _all_pairs_greedy(texts, 0.8)
    found = near_duplicates(texts, 0.8)
    assert len(expected) > 50
    assert set(found.duplicate_of) == expected


def test_lsh_never_compares_all_pairs():
    n = 4000
    found = near_duplicates(_planted(n, seed=1), 0.8)
    assert found.similar_pairs > 500  # it found the planted duplicates ...
    assert found.candidate_pairs < 3 * found.similar_pairs  # ... by checking few more pairs than that,
    assert found.candidate_pairs < n * (n - 1) / 2 / 1000  # a tiny fraction of all pairs


def test_large_buckets_pair_each_member_with_the_first_rows():
    keys = np.zeros(200, dtype=np.uint64)  # one bucket of 200 rows
    first, second = dedupe._bucket_pairs(keys)
    assert len(first) == sum(min(k, dedupe.MAX_BUCKET) for k in range(200))
    assert (first < second).all() and set(first.tolist()) == set(range(dedupe.MAX_BUCKET))


def test_rows_without_tokens_and_tiny_inputs():
    assert near_duplicates([], 0.8).duplicate_of == {}
    assert near_duplicates(["only one"], 0.8).duplicate_of == {}
    assert near_duplicates(["!!!", "???", "same words", "same words"], 1.0).duplicate_of == {3: (2, 1.0)}


def test_band_shape_keeps_pairs_at_the_threshold_likely_candidates():
    for threshold in (0.5, 0.7, 0.8, 0.9, 1.0):
        bands, rows = dedupe.band_shape(threshold)
        assert bands * rows <= dedupe.NUM_PERM
        assert 1 - (1 - threshold**rows) ** bands >= dedupe.MIN_CANDIDATE_PROBABILITY


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_the_ascii_fast_path_equals_the_regex_path(text):
    assert dedupe.normalize(text) == dedupe._NOT_WORD.sub(" ", dedupe._fold(text)).strip()
    assert dedupe.tokens(text) == dedupe._WORD.findall(dedupe._fold(text))


def test_exact_duplicates_reads_a_stream_and_keeps_the_first_of_each_text():
    texts = ["Hello, world", "other", "hello world!", "HELLO   WORLD", "other", "third"]
    assert dedupe.exact_duplicates(iter(texts)) == {2: 0, 3: 0, 4: 1}
    assert dedupe.exact_duplicates(iter([])) == {} and dedupe.exact_duplicates(["one"]) == {}


def test_token_sets_and_exact_keys_of_chunks_equal_those_of_each_row(monkeypatch):
    """Chunks of ASCII rows are tokenized at once; chunks with other text, or a NUL, row by row."""
    monkeypatch.setattr(dedupe, "CHUNK_ROWS", 3)
    texts = ["Hello, World_1 again", "", "snake_case and CamelCase", "x\x00y z", "naïve café", "GPU 训练 ok",
             "  spaced   out!! ", "hello world_1 AGAIN"]
    sets = dedupe.token_sets(texts)
    for i, text in enumerate(texts):
        row = sets.ids[sets.starts[i]: sets.starts[i] + sets.sizes[i]]
        assert {sets.vocab[t].decode() for t in row} == set(tokens(text))
    keys = [k for chunk in dedupe._chunks(texts) for k in dedupe._exact_keys(chunk)]
    assert keys == [dedupe.normalize(t).encode() for t in texts]
