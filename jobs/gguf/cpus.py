"""How many CPUs this process may use: its affinity, capped by a cgroup CPU quota.

os.cpu_count() reports the node's cores; in a pod limited to 2 CPUs on a 64-core
node, llama.cpp started with 64 threads spins on barriers and runs many times slower.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup (v2 cpu.max, else v1 cfs quota), or None when unlimited."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if quota_file.is_file() and period_file.is_file():
        quota = int(quota_file.read_text())
        return None if quota <= 0 else quota / int(period_file.read_text())
    return None


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    count = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota))) if quota else count
