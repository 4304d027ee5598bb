"""Measure the figures behind the floors of the training test in tests/test_consistency.py.

    python benchmarks/calibrate_consistency_floors.py [--seeds 0 1 2]

Runs the tests' own experiment helper on several seeds and prints accuracy,
consistency and stability, so the floors in the test sit below every seed
measured here.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_consistency import _part_objects_experiment  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as under pytest-xdist
    for seed in args.seeds:
        summary = _part_objects_experiment(seed)
        print(f"seed {seed}: " + ", ".join(f"{k} {summary[k]:.3f}" for k in ("accuracy", "consistency", "stability")),
              flush=True)


if __name__ == "__main__":
    main()
