"""Measure the figures behind the floors of the slow tests in tests/test_ccm.py.

    python benchmarks/calibrate_ccm_floors.py [--seeds 0 1 2]

Runs the tests' own helpers on several seeds: the adjusted Rand index of the
learned channel clusters against the planted groups, and the zero-shot MSE
on unseen fertility countries against the last value. The test floors sit
below every seed measured here.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_ccm import _fertility_zero_shot, _recovery_experiment  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as under pytest-xdist
    for seed in args.seeds:
        ari = _recovery_experiment(seed)
        ccm, last_value = _fertility_zero_shot(seed)
        print(f"seed {seed}: planted-group ARI {ari:.3f}; unseen-country MSE CCM {ccm:.5f}, last value {last_value:.5f}",
              flush=True)


if __name__ == "__main__":
    main()
