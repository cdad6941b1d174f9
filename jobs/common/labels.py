"""When a data source's answers are class labels: one rule for pack (which keeps such answers as
row labels, stratifies by them and reports the label set) and for the spec (which lets a
generative run gate on the labels it generates)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from jobs.common.spec import DataSource

# Column names that hold a class label (also the aliases pack maps to the label role).
LABEL_COLUMNS = ("label", "frame_name", "category", "class")


def answer_is_label(mapping: Mapping[str, str]) -> bool:
    """Whether rows read with this role -> column mapping answer with a label: text/label rows, or
    a generative mapping whose output is a label column (output: frame_name)."""
    if "instruction" in mapping and "output" in mapping:
        return mapping["output"] in LABEL_COLUMNS
    return "text" in mapping and "label" in mapping


def labelled_sources(sources: list[DataSource]) -> bool:
    """Whether every source's answers are labels, as far as the spec says: csv or json sources with a
    columns mapping (without one, pack picks the columns from the file's header)."""
    return bool(sources) and all(
        s.format in ("csv", "json") and bool(s.columns) and answer_is_label(s.columns) for s in sources
    )
