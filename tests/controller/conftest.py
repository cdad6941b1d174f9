"""Fixtures of the controller suite; they live in harness.py with the helpers they use."""

from tests.controller.harness import cluster, emulator, kubeconfig, operators  # noqa: F401
