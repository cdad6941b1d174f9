"""The bench package lives at the repository root, next to jobs/ (it is not installed)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.train.trainkit import smollm2_tokenizer_dir, tiny_llama  # noqa: E402,F401  the smoke runs' model
