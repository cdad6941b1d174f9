"""Thread counts for llama.cpp follow the pod's CPU limit, not the node's core count."""

import os

from jobs.gguf.cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def test_cgroup_v2_quota_caps_the_count(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == AFFINITY
    (tmp_path / "cpu.max").write_text(f"{100000 * AFFINITY * 4} 100000\n")
    assert usable_cpus(tmp_path) == AFFINITY


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    assert usable_cpus(tmp_path) == AFFINITY
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(tmp_path) == AFFINITY
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
