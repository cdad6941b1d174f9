"""Fixtures that render the chart; the helpers live in chartlib."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import pytest

from tests.chart.chartlib import CHART, NAMESPACE, RELEASE, Render, objects


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render_raw(chart: helm.Chart) -> Callable[..., dict[str, str]]:
    def _render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
        return chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)

    return _render


@pytest.fixture(scope="session")
def render(render_raw: Callable[..., dict[str, str]]) -> Render:
    def _render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return objects(render_raw(values, namespace))

    return _render
