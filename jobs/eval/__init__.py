"""The eval step: run an eval set against a model and check its answers."""
