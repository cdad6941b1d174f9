"""The real control plane, once per session; see apiserver.py."""

from __future__ import annotations

import os

import pytest

from tests.cluster.apiserver import binaries, start


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    found = binaries()
    if found is None:
        if os.environ.get("FT_REQUIRE_CLUSTER") == "1":
            pytest.fail("FT_REQUIRE_CLUSTER=1 but etcd/kube-apiserver are not built: run `make cluster-bin`")
        pytest.skip("etcd and kube-apiserver not built (`make cluster-bin` builds them from Go modules)")
    plane = start(tmp_path_factory.mktemp("control-plane"), *found)
    yield plane
    plane.stop()
