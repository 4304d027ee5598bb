"""Measure the figures behind the floors of the slow tests in tests/test_ccm.py.

    python benchmarks/calibrate_ccm_floors.py [--seeds 0 1 2 3 4]

Runs the tests' own helpers on several seeds: the adjusted Rand index and
the sharpness (mean largest assignment probability) of the learned channel
clusters against the planted groups, equal groups at noise 0.3 and unequal
ones (2, 4, 6 channels) at noise 0.5; and the zero-shot MSE on unseen
fertility countries against the last value. The test floors sit below
every seed measured here.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_ccm import _fertility_zero_shot, _recovery_experiment  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as under pytest-xdist
    for seed in args.seeds:
        ari, report = _recovery_experiment(seed)
        unequal, unequal_report = _recovery_experiment(seed, group_sizes=[2, 4, 6], noise=0.5)
        ccm, last_value = _fertility_zero_shot(seed)
        print(f"seed {seed}: planted ARI {ari:.3f} (sharpness {report.sharpness:.3f}), unequal groups ARI "
              f"{unequal:.3f} (sharpness {unequal_report.sharpness:.3f}); unseen-country MSE CCM {ccm:.5f}, "
              f"last value {last_value:.5f}", flush=True)


if __name__ == "__main__":
    main()
