"""Fixtures of the train suite; they live in trainkit.py with the helpers they use."""

from tests.train.trainkit import make_run, smollm2_tokenizer_dir, tiny_bert, tiny_llama  # noqa: F401
