"""Bi-cross-validation, the one-standard-error rule, and searches that recover a planted truth."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import nnls
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_interp.decomposition import MatchingPursuitSAE, SNMFDecomposer, TopKSAE
from sklearn_interp.manifold import LocalIDEstimator
from sklearn_interp.model_selection import (
    bicrossval_r2,
    bicrossval_scorer,
    dictionary_scoring,
    mean_l0,
    one_se_table,
    simplest_within_one_se,
)
from sklearn_interp.model_selection._bicrossval import _hidden_columns


def planted_semi_nmf(seed, n_samples=600, n_features=40, rank=6, noise=0.3):
    """Exponential (non-negative) codes times Gaussian features, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    codes = rng.exponential(1.0, (n_samples, rank))
    return codes @ rng.standard_normal((rank, n_features)) + noise * rng.standard_normal((n_samples, n_features))


def planted_sparse_codes(seed, n_samples=3000, n_features=48, n_atoms=12, n_active=3, noise=0.1, orthogonal=False):
    """Each row: 3 of 12 unit atoms with weights in [1, 2], plus noise; the atoms and the codes.

    Random atoms in 48-D are nearly orthogonal; ``orthogonal=True`` makes them exactly so.
    """
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((n_atoms, n_features))
    atoms = np.linalg.qr(atoms.T)[0].T if orthogonal else atoms / np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n_samples, n_atoms))
    for row in codes:
        row[rng.choice(n_atoms, n_active, replace=False)] = rng.uniform(1, 2, n_active)
    return codes @ atoms + noise * rng.standard_normal((n_samples, n_features)), atoms


# -- bi-cross-validation -----------------------------------------------------------------


def test_snmf_visible_codes_are_the_nnls_codes_of_the_visible_features():
    X = planted_semi_nmf(0, n_samples=80, n_features=12, rank=3)
    snmf = SNMFDecomposer(3, sparsity=None, transform_max_iter=2000, transform_tol=1e-12, dtype="float64",
                          random_state=0, device="cpu").fit(X)
    visible, hidden = _hidden_columns(12, 0.5, 0)
    assert len(hidden) == 6 and not set(visible) & set(hidden)
    X_t, _ = snmf._validate_tensor(X[:10], reset=False)
    codes = snmf._visible_codes(X_t, torch.as_tensor(visible)).numpy()
    expected = np.array([nnls(snmf.components_[:, visible].T, row[visible])[0] for row in X[:10]])
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-7)
    # And the score is the R² of the hidden features those codes predict.
    prediction = expected @ snmf.components_[:, hidden]
    hidden_X = X[:10][:, hidden]
    r2 = 1 - np.sum((hidden_X - prediction) ** 2) / np.sum((hidden_X - hidden_X.mean(0)) ** 2)
    assert bicrossval_r2(snmf, X[:10], random_state=0) == pytest.approx(r2, rel=1e-5)


@pytest.mark.parametrize("estimator", [MatchingPursuitSAE, TopKSAE])
def test_sae_visible_codes_with_every_feature_visible_are_the_transform(estimator):
    X, _ = planted_sparse_codes(0, n_samples=200, n_features=16, n_atoms=8)
    sae = estimator(8, 3, max_epochs=2, dtype="float64", random_state=0, device="cpu").fit(X)
    X_t, _ = sae._validate_tensor(X, reset=False)
    everything = torch.arange(16)
    np.testing.assert_allclose(sae._visible_codes(X_t, everything).numpy(), sae.transform(X), rtol=1e-10, atol=1e-12)


@given(st.integers(2, 50), st.floats(0.05, 0.95), st.integers(0, 2**31 - 1))
def test_hidden_columns_partition_the_features(n_features, fraction, seed):
    n_hidden = int(round(fraction * n_features))
    if n_hidden < 1 or n_hidden > n_features - 1:
        with pytest.raises(ValueError, match="at least one hidden and one visible"):
            _hidden_columns(n_features, fraction, seed)
        return
    visible, hidden = _hidden_columns(n_features, fraction, seed)
    assert sorted(np.r_[visible, hidden].tolist()) == list(range(n_features)) and len(hidden) == n_hidden
    np.testing.assert_array_equal(_hidden_columns(n_features, fraction, seed)[1], hidden)  # seeded


def test_bicrossval_scores_pipelines_pickles_and_rejects_other_models():
    X = planted_semi_nmf(1, n_samples=120, n_features=10, rank=2)
    pipe = make_pipeline(FunctionTransformer(lambda Z: 2 * Z), SNMFDecomposer(2, sparsity=None, random_state=0,
                                                                                device="cpu")).fit(X)
    scorer = pickle.loads(pickle.dumps(bicrossval_scorer(random_state=3)))
    assert scorer(pipe, X) == pytest.approx(bicrossval_r2(pipe[-1], 2 * X, random_state=3))
    assert "holdout_fraction=0.5" in repr(scorer)
    assert mean_l0(pipe, X) == pytest.approx(np.count_nonzero(pipe.transform(X), axis=1).mean())
    with pytest.raises(TypeError, match="cannot encode from a subset"):
        bicrossval_r2(LocalIDEstimator(10, device="cpu").fit(X), X)
    with pytest.raises(ValueError, match="holdout_fraction"):
        bicrossval_r2(pipe, X, holdout_fraction=1.5)
    with pytest.raises(ValueError, match="at least one hidden"):
        bicrossval_r2(pipe, X, holdout_fraction=0.01)


# -- the one-standard-error rule ------------------------------------------------------------


def _cv_results(params, split_scores):
    split_scores = np.asarray(split_scores, dtype=float)
    results = {"params": params, "mean_test_score": split_scores.mean(axis=1)}
    for i in range(split_scores.shape[1]):
        results[f"split{i}_test_score"] = split_scores[:, i]
    return results


def test_one_se_rule_takes_the_simplest_candidate_within_one_standard_error():
    params = [{"n_components": n} for n in (2, 4, 8, 16)]
    scores = [[0.50, 0.52, 0.48], [0.80, 0.82, 0.78], [0.84, 0.86, 0.82], [0.85, 0.88, 0.82]]
    table = one_se_table(_cv_results(params, scores), "n_components")
    # Best mean 0.85 with standard error std([.85, .88, .82], ddof=1)/√3 = 0.0173: 8 (0.84) is within, 4 (0.80) is not.
    assert table.loc[3, "standard_error"] == pytest.approx(np.std([0.85, 0.88, 0.82], ddof=1) / np.sqrt(3))
    assert table["within_one_se"].tolist() == [False, False, True, True]
    assert simplest_within_one_se("n_components")(_cv_results(params, scores)) == 2
    # Order is by complexity, not by position in the grid; None is the most complex.
    reordered = [{"sparsity": s} for s in (None, 0.1, 0.01)]
    flat = [[0.9, 0.9], [0.9, 0.9], [0.9, 0.9]]
    assert simplest_within_one_se("sparsity")(_cv_results(reordered, flat)) == 2
    # A function can order the other way: here None (read as 1.0) is the simplest.
    assert simplest_within_one_se(lambda p: -(p["sparsity"] or 1.0))(_cv_results(reordered, flat)) == 0


def test_one_se_rule_errors_name_the_problem():
    params = [{"n_components": 2}, {"n_components": 4}]
    with pytest.raises(KeyError, match="does not vary"):
        simplest_within_one_se("k")(_cv_results(params, [[1, 1], [1, 1]]))
    with pytest.raises(KeyError, match="per-split test scores for 'bicv'"):
        simplest_within_one_se("n_components", scoring="bicv")(_cv_results(params, [[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        simplest_within_one_se("n_components")(_cv_results(params, [[np.nan, np.nan], [np.nan, np.nan]]))
    with pytest.raises(TypeError, match="cannot order"):
        simplest_within_one_se("solver")(_cv_results([{"solver": "cd"}, {"solver": "mu"}], [[1, 1], [1, 1]]))
    assert "n_components" in repr(pickle.loads(pickle.dumps(simplest_within_one_se("n_components"))))


# -- searches that recover a planted truth -----------------------------------------------------
# Curves over seeds: benchmarks/calibrate_search_floors.py (held-out R² rises past
# the truth at every seed; bi-cross-validated R² peaks at it).


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snmf_search_with_bicrossval_and_one_se_picks_the_planted_rank(seed):
    X = planted_semi_nmf(seed)
    search = GridSearchCV(
        SNMFDecomposer(sparsity=None, random_state=0, device="cpu"), {"n_components": [2, 4, 6, 10, 16]},
        scoring=dictionary_scoring(random_state=0), refit=simplest_within_one_se("n_components", scoring="bicv_r2"),
        cv=5,
    ).fit(X)
    assert search.best_params_ == {"n_components": 6}
    # Held-out R² alone would have taken the largest dictionary.
    assert np.argmax(search.cv_results_["mean_test_r2"]) == 4


@pytest.mark.slow
def test_trained_topk_search_with_bicrossval_and_one_se_picks_the_planted_k():
    # End to end: the dictionary is learned in every fold (seeds 0-3 all pick
    # k = 3 in benchmarks/calibrate_search_floors.py --estimator topk).
    X, _ = planted_sparse_codes(0, n_samples=1500)
    search = GridSearchCV(
        TopKSAE(12, 3, max_epochs=10, learning_rate=1e-2, batch_size=128, random_state=0, device="cpu"),
        {"k": [1, 2, 3, 5, 8]},
        scoring=dictionary_scoring(random_state=0), refit=simplest_within_one_se("k", scoring="bicv_r2"), cv=3,
    ).fit(X)
    assert search.best_params_ == {"k": 3}
    # Held-out R² alone would have taken the most steps.
    assert np.argmax(search.cv_results_["mean_test_r2"]) == 4


@pytest.mark.parametrize("estimator", [MatchingPursuitSAE, TopKSAE])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_with_bicrossval_and_one_se_picks_the_planted_k_of_a_planted_dictionary(estimator, seed):
    # A pursuit step is not an active atom: on non-orthogonal atoms, greedy
    # pursuit leaves part of the signal after 3 steps and further steps on the
    # same atoms genuinely improve the fit (with the planted, nearly orthogonal
    # atoms the search rightly picked k = 5). With orthonormal planted atoms
    # as the dictionary (one epoch at a negligible rate), 3 steps recover the
    # signal and further steps only fit noise.
    X, atoms = planted_sparse_codes(seed, n_samples=1500, orthogonal=True)
    search = GridSearchCV(
        estimator(12, 3, init=atoms, fit_bias=False, max_epochs=1, learning_rate=1e-12, random_state=0, device="cpu"),
        {"k": [1, 2, 3, 5, 8]},
        scoring=dictionary_scoring(random_state=0), refit=simplest_within_one_se("k", scoring="bicv_r2"), cv=3,
    ).fit(X)
    assert search.best_params_ == {"k": 3}
    assert np.argmax(search.cv_results_["mean_test_r2"]) == 4
