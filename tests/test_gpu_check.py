"""The GPU check's comparison machinery, tried CPU against CPU (no GPU needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _common import quick_row, workload_name  # noqa: E402


def test_a_seeded_workload_agrees_with_itself_and_a_device_dependent_one_does_not():
    import bench_local_id

    row = quick_row(workload_name(bench_local_id.quick), bench_local_id.quick, "cpu")
    assert row["what"].startswith("local IDs of 5,000 points")
    assert row["max_rel_diff"] == 0.0 and row["cpu_s"] > 0 and row["device_s"] > 0
    assert row["cpu/device"] == pytest.approx(row["cpu_s"] / row["device_s"])

    calls = []

    def drifting(device):
        # Each call returns a little more: the timed CPU run is the 2nd call, the timed device run the 4th.
        calls.append(device)
        return np.array([1.0, 2.0 + 1e-3 * len(calls)])

    assert quick_row("drifting", drifting, "cpu")["max_rel_diff"] == pytest.approx(2e-3 / 2.002)
