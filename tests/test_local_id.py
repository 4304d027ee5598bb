"""LocalIDEstimator: properties from the spec's §6, oracles, real data."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import betaln
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import requires_minilm
from sklearn_interp.manifold import (
    LocalIDEstimator,
    intrinsic_dimension,
    mean_lid_scorer,
    mean_local_id,
    twonn_loglik_scorer,
)
from sklearn_interp.manifold._local_id import (
    _nearest_neighbors,
    _nearest_within,
)
from sklearn_interp.testing import gaussian_clouds, linear_manifolds

# ---------------------------------------------------------------------------
# Independent NumPy oracles, written from the formulas with full distance
# matrices: slow, but nothing shared with the implementation.
# ---------------------------------------------------------------------------


# What the module promises of a distance: squared distances to
# _GRAM_RELATIVE_TOL (1e-10), so distances to 5e-11 relative, whichever batch
# or kernel computed them. A log ratio of two is then good to 1e-10 absolute,
# and a TwoNN dimension (n − 1) / Σ log μ, whose mean log μ is about 1 / ID,
# to 1e-10 · ID relative.
_DISTANCE_RTOL = 5e-11


def _lid_rtol(local_ids):
    """rtol between local IDs whose distances came from different batches."""
    return 2 * _DISTANCE_RTOL * max(float(np.nanmax(local_ids)), 1.0) * 2


def _distance_matrix(points):
    return np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))


def _neighbourhood_distances(points):
    """Sorted distances from every point to the others of the same set."""
    distances = _distance_matrix(points)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)


def _twonn_oracle(points, discard_fraction=0.1, drop_undefined=False):
    nearest = _neighbourhood_distances(points)
    with np.errstate(divide="ignore"):
        mu = np.sort(nearest[:, 1] / nearest[:, 0])
    if drop_undefined:  # scikit-dimension's rule: ratios of duplicates are removed
        mu = mu[np.isfinite(mu)]
    n = len(mu)
    kept = int(np.floor(n * (1 - discard_fraction)))
    x = np.log(mu[:kept])
    y = -np.log(1 - np.arange(1, kept + 1) / n)
    return (x @ y) / (x @ x)


def _mle_oracle(points, k):
    T = _neighbourhood_distances(points)[:, :k]
    per_point = (k - 1) / np.log(T[:, -1:] / T[:, :-1]).sum(1)
    return 1 / np.mean(1 / per_point)


def _gride_oracle(points, n1):
    T = _neighbourhood_distances(points)
    log_mu = np.log(T[:, 2 * n1 - 1] / T[:, n1 - 1])

    def negative_log_likelihood(log_d):
        d = np.exp(log_d)
        # log(μ^d − 1), written so that large d·log μ does not overflow.
        log_power_minus_one = d * log_mu + np.log(-np.expm1(-d * log_mu))
        return -np.sum(
            np.log(d) + (n1 - 1) * log_power_minus_one - ((2 * n1 - 1) * d + 1) * log_mu - betaln(n1, n1)
        )

    bounds = (np.log(1e-3), np.log(1e3))
    result = minimize_scalar(negative_log_likelihood, bounds=bounds, method="bounded", options={"xatol": 1e-12})
    return np.exp(result.x)


ORACLES = {
    "twonn": _twonn_oracle,
    "mle": lambda points: _mle_oracle(points, 5),
    "gride": lambda points: _gride_oracle(points, 2),
}
ORACLE_PARAMS = {"twonn": {}, "mle": {"mle_k": 5}, "gride": {"gride_n1": 2}}


def _local_oracle(X, n_neighbors, estimator):
    distances = _distance_matrix(X)
    np.fill_diagonal(distances, np.inf)
    neighbourhoods = np.argsort(distances, axis=1, kind="stable")[:, :n_neighbors]
    return np.array([ORACLES[estimator](X[rows]) for rows in neighbourhoods])


def _fit(X, **params):
    params.setdefault("device", "cpu")
    return LocalIDEstimator(**params).fit(X)


# ---------------------------------------------------------------------------
# Exactness of the algorithm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["twonn", "mle", "gride"])
@given(X=gaussian_clouds(min_samples=30, max_samples=80), n_neighbors=st.integers(8, 25))
def test_local_ids_equal_the_oracle_on_every_neighbourhood(X, n_neighbors, estimator):
    expected = _local_oracle(X, n_neighbors, estimator)
    fitted = _fit(X, n_neighbors=n_neighbors, estimator=estimator, **ORACLE_PARAMS[estimator])
    tolerance = 1e-6 if estimator == "gride" else 1e-9
    np.testing.assert_allclose(fitted.local_ids_, expected, rtol=tolerance)


@given(X=gaussian_clouds(min_samples=40, max_samples=120))
def test_global_id_equals_the_oracle(X):
    fitted = _fit(X, n_neighbors=10)
    np.testing.assert_allclose(fitted.global_id_, _twonn_oracle(X), rtol=1e-9)
    np.testing.assert_allclose(intrinsic_dimension(X, device="cpu"), _twonn_oracle(X), rtol=1e-9)


def test_gride_at_scale_one_is_the_twonn_likelihood():
    X = np.random.default_rng(0).standard_normal((300, 4))
    gride = _fit(X, n_neighbors=40, estimator="gride").local_ids_
    twonn_ml = _fit(X, n_neighbors=40, estimator="twonn_ml").local_ids_
    # GRIDE's n / Σ log μ against TwoNN-ML's (n − 1) / Σ log μ, from the same
    # distances: bisection resolves log d to the last bit of the bracket and the
    # score sums 40 terms, so the two agree to about 40 eps (1e-12 leaves 100×).
    np.testing.assert_allclose(gride, twonn_ml * 40 / 39, rtol=1e-12)


@given(X=gaussian_clouds(min_samples=30, max_samples=150, max_features=6), n_neighbors=st.integers(3, 40))
def test_neighbour_search_is_exact_in_both_precisions(X, n_neighbors):
    n_neighbors = min(n_neighbors, len(X) - 1)
    # float64 distances carry the documented guarantee (Gram-trick values
    # are kept only when provably within 5e-11); float32 ones are always
    # recomputed from differences.
    for dtype, rtol in ((torch.float64, 5e-11), (torch.float32, 1e-6)):
        X_t = torch.tensor(X - X.mean(0), dtype=dtype)
        # The oracle sees the rows as rounded to the working precision, in
        # float64: what is compared is the search, not the input rounding.
        rounded = X_t.double().numpy()
        expected = _distance_matrix(rounded)
        np.fill_diagonal(expected, np.inf)
        expected = np.sort(expected, axis=1)[:, :n_neighbors]
        distances, indices = _nearest_neighbors(X_t, X_t, n_neighbors, exclude_self=True, batch_size=16)
        np.testing.assert_allclose(distances.numpy(), expected, rtol=rtol)
        direct = np.linalg.norm(rounded[indices.numpy()] - rounded[:, None, :], axis=-1)
        np.testing.assert_allclose(distances.numpy(), direct, rtol=rtol)


def test_float32_uses_exact_distances_not_the_gram_trick():
    # Two tight clusters far apart: after centring, every point's norm is
    # 10⁴ times its nearest distance, and the Gram trick in float32 loses
    # those distances entirely. The search must notice and recompute them.
    rng = np.random.default_rng(0)
    offset = np.full(8, 100.0)
    X = np.vstack([offset, -offset]).repeat(100, axis=0) + 0.1 * rng.standard_normal((200, 8))
    float32 = _fit(X, n_neighbors=30, dtype="float32").local_ids_
    float64 = _fit(X, n_neighbors=30, dtype="float64").local_ids_
    np.testing.assert_allclose(float32, float64, rtol=1e-3)


def test_short_neighbour_lists_fall_back_to_brute_force():
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.standard_normal((60, 3)))
    distances, indices = _nearest_neighbors(X, X, 20, exclude_self=True, batch_size=None)
    # Truncated lists (3 entries) hold too few members for most points.
    nearest = _nearest_within(indices, indices[:, :3], distances[:, :3], X, n_nearest=2)
    for row, members in enumerate(indices.numpy()):
        expected = _neighbourhood_distances(X.numpy()[members])[:, :2]
        np.testing.assert_allclose(nearest[row].numpy(), expected, rtol=1e-12)


# ---------------------------------------------------------------------------
# The spec's invariants
# ---------------------------------------------------------------------------


# The spec asks for N ≥ 600. Its ±0.25·d bound on the global TwoNN was set
# from 5 seeds; at N = 600 the relative error of TwoNN itself
# (scikit-dimension gives the same numbers) exceeds it about once in 1 500
# draws. At N ≥ 2 000 the bound is far outside the estimator's spread, so a
# failure means a defect. benchmarks/calibrate_local_id_tolerance.py
# measures both.
@given(data=linear_manifolds(min_samples=2000, max_samples=2400))
def test_linear_subspaces_read_their_dimension(data):
    X, dim = data
    fitted = _fit(X, n_neighbors=100)
    assert abs(fitted.mean_local_id_ - dim) <= 0.3 * dim
    assert abs(fitted.global_id_ - dim) <= 0.25 * dim


@given(
    X=gaussian_clouds(),
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(-10, 10),
    scale=st.sampled_from([1e-3, 0.1, 7.0, 1e3]),
    n_neighbors=st.integers(5, 30),
)
def test_rigid_motions_and_scaling_leave_local_ids_unchanged(X, seed, shift, scale, n_neighbors):
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((X.shape[1], X.shape[1])))
    offset = shift * rng.standard_normal(X.shape[1])
    reference = _fit(X, n_neighbors=n_neighbors).local_ids_
    for moved in (X @ rotation.T + offset, scale * X):
        np.testing.assert_allclose(_fit(moved, n_neighbors=n_neighbors).local_ids_, reference, rtol=1e-9)


@given(X=gaussian_clouds(), n_padding=st.integers(1, 10), value=st.floats(-5, 5))
def test_constant_columns_leave_local_ids_unchanged(X, n_padding, value):
    padded = np.hstack([X, np.full((len(X), n_padding), value)])
    np.testing.assert_allclose(
        _fit(padded, n_neighbors=15).local_ids_, _fit(X, n_neighbors=15).local_ids_, rtol=1e-9
    )


@given(X=gaussian_clouds(), seed=st.integers(0, 2**32 - 1))
def test_permuting_rows_permutes_local_ids(X, seed):
    order = np.random.default_rng(seed).permutation(len(X))
    np.testing.assert_allclose(
        _fit(X[order], n_neighbors=15).local_ids_, _fit(X, n_neighbors=15).local_ids_[order], rtol=1e-9
    )


@given(X=gaussian_clouds(), seed=st.integers(0, 2**32 - 1), n_copies=st.integers(1, 20))
def test_duplicates_get_their_representatives_value(X, seed, n_copies):
    rng = np.random.default_rng(seed)
    copied = rng.integers(0, len(X), n_copies)
    with_copies = np.vstack([X, X[copied]])
    rng.shuffle(order := np.arange(len(with_copies)))
    fitted = _fit(with_copies[order], n_neighbors=15)
    local_ids = np.empty(len(with_copies))
    local_ids[order] = fitted.local_ids_
    original = _fit(X, n_neighbors=15).local_ids_
    np.testing.assert_allclose(local_ids[: len(X)], original, rtol=1e-9)
    np.testing.assert_allclose(local_ids[len(X) :], original[copied], rtol=1e-9)
    assert fitted.n_duplicates_ == len(with_copies) - len(np.unique(with_copies, axis=0))
    with pytest.raises(ValueError, match="duplicate row"):
        _fit(with_copies, n_neighbors=15, handle_duplicates="raise")


def test_keep_mode_drops_the_undefined_ratios_of_duplicates():
    X = np.random.default_rng(2).standard_normal((100, 4))
    X[1] = X[0]
    fitted = _fit(X, n_neighbors=99, handle_duplicates="keep")
    # Every neighbourhood is all other points; those holding both copies have
    # their two infinite ratios dropped and the CDF runs over the rest.
    expected = [_twonn_oracle(np.delete(X, i, axis=0), drop_undefined=True) for i in range(len(X))]
    np.testing.assert_allclose(fitted.local_ids_, expected, rtol=1e-9)


def test_a_neighbourhood_full_of_duplicates_is_undefined_and_counted():
    rng = np.random.default_rng(3)
    X = np.repeat(rng.standard_normal((10, 3)), 5, axis=0)
    with pytest.warns(UserWarning, match="undefined local ID"):
        fitted = _fit(X, n_neighbors=10, handle_duplicates="keep")
    assert fitted.n_undefined_ == len(X)


def test_near_duplicates_are_caught_by_duplicate_tol():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 3))
    X[-10:] = X[:10] + 1e-9 * rng.standard_normal((10, 3))
    clean = _fit(X[:-10], n_neighbors=30, estimator="twonn_ml").mean_local_id_
    # Ten near-copies: their ratios r2 / r1 ≈ 10⁹ drag the likelihood
    # estimate far down, unless duplicate_tol marks them undefined.
    loose = _fit(X, n_neighbors=30, estimator="twonn_ml")
    with pytest.warns(UserWarning, match="undefined local ID"):
        strict = _fit(X, n_neighbors=30, estimator="twonn_ml", duplicate_tol=1e-3)
    assert loose.mean_local_id_ < 0.6 * clean
    assert abs(strict.mean_local_id_ - clean) < 0.1 * clean
    assert 0 < strict.n_undefined_ < len(X) / 2


@given(seed=st.integers(0, 2**32 - 1))
def test_mean_local_id_grows_with_dimension(seed):
    rng = np.random.default_rng(seed)
    means = [
        _fit(rng.standard_normal((700, dim)) @ rng.standard_normal((dim, 12)), n_neighbors=100).mean_local_id_
        for dim in (2, 5)
    ]
    assert means[0] < means[1]


@given(X=gaussian_clouds(), estimator=st.sampled_from(["twonn", "twonn_ml", "mle", "gride"]))
def test_local_ids_are_positive_and_finite(X, estimator):
    fitted = _fit(X, n_neighbors=15, estimator=estimator, mle_k=5, gride_n1=2)
    assert np.isfinite(fitted.local_ids_).all() and (fitted.local_ids_ > 0).all()
    assert fitted.transform(X[:7] + 0.01).shape == (7, 1)
    assert fitted.fit_transform(X).shape == (len(X), 1)


def test_too_large_n_neighbors_warns_and_uses_all_other_points():
    X = np.random.default_rng(5).standard_normal((30, 3))
    with pytest.warns(UserWarning, match="not local anymore"):
        fitted = _fit(X, n_neighbors=100)
    assert fitted.n_neighbors_ == 29
    expected = [_twonn_oracle(np.delete(X, i, axis=0)) for i in range(len(X))]
    np.testing.assert_allclose(fitted.local_ids_, expected, rtol=1e-9)


def test_devices_agree(device):
    X = np.random.default_rng(6).standard_normal((300, 6))
    np.testing.assert_allclose(
        _fit(X, n_neighbors=30, device=device).local_ids_, _fit(X, n_neighbors=30).local_ids_, rtol=1e-6
    )


# ---------------------------------------------------------------------------
# New points, sub-sampling, smoothing
# ---------------------------------------------------------------------------


def test_transform_uses_the_neighbourhood_among_fitted_rows():
    rng = np.random.default_rng(7)
    X, new = rng.standard_normal((80, 3)), rng.standard_normal((5, 3))
    fitted = _fit(X, n_neighbors=20)
    distances = np.linalg.norm(X[None] - new[:, None], axis=-1)
    expected = [_twonn_oracle(X[np.argsort(row)[:20]]) for row in distances]
    np.testing.assert_allclose(fitted.transform(new).ravel(), expected, rtol=1e-9)
    assert mean_local_id(fitted, new) == pytest.approx(np.mean(expected))


def test_rows_left_out_by_max_samples_are_new_points():
    X = np.random.default_rng(8).standard_normal((300, 4))
    fitted = _fit(X, n_neighbors=30, max_samples=120, random_state=0)
    left_out = fitted.representative_ < 0
    assert left_out.sum() == 180 and len(fitted.X_fit_) == 120
    np.testing.assert_array_equal(fitted.X_fit_, X[fitted.sample_indices_])
    # Other batches give Gram-trick distances that agree to the promised 5e-11.
    np.testing.assert_allclose(fitted.local_ids_[left_out], fitted.transform(X[left_out]).ravel(), rtol=_lid_rtol(fitted.local_ids_))
    kept = _fit(X[fitted.sample_indices_], n_neighbors=30).local_ids_
    np.testing.assert_allclose(fitted.local_ids_[~left_out], kept, rtol=_lid_rtol(kept))


def test_smoothing_averages_over_the_neighbourhood():
    X = np.random.default_rng(9).standard_normal((100, 3))
    fitted = _fit(X, n_neighbors=10, smooth=True)
    expected = [np.mean([fitted.local_ids_[i], *fitted.local_ids_[fitted.neighbor_indices_[i]]]) for i in range(100)]
    np.testing.assert_allclose(fitted.local_ids_smooth_, expected, rtol=1e-12)


def test_score_samples_is_the_pareto_likelihood_of_held_out_ratios():
    rng = np.random.default_rng(10)
    X, new = rng.standard_normal((200, 2)), rng.standard_normal((10, 2))
    fitted = _fit(X, n_neighbors=30)
    distances = np.sort(np.linalg.norm(X[None] - new[:, None], axis=-1), axis=1)
    d = fitted.transform(new).ravel()
    log_mu = np.log(distances[:, 1] / distances[:, 0])
    # r1 and r2 are each promised to 5e-11 relative, so log μ to 1e-10 absolute
    # and the log-density, linear in log μ with slope d + 1, to (d + 1) · 1e-10.
    error = np.abs(fitted.score_samples(new) - (np.log(d) - (d + 1) * log_mu))
    assert np.all(error <= (d + 1) * 2 * _DISTANCE_RTOL + 1e-15 * np.abs(np.log(d))), error.max()
    assert np.isnan(fitted.score_samples(X[:1])).all()  # r1 = 0: a fitted row
    # score is their mean over the defined rows: the held-out criterion a search ranks by.
    assert fitted.score(np.vstack([new, X[:1]])) == pytest.approx(np.mean(fitted.score_samples(new)))
    assert twonn_loglik_scorer(fitted, new) == fitted.score(new)


# ---------------------------------------------------------------------------
# scikit-learn integration
# ---------------------------------------------------------------------------


def test_grid_search_selects_n_neighbors_with_the_likelihood_scorer():
    X = np.random.default_rng(11).standard_normal((400, 2)) @ np.random.default_rng(12).standard_normal((2, 6))
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LocalIDEstimator(device="cpu")),
        {"localidestimator__n_neighbors": [5, 20, 60]},
        scoring={"loglik": twonn_loglik_scorer, "mean_lid": mean_lid_scorer},
        refit="loglik",
        cv=3,
    ).fit(X)
    loglik = search.cv_results_["mean_test_loglik"]
    assert np.all(np.abs(search.cv_results_["mean_test_mean_lid"] - 2) < 0.6)
    # On a clean plane, LIDs from few neighbours are noisy and predict
    # held-out ratios worse than LIDs from more.
    assert loglik[0] < loglik[1] < loglik[2]
    assert search.best_params_["localidestimator__n_neighbors"] == 60


def _pieces_of_different_dimension(seed, n_per_piece=400, dimensions=(1, 3, 6), n_features=10):
    """Uniform cubes of dimensions 1, 3 and 6, rotated into 10-D and set 20 apart."""
    rng = np.random.default_rng(seed)
    pieces = []
    for i, dimension in enumerate(dimensions):
        basis = np.linalg.qr(rng.standard_normal((n_features, n_features)))[0][:dimension]
        pieces.append(rng.uniform(-1, 1, (n_per_piece, dimension)) @ basis + 20.0 * i * np.eye(n_features)[0])
    return np.vstack(pieces)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_search_picks_the_largest_neighbourhood_inside_one_piece(seed):
    # Planted truth: three pieces of about 267 training rows each. Up to that
    # size a neighbourhood sees one dimension and more neighbours only steady
    # its LID; 600 neighbours mix dimensions 1, 3 and 6 and mispredict every
    # piece. The default score (held-out likelihood) must see both effects.
    # (calibrate_search_floors.py --estimator local_id prints the curves.)
    X = _pieces_of_different_dimension(seed)
    grid = [10, 25, 60, 150, 600]
    search = GridSearchCV(
        LocalIDEstimator(device="cpu"), {"n_neighbors": grid}, cv=KFold(3, shuffle=True, random_state=0)
    ).fit(X)
    loglik = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"n_neighbors": 150}
    assert loglik[-1] < loglik[1:-1].min()


def test_pickle_round_trip(device):
    X = np.random.default_rng(13).standard_normal((120, 5))
    fitted = _fit(X, n_neighbors=20, device=device)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(X[:10] + 0.1), fitted.transform(X[:10] + 0.1))


def test_tensor_in_tensor_out_and_pandas_output(device):
    X = np.random.default_rng(14).standard_normal((80, 4))
    estimator = LocalIDEstimator(n_neighbors=20, device=device)
    out = estimator.fit_transform(torch.tensor(X, device=device))
    assert isinstance(out, torch.Tensor) and out.shape == (80, 1) and out.device.type == device
    frame = LocalIDEstimator(n_neighbors=20, device=device).set_output(transform="pandas").fit_transform(X)
    assert list(frame.columns) == ["local_id"]
    np.testing.assert_allclose(frame["local_id"].to_numpy(), out.cpu().numpy().ravel(), rtol=1e-12)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_rejected(bad):
    X = np.random.default_rng(15).standard_normal((20, 3))
    X[3, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        _fit(X)
    with pytest.raises(ValueError, match="NaN|infinity"):
        _fit(torch.tensor(X))


def test_too_few_samples_are_rejected():
    with pytest.raises(ValueError, match="minimum of 4"):
        _fit(np.random.default_rng(16).standard_normal((3, 2)))
    with pytest.raises(ValueError, match="at least 4 distinct rows"):
        _fit(np.repeat(np.eye(3), 4, axis=0))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_neighbors": 2}, "n_neighbors"),
        ({"estimator": "levina"}, "estimator"),
        ({"discard_fraction": 0.0}, "discard_fraction"),
        ({"handle_duplicates": "drop"}, "handle_duplicates"),
    ],
)
def test_invalid_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        _fit(np.random.default_rng(17).standard_normal((20, 3)), **params)


def test_estimator_reading_more_neighbours_than_a_neighbourhood_has():
    with pytest.raises(ValueError, match="mle_k=20 .* needs n_neighbors >= 21"):
        _fit(np.random.default_rng(18).standard_normal((50, 3)), n_neighbors=10, estimator="mle")


def test_transform_checks_the_number_of_features():
    fitted = _fit(np.random.default_rng(19).standard_normal((50, 3)), n_neighbors=10)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(np.zeros((2, 4)))


# ---------------------------------------------------------------------------
# Optional oracle: scikit-dimension
# ---------------------------------------------------------------------------


@given(X=gaussian_clouds(min_samples=120, max_samples=200, min_features=3, max_features=40))
def test_parity_with_scikit_dimension(X):
    skdim = pytest.importorskip("skdim", reason="scikit-dimension (the 'bench' extra) is not installed")
    expected = skdim.id.TwoNN().fit_pw(X, n_neighbors=50).dimension_pw_
    fitted = _fit(X, n_neighbors=50, handle_duplicates="keep")
    np.testing.assert_allclose(fitted.local_ids_, expected, rtol=1e-9)
    np.testing.assert_allclose(fitted.global_id_, skdim.id.TwoNN().fit(X).dimension_, rtol=1e-9)


@given(X=gaussian_clouds(min_samples=120, max_samples=200, min_features=3, max_features=15), seed=st.integers(0, 99))
def test_parity_with_scikit_dimension_on_duplicates(X, seed):
    # Up to 15 features scikit-dimension's neighbour search (a k-d tree) is
    # exact, so an exact duplicate has r1 = 0 and its ratio is dropped, as
    # with "keep". Beyond, scikit-learn switches to Gram-trick distances
    # that put r1 near 1e-7, and the duplicate's ratio enters the fit as a
    # huge finite number instead.
    skdim = pytest.importorskip("skdim", reason="scikit-dimension (the 'bench' extra) is not installed")
    X = np.vstack([X, X[seed % len(X)]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skdim.id.TwoNN().fit_pw(X, n_neighbors=50).dimension_pw_
    fitted = _fit(X, n_neighbors=50, handle_duplicates="keep")
    np.testing.assert_allclose(fitted.local_ids_, expected, rtol=1e-9)


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_digits_read_about_nine_dimensions():
    skdim = pytest.importorskip("skdim", reason="scikit-dimension (the 'bench' extra) is not installed")
    X = load_digits().data
    fitted = _fit(X, n_neighbors=100)
    # The spec measured mean 8.91 and global 8.91 with scikit-dimension.
    assert 8.0 < fitted.mean_local_id_ < 10.0
    assert 8.0 < fitted.global_id_ < 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skdim.id.TwoNN().fit_pw(X, n_neighbors=100).dimension_pw_
    keep = _fit(X, n_neighbors=100, handle_duplicates="keep")
    # Pixels are integers, so distances tie; where the 100th and 101st
    # neighbours tie, scikit-learn and torch may keep different ones. Every
    # neighbourhood that agrees must give the same LID, and every one that
    # differs must have such a tie.
    reference = NearestNeighbors(n_neighbors=100).fit(X).kneighbors(return_distance=False)
    same = np.array([set(a) == set(b) for a, b in zip(reference, keep.neighbor_indices_)])
    np.testing.assert_allclose(keep.local_ids_[same], expected[same], rtol=1e-9)
    squared = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)  # exact: integer pixels
    np.fill_diagonal(squared, np.inf)
    squared.sort(axis=1)
    assert np.all(squared[~same, 99] == squared[~same, 100])
    assert same.mean() > 0.9


@pytest.mark.slow
@requires_minilm
def test_minilm_token_embeddings_through_a_pipeline():
    from sklearn_interp.activations import TransformerActivations
    from sklearn_interp.datasets import load_python_docs

    texts = load_python_docs(n_sentences=300).data
    pipeline = make_pipeline(
        TransformerActivations(layer=5, site="residual", device="cpu"),
        LocalIDEstimator(n_neighbors=100, device="cpu"),
    )
    local_ids = pipeline.fit_transform(texts)
    fitted = pipeline[-1]
    assert local_ids.shape == (len(fitted.local_ids_), 1)
    assert fitted.n_undefined_ == 0
    # Token clouds of contextual models read a few dimensions out of 384
    # (the spec measured 3.5 to 5 on the same docstrings).
    assert 2.0 < fitted.mean_local_id_ < 12.0
    assert fitted.mean_local_id_ < fitted.X_fit_.shape[1] / 10


@pytest.mark.slow
def test_grokking_example_reproduces_the_lid_drop_before_generalisation():
    """The paper's training-dynamics claim, at CPU scale (the gallery example).

    Asserts what the example measures: the transformer memorises, then the
    mean LID of its residual stream starts to fall before test accuracy
    leaves its memorisation plateau, and the model does generalise. The
    tracker's table is the one the example plots.
    """
    import runpy
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    example = Path(__file__).parents[1] / "examples" / "plot_grokking_local_id.py"
    result = runpy.run_path(str(example))
    assert result["memorised"] < result["lid_onset"] < result["test_onset"]
    # Late training has loss spikes (Adam's "slingshots"), so the last checkpoint may sit in one.
    assert result["test_accuracy"].max() > 0.95
    assert result["history"]["step"].tolist() == list(range(0, 1201, 50))
