"""Tokenize once in a distributed step: rank 0 tokenizes (and packs' checks run there), writes
the rows to the store under runs/<ns>/<run>/train/tokenized/<name>/ (checksummed, manifest last)
and tells the other ranks, which read them instead of tokenizing the whole set themselves.

Rank 0's outcome is broadcast, so that bad data fails every rank with rank 0's message at once
rather than leaving the others waiting. A single process just tokenizes.

`share_through(ctx)` is called once per process by the train step before the method prepares
its data; `once(name, tokenize)` is what a method calls; `clear()` drops the shared rows once the
step's output is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jobs.common import artifacts, keys, ranks
from jobs.common.errors import FtError, InvalidData
from jobs.common.stepctx import StepContext
from jobs.common.store import Store

log = logging.getLogger(__name__)


@dataclass
class _Share:
    store: Store
    prefix: str
    scratch: Path


_share: _Share | None = None


def share_through(ctx: StepContext) -> None:
    global _share
    _share = _Share(ctx.store, keys.join(keys.step_prefix(ctx.namespace, ctx.name, "train"), "tokenized"),
                    ctx.scratch / "tokenized")


def once(name: str, tokenize: Callable[[], Any]) -> Any:
    """The datasets.Dataset `tokenize()` makes, made by rank 0 only."""
    if ranks.world_size() == 1 or _share is None:
        return tokenize()
    import torch.distributed as dist

    key, local = keys.join(_share.prefix, name), _share.scratch / name
    if ranks.is_main():
        outcome: list[Any] = [None]
        try:
            rows = tokenize()
            rows.save_to_disk(str(local))
            artifacts.commit_tree(_share.store, key, local, {"step": "train", "kind": "tokenized", "rows": len(rows)})
        except Exception as err:
            outcome = [(err.code, err.message) if isinstance(err, FtError) else ("Crash", f"{type(err).__name__}: {err}")]
            raise
        finally:
            dist.broadcast_object_list(outcome, src=0)
        log.info("rank 0 tokenized %s: %d rows, shared through the store", name, len(rows))
        return rows
    outcome = [None]
    dist.broadcast_object_list(outcome, src=0)
    if outcome[0] is not None:
        code, message = outcome[0]
        raise InvalidData(f"rank 0: {message}", code=code)
    from datasets import load_from_disk

    manifest = artifacts.read_tree(_share.store, key)
    if manifest is None:
        raise InvalidData(f"the tokenized rows {key} rank 0 wrote are not in the store")
    rows = load_from_disk(str(artifacts.fetch(_share.store, manifest, local)))
    log.info("rank %d read %s from rank 0: %d tokenized rows", ranks.rank(), name, len(rows))
    return rows


def clear() -> None:
    if _share is not None and ranks.is_main():
        for name in {k[len(_share.prefix) + 1 :].split("/")[0] for k in _share.store.list(_share.prefix)}:
            artifacts.delete_tree(_share.store, keys.join(_share.prefix, name))
