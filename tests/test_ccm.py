"""ChannelClusterForecaster: the invariants of spec §8, the losses, windows, data and errors."""

import itertools
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score, r2_score
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from sklearn_interp.datasets import load_elnino, load_fertility, load_macrodata, make_channel_groups
from sklearn_interp.forecasting import (
    ChannelClusterForecaster,
    channel_cluster_loss,
    make_windows,
    rbf_channel_similarity,
)
from sklearn_interp.forecasting._ccm import _pooled_prototypes, _refreshed_prototypes
from sklearn_interp.testing import assert_allclose_across_batches, channel_windows

LOOKBACK, HORIZON, KERNEL = 16, 4, 5


def _grouped_windows(n_steps=300, n_channels=6, n_groups=2, seed=0, lookback=LOOKBACK, horizon=HORIZON):
    series, groups = make_channel_groups(n_steps, n_channels, n_groups, random_state=seed)
    X, y = make_windows(series, lookback, horizon)
    return X, y, groups


def _small_model(base="dlinear", **params):
    defaults = dict(
        n_clusters=3, decomposition_kernel=KERNEL, embed_dim=8, hidden_size=8, max_epochs=3,
        dtype="float64", random_state=0, device="cpu",
    )
    return ChannelClusterForecaster(base, **{**defaults, **params})


@pytest.fixture(scope="module")
def windows():
    return _grouped_windows()


@pytest.fixture(scope="module", params=["linear", "dlinear", "mlp"])
def agnostic_model(request, windows):
    X, y, _ = windows
    return _small_model(request.param).fit(X, y)


@pytest.fixture(scope="module")
def dlinear_model(windows):
    X, y, _ = windows
    return _small_model("dlinear").fit(X, y)


def _moving_average_oracle(z, kernel):
    # DLinear's trend, written as a loop over positions with the edges repeated.
    pad = (kernel - 1) // 2
    padded = np.concatenate([np.repeat(z[..., :1], pad, -1), z, np.repeat(z[..., -1:], pad, -1)], axis=-1)
    return np.stack([padded[..., t : t + kernel].mean(-1) for t in range(z.shape[-1])], axis=-1)


def _dlinear_oracle(model, X):
    """Every cluster head's forecast, recomputed in NumPy from the fitted weights (n, H, C, K)."""
    x = X.transpose(0, 2, 1)
    mean, scale = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
    z = (x - mean) / scale
    trend = _moving_average_oracle(z, model.decomposition_kernel)
    per_cluster = (
        np.einsum("ncl,klh->nckh", z - trend, model.seasonal_weights_)
        + model.seasonal_intercepts_
        + np.einsum("ncl,klh->nckh", trend, model.trend_weights_)
        + model.trend_intercepts_
    )
    per_cluster = per_cluster * scale[..., None] + mean[..., None]
    return per_cluster.transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------
# Spec §8 invariants
# ---------------------------------------------------------------------------


@given(data=st.data())
def test_cluster_proba_rows_are_distributions(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK))
    proba = agnostic_model.cluster_proba(X)
    assert proba.shape == (X.shape[0], X.shape[2], agnostic_model.n_clusters_)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=2), 1.0, rtol=1e-12)


@given(data=st.data())
def test_channel_permutation_equivariance(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK))
    order = np.asarray(data.draw(st.permutations(range(X.shape[2]))))
    np.testing.assert_allclose(agnostic_model.predict(X[:, :, order]), agnostic_model.predict(X)[:, :, order], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(agnostic_model.cluster_proba(X[:, :, order]), agnostic_model.cluster_proba(X)[:, order], atol=1e-12)


@given(data=st.data())
def test_window_assignment_makes_forecasts_sample_independent(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK, min_channels=2))
    rows = np.asarray(data.draw(st.lists(st.integers(0, X.shape[0] - 1), min_size=1, max_size=6)))
    np.testing.assert_allclose(agnostic_model.predict(X[rows]), agnostic_model.predict(X)[rows], rtol=1e-10, atol=1e-10)


def test_batch_assignment_makes_a_forecast_depend_on_its_batch_mates(windows):
    X, y, _ = windows
    # Without RevIN the batch-mean assignment stays far from one-hot on this data.
    model = _small_model("dlinear", assignment="batch", revin=False, batch_size=64).fit(X, y)
    # Batch-mates whose channels run backwards in time are assigned differently.
    batch = np.concatenate([X[:1], X[100:110, ::-1]])
    alone = model.predict(X[:1])
    with_others = model.predict(batch)[:1]
    assert np.abs(alone - with_others).max() > 1e-3
    # The per-window model of the same data is unaffected.
    window_model = _small_model("dlinear", revin=False, batch_size=64).fit(X, y)
    np.testing.assert_allclose(window_model.predict(X[:1]), window_model.predict(batch)[:1], atol=1e-12)


@given(data=st.data())
def test_revin_makes_forecasts_equivariant_to_positive_affine_maps(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK))
    n_channels = X.shape[2]
    a = np.asarray(data.draw(st.lists(st.floats(0.1, 10), min_size=n_channels, max_size=n_channels)))
    b = np.asarray(data.draw(st.lists(st.floats(-50, 50), min_size=n_channels, max_size=n_channels)))
    expected = a * agnostic_model.predict(X) + b
    np.testing.assert_allclose(agnostic_model.predict(a * X + b), expected, rtol=1e-7, atol=1e-7 * np.abs(b).max())


def test_forecast_mixes_the_cluster_heads_inside_their_convex_hull(dlinear_model, windows):
    X = windows[0][:40]
    per_cluster = _dlinear_oracle(dlinear_model, X)
    proba = dlinear_model.cluster_proba(X)
    forecast = dlinear_model.predict(X)
    np.testing.assert_allclose(forecast, np.einsum("nhck,nck->nhc", per_cluster, proba), rtol=1e-9, atol=1e-9)
    slack = 1e-9 * np.abs(per_cluster).max()
    assert np.all(forecast >= per_cluster.min(-1) - slack)
    assert np.all(forecast <= per_cluster.max(-1) + slack)


def test_one_cluster_is_the_shared_base_model(windows):
    X, y, _ = windows
    model = _small_model("dlinear", n_clusters=1).fit(X, y)
    assert model.channel_proba_.shape == (6, 1)
    np.testing.assert_allclose(model.cluster_proba(X[:5]), 1.0)
    # The shared DLinear forecast from the one head, written out in NumPy.
    np.testing.assert_allclose(model.predict(X[:20]), _dlinear_oracle(model, X[:20])[..., 0], rtol=1e-9, atol=1e-9)


@given(data=st.data())
def test_duplicate_channels_get_identical_assignments_and_forecasts(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK))
    source = data.draw(st.integers(0, X.shape[2] - 1))
    duplicated = np.concatenate([X, X[:, :, [source]]], axis=2)
    proba, forecast = agnostic_model.cluster_proba(duplicated), agnostic_model.predict(duplicated)
    # Equal to float64 rounding: BLAS may sum a row differently at another position.
    assert_allclose_across_batches(proba[:, -1], proba[:, source])
    assert_allclose_across_batches(forecast[:, :, -1], forecast[:, :, source])


@given(data=st.data())
def test_zero_shot_forecasts_any_channel_count(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK, max_channels=9))
    forecast, proba = agnostic_model.predict(X), agnostic_model.cluster_proba(X)
    assert forecast.shape == (X.shape[0], HORIZON, X.shape[2])
    assert proba.shape == (X.shape[0], X.shape[2], agnostic_model.n_clusters_)
    # Zero-shot means each channel is forecast from its own window alone: the
    # same channel given by itself gets the same clusters and forecast.
    channel = data.draw(st.integers(0, X.shape[2] - 1))
    assert_allclose_across_batches(agnostic_model.predict(X[:, :, [channel]])[:, :, 0], forecast[:, :, channel])
    assert_allclose_across_batches(agnostic_model.cluster_proba(X[:, :, [channel]])[:, 0], proba[:, channel])


def test_channel_mixing_base_refuses_another_channel_count(windows):
    X, y, _ = windows
    model = _small_model("tsmixer", n_blocks=1).fit(X, y)
    assert model.predict(X[:3]).shape == (3, HORIZON, 6)
    with pytest.raises(ValueError, match="mixes channels.*6 channels.*X has 4"):
        model.predict(X[:3, :, :4])


def test_similarity_is_symmetric_with_unit_diagonal(dlinear_model):
    similarity = dlinear_model.similarity_
    np.testing.assert_allclose(similarity, similarity.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-12)
    assert np.all(similarity > 0) and np.all(similarity <= 1 + 1e-12)


@pytest.mark.parametrize("base", ["dlinear", "tsmixer"])
def test_same_seed_same_model_and_pickle_round_trip(windows, base):
    X, y, _ = windows
    first = _small_model(base, max_epochs=2).fit(X, y)
    second = clone(first).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    restored = pickle.loads(pickle.dumps(first))
    np.testing.assert_array_equal(restored.predict(X), first.predict(X))
    np.testing.assert_array_equal(restored.prototypes_, first.prototypes_)


# ---------------------------------------------------------------------------
# The clustering losses and the prototype refresh
# ---------------------------------------------------------------------------


def _hard_assignments(n_channels, n_clusters):
    for labels in itertools.product(range(n_clusters), repeat=n_channels):
        yield labels, np.eye(n_clusters)[list(labels)]


def _within_oracle(S, labels, k):
    members = [i for i, label in enumerate(labels) if label == k]
    return sum(S[i, j] for i in members for j in members), len(members)


@given(data=st.data())
def test_losses_match_their_definitions_on_hard_assignments(data):
    windows = data.draw(channel_windows(lookback=6, min_channels=2, max_channels=4, max_windows=1))
    S = rbf_channel_similarity(torch.from_numpy(windows.transpose(0, 2, 1)))
    n_channels = S.shape[-1]
    for labels, M in _hard_assignments(n_channels, 2):
        within = [_within_oracle(S[0].numpy(), labels, k) for k in range(2)]
        # The paper's −tr(MᵀSM) + tr((I − MMᵀ)S) with tr S = C, and the ratio association.
        paper = n_channels - 2 * sum(a for a, _ in within)
        normalized = n_channels - sum(a / n for a, n in within if n)
        M_t = torch.from_numpy(M)[None]
        assert float(channel_cluster_loss(S, M_t, "paper")[0]) == pytest.approx(paper, rel=1e-12, abs=1e-12)
        assert float(channel_cluster_loss(S, M_t, "normalized")[0]) == pytest.approx(normalized, rel=1e-12, abs=1e-12)


@given(data=st.data())
def test_mean_reduction_divides_the_sum_by_its_number_of_terms(data):
    windows = data.draw(channel_windows(lookback=6, min_channels=2, max_channels=6, max_windows=3))
    S = rbf_channel_similarity(torch.from_numpy(windows.transpose(0, 2, 1)))
    n_windows, n_channels = S.shape[:2]
    proba = torch.from_numpy(np.random.default_rng(n_channels).dirichlet(np.ones(3), size=(n_windows, n_channels)))
    for kind, n_terms in (("paper", n_channels**2), ("normalized", n_channels)):
        summed = channel_cluster_loss(S, proba, kind, reduction="sum")
        averaged = channel_cluster_loss(S, proba, kind, reduction="mean")
        np.testing.assert_allclose(averaged.numpy() * n_terms, summed.numpy(), rtol=1e-12, atol=1e-12)


@given(data=st.data())
def test_paper_loss_is_minimised_by_one_cluster_and_normalized_is_not(data):
    windows = data.draw(channel_windows(lookback=8, min_channels=2, max_channels=5, max_windows=1))
    S = rbf_channel_similarity(torch.from_numpy(windows.transpose(0, 2, 1)))
    n_clusters = data.draw(st.integers(2, 3))
    assignments = [torch.from_numpy(M)[None] for _, M in _hard_assignments(S.shape[-1], n_clusters)]
    paper = np.array([float(channel_cluster_loss(S, M, "paper")[0]) for M in assignments])
    normalized = np.array([float(channel_cluster_loss(S, M, "normalized")[0]) for M in assignments])
    single = [i for i, M in enumerate(assignments) if int((M[0].sum(0) > 0).sum()) == 1]
    assert paper[single].min() == pytest.approx(paper.min(), abs=1e-12)
    # Channels that differ make S_ij < 1 somewhere: a split always does better.
    assert normalized.min() < normalized[single].min() - 1e-9


def _report_of(proba, similarity):
    from sklearn_interp.forecasting._ccm import _cluster_report

    return _cluster_report(np.asarray(proba, float), np.asarray(similarity, float), [f"c{i}" for i in range(len(proba))])


def test_cluster_report_computes_its_table_and_flags_each_failure():
    two_blocks = np.kron(np.eye(2), np.full((2, 2), 0.8)) + 0.1
    np.fill_diagonal(two_blocks, 1.0)
    sharp = [[0.9, 0.1], [0.95, 0.05], [0.2, 0.8], [0.0, 1.0]]
    report = _report_of(sharp, two_blocks)
    assert report.structure_found
    assert report.clusters["channels"].tolist() == ["c0, c1", "c2, c3"]
    np.testing.assert_allclose(report.clusters["mean_proba"], [0.925, 0.9])
    np.testing.assert_allclose(report.clusters["within_similarity"], [0.9, 0.9])
    np.testing.assert_allclose(report.clusters["between_similarity"], [0.1, 0.1])
    assert report.sharpness == pytest.approx(0.9125)
    assert report.normalized_sharpness == pytest.approx((0.9125 - 0.5) / 0.5)
    assert report.separation == pytest.approx(0.8)
    entropy = -np.mean([sum(p * np.log(p) for p in row if p > 0) for row in sharp]) / np.log(2)
    assert report.entropy == pytest.approx(entropy)
    assert "2 clusters" in str(report) and "c0, c1" in str(report)
    # Near-uniform assignments, one cluster for all, and clusters no more alike inside than across.
    uniform = _report_of([[0.55, 0.45], [0.5, 0.5], [0.45, 0.55], [0.4, 0.6]], two_blocks)
    assert not uniform.structure_found and "near uniform" in uniform.message
    single = _report_of([[1.0, 0.0]] * 4, two_blocks)
    assert not single.structure_found and "every channel prefers cluster 0" in single.message
    mixed = _report_of([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], two_blocks)
    assert not mixed.structure_found and "no more alike" in mixed.message


def test_cluster_report_on_new_windows_and_names(windows):
    X, y, _ = windows
    model = _small_model("linear").fit(X, y)
    on_training = model.cluster_report()
    again = model.cluster_report(X)
    # The training windows through X equal the stored statistics (float64 throughout).
    assert again.sharpness == pytest.approx(on_training.sharpness, rel=1e-10)
    named = model.cluster_report(X[:, :, :4], channel_names=list("abcd"))
    assert named.clusters["n_channels"].sum() == 4 and set(", ".join(named.clusters["channels"]).split(", ")) == set("abcd")
    with pytest.raises(ValueError, match="3 names for 6 channels"):
        model.cluster_report(channel_names=list("abc"))


def test_dead_and_duplicate_prototypes_are_reseeded_on_the_worst_fit_channel():
    from sklearn_interp.forecasting._ccm import _reseeded_prototypes

    prototypes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1e-4]], dtype=torch.float64)
    # Two windows of three channels: the third channel points along z, which no prototype fits.
    embeddings = torch.tensor(
        [[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.1, 0.0, 1.0]], [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.1, 2.0]]],
        dtype=torch.float64,
    )
    proba = torch.tensor([[[0.9, 0.05, 0.05], [0.0, 0.6, 0.4], [0.9, 0.05, 0.05]]] * 2, dtype=torch.float64)
    moved = _reseeded_prototypes(prototypes, embeddings, proba)
    # Prototype 2 duplicates prototype 1 (cosine > 0.999) and holds no channel: it takes the worst-fit embedding.
    np.testing.assert_array_equal(moved[:2].numpy(), prototypes[:2].numpy())
    np.testing.assert_array_equal(moved[2].numpy(), [0.0, 0.1, 2.0])
    # A cluster that holds a channel stays.
    np.testing.assert_array_equal(_reseeded_prototypes(prototypes[:2], embeddings, proba[..., :2]).numpy(), prototypes[:2].numpy())


@given(data=st.data())
def test_spectrum_features_ignore_the_phase_of_a_periodic_window(data):
    from sklearn_interp.forecasting._ccm import _channel_features

    period = data.draw(st.sampled_from([4, 6, 8, 12]))
    n_periods = data.draw(st.integers(2, 6))
    shift = data.draw(st.integers(0, period - 1))
    one_period = np.asarray(data.draw(st.lists(st.floats(-3, 3), min_size=period, max_size=period)))
    window = np.tile(one_period, n_periods)
    shifted = np.roll(window, shift)
    features = _channel_features(torch.from_numpy(np.stack([window, shifted])[None]), "spectrum")[0].numpy()
    np.testing.assert_allclose(features[0], features[1], rtol=1e-9, atol=1e-9)
    assert features.shape[-1] == window.size // 2 + 1


@given(data=st.data())
def test_trend_feature_tells_a_rising_window_from_a_falling_one(data):
    from sklearn_interp.forecasting._ccm import _channel_features

    n_steps = data.draw(st.integers(4, 40))
    noise = np.asarray(data.draw(st.lists(st.floats(-0.2, 0.2), min_size=n_steps, max_size=n_steps)))
    rising = np.linspace(-1, 1, n_steps) + noise
    rising = (rising - rising.mean()) / rising.std()
    features = _channel_features(torch.from_numpy(np.stack([rising, rising[::-1].copy()])[None]), "spectrum_trend")[0]
    spectrum = _channel_features(torch.from_numpy(np.stack([rising, rising[::-1].copy()])[None]), "spectrum")[0]
    # The amplitude spectrum cannot tell the two apart; the appended trend has opposite signs.
    np.testing.assert_allclose(spectrum[0].numpy(), spectrum[1].numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(features[:, :-1].numpy(), spectrum.numpy(), rtol=1e-12, atol=1e-12)
    time = (np.arange(n_steps) - (n_steps - 1) / 2) / np.arange(n_steps).std()
    expected = np.mean(rising * time) * np.sqrt(n_steps)
    assert float(features[0, -1]) == pytest.approx(expected, rel=1e-9)
    assert float(features[1, -1]) == pytest.approx(-expected, rel=1e-9)
    assert expected > 0


@pytest.fixture(scope="module")
def no_revin_windows_and_model():
    X, y, _ = _grouped_windows(n_steps=120)
    return X, _small_model("linear", revin=False).fit(X, y)


@given(data=st.data())
def test_without_revin_the_assignment_still_ignores_gains_and_offsets(no_revin_windows_and_model, data):
    X, model = no_revin_windows_and_model
    n_channels = X.shape[2]
    a = np.asarray(data.draw(st.lists(st.floats(0.1, 10), min_size=n_channels, max_size=n_channels)))
    b = np.asarray(data.draw(st.lists(st.floats(-5, 5), min_size=n_channels, max_size=n_channels)))
    np.testing.assert_allclose(model.cluster_proba(a * X[:8] + b), model.cluster_proba(X[:8]), rtol=1e-6, atol=1e-8)


def test_rbf_similarity_matches_its_formula():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(3, 5, 7))
    squared = ((windows[:, :, None] - windows[:, None]) ** 2).sum(-1)
    expected = np.exp(-5 * squared / squared.max(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(rbf_channel_similarity(torch.from_numpy(windows)).numpy(), expected, rtol=1e-10, atol=1e-12)
    flat = rbf_channel_similarity(torch.ones(1, 3, 4, dtype=torch.float64))
    np.testing.assert_array_equal(flat.numpy(), np.ones((1, 3, 3)))


def test_prototype_refresh_pools_members_and_keeps_empty_clusters():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], dtype=torch.float64)
    embeddings = torch.tensor([[[2.0, 0.0], [0.0, 4.0], [0.0, 2.0]]], dtype=torch.float64)
    membership = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    pooled, present = _pooled_prototypes(prototypes, embeddings, membership)
    assert present.tolist() == [[True, True, False]]
    np.testing.assert_allclose(pooled[0, 0].numpy(), [2.0, 0.0])
    # Cluster 1 attends to its two members by softmax(c·h/√d).
    weights = np.exp(np.array([4.0, 2.0]) / np.sqrt(2))
    weights /= weights.sum()
    np.testing.assert_allclose(pooled[0, 1].numpy(), weights @ np.array([[0.0, 4.0], [0.0, 2.0]]))
    refreshed = _refreshed_prototypes(prototypes, pooled, present, momentum=0.25)
    np.testing.assert_allclose(refreshed[0].numpy(), 0.25 * np.array([1.0, 0.0]) + 0.75 * np.array([2.0, 0.0]))
    np.testing.assert_array_equal(refreshed[2].numpy(), [5.0, 5.0])


def test_training_refreshes_the_prototypes_and_keeps_the_best_validation_epoch(windows):
    X, y, _ = windows
    model = _small_model("dlinear", max_epochs=6, patience=2, lr_schedule="constant", learning_rate=0.05).fit(X, y)
    initial = _small_model("dlinear", max_epochs=1).fit(X, y)
    assert not np.allclose(model.prototypes_, initial.prototypes_)
    assert model.validation_scores_[model.best_epoch_ - 1] == model.validation_scores_.min()
    # The kept weights are the best epoch's: training stopped later, the last epoch
    # scored otherwise, and the same seed trained for exactly best_epoch_ epochs
    # gives the same model.
    assert model.best_epoch_ < model.n_iter_
    assert model.validation_scores_[-1] != model.validation_scores_[model.best_epoch_ - 1]
    stopped_there = _small_model(
        "dlinear", max_epochs=model.best_epoch_, patience=100, lr_schedule="constant", learning_rate=0.05
    ).fit(X, y)
    assert_allclose_across_batches(model.predict(X), stopped_there.predict(X))
    np.testing.assert_allclose(stopped_there.prototypes_, model.prototypes_)
    assert len(model.loss_curve_) == model.n_iter_ == len(model.validation_scores_)


def test_dlinear_weight_maps_are_exposed(dlinear_model):
    assert dlinear_model.seasonal_weights_.shape == (3, LOOKBACK, HORIZON)
    assert dlinear_model.trend_weights_.shape == (3, LOOKBACK, HORIZON)
    assert dlinear_model.channel_labels_.shape == (6,)
    np.testing.assert_allclose(dlinear_model.channel_proba_.sum(1), 1.0)


# ---------------------------------------------------------------------------
# Windows, layouts, forecast and model selection
# ---------------------------------------------------------------------------


@given(
    n_steps=st.integers(5, 40),
    n_channels=st.integers(1, 3),
    lookback=st.integers(1, 6),
    horizon=st.integers(1, 4),
    stride=st.integers(1, 3),
)
def test_make_windows_matches_a_loop(n_steps, n_channels, lookback, horizon, stride):
    series = np.arange(n_steps * n_channels, dtype=float).reshape(n_steps, n_channels)
    if n_steps < lookback + horizon:
        with pytest.raises(ValueError, match="fewer than lookback"):
            make_windows(series, lookback, horizon, stride)
        return
    X, y = make_windows(series, lookback, horizon, stride)
    starts = range(0, n_steps - lookback - horizon + 1, stride)
    np.testing.assert_array_equal(X, np.stack([series[s : s + lookback] for s in starts]))
    np.testing.assert_array_equal(y, np.stack([series[s + lookback : s + lookback + horizon] for s in starts]))


def test_make_windows_takes_a_dataframe_and_refuses_a_1d_series():
    frame = load_macrodata()
    X, y = make_windows(frame, 8, 2)
    np.testing.assert_array_equal(X[0], frame.to_numpy()[:8])
    with pytest.raises(ValueError, match="must be 2-D.*reshape"):
        make_windows(np.arange(30.0), 4, 2)


def test_target_layouts_round_trip(windows):
    X, y, _ = windows
    flat = _small_model("linear", max_epochs=1).fit(X, y.reshape(len(y), -1))
    assert flat.predict(X[:2]).shape == (2, HORIZON * 6)
    np.testing.assert_allclose(flat.predict(X[:2]).reshape(2, HORIZON, 6), _small_model("linear", max_epochs=1).fit(X, y).predict(X[:2]))
    univariate = _small_model("linear", max_epochs=1).fit(X[:, :, 0], y[:, :, 0])
    assert univariate.predict(X[:3, :, 0]).shape == (3, HORIZON)
    one_step = _small_model("linear", max_epochs=1).fit(X[:, :, 0], y[:, 0, 0])
    assert one_step.predict(X[:3, :, 0]).shape == (3,)
    y_flat = y.reshape(len(y), -1)
    assert flat.score(X, y_flat) == pytest.approx(r2_score(y_flat, flat.predict(X)), rel=1e-12)
    # The 3-D layout scores the same outputs, flattened.
    assert flat.score(X, y) == pytest.approx(flat.score(X, y_flat), rel=1e-12)


def test_forecast_returns_a_frame_indexed_by_forecast_time():
    frame = load_macrodata()
    frame = (frame - frame.mean()) / frame.std()
    X, y = make_windows(frame.iloc[:150], 12, 4)
    model = _small_model("dlinear", max_epochs=2).fit(X, y)
    context = frame.iloc[138:150]
    forecast = model.forecast(context)
    assert list(forecast.columns) == list(frame.columns)
    assert list(forecast.index) == list(frame.index[150:154])
    np.testing.assert_allclose(forecast.to_numpy(), model.predict(context.to_numpy()[None])[0])
    assert model.forecast(context.to_numpy()).shape == (4, 12)


def test_grid_search_with_a_gapped_time_series_split(windows):
    X, y, _ = windows
    # The planted truth: a step size of 1e-7 leaves the model at its random start,
    # so every held-out window is forecast worse than with a step size that trains.
    search = GridSearchCV(
        _small_model("dlinear", max_epochs=4, lr_schedule="constant"),
        {"learning_rate": [1e-7, 3e-2], "beta": [0.0, 0.3]},
        cv=TimeSeriesSplit(n_splits=2, gap=LOOKBACK + HORIZON - 1),
        scoring="neg_mean_squared_error",
    ).fit(X, y.reshape(len(y), -1))
    scores = search.cv_results_["mean_test_score"].reshape(2, 2)  # beta × learning_rate
    assert np.all(scores[:, 1] > scores[:, 0] + 0.5)
    assert search.best_params_["learning_rate"] == 3e-2
    # The gap leaves no window whose span overlaps a test window's.
    for train, test in TimeSeriesSplit(n_splits=2, gap=LOOKBACK + HORIZON - 1).split(X):
        assert train.max() + LOOKBACK + HORIZON <= test.min()


def test_pipeline_and_tensors(windows, device):
    X, y, _ = windows
    model = _small_model("mlp", max_epochs=1, device=device)
    pipeline = Pipeline([("forecaster", model)]).fit(X, y)
    assert pipeline.predict(X[:2]).shape == (2, HORIZON, 6)
    X_t = torch.from_numpy(X[:4]).to(device)
    forecast = pipeline[-1].predict(X_t)
    assert isinstance(forecast, torch.Tensor) and forecast.device.type == torch.device(device).type
    np.testing.assert_allclose(forecast.cpu().numpy(), pipeline.predict(X[:4]), rtol=1e-10)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors(windows):
    X, y, _ = windows
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _small_model().fit(bad, y)
    bad_y = y.copy()
    bad_y[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        _small_model().fit(X, bad_y)
    with pytest.raises(ValueError, match="n_features = 16.*decomposition_kernel=25"):
        _small_model(decomposition_kernel=25).fit(X, y)
    with pytest.raises(ValueError, match="must be odd"):
        _small_model(decomposition_kernel=4).fit(X, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D"):
        _small_model().fit(X[:, 0, 0], y[:, 0, 0])
    with pytest.raises(ValueError, match="does not match X's 6 channel"):
        _small_model().fit(X, y[:, :, :5])
    with pytest.raises(ValueError, match="does not match X's 6 channel"):
        _small_model().fit(X, y.reshape(len(y), -1)[:, :-1])
    with pytest.raises(ValueError, match="windows but y has"):
        _small_model().fit(X, y[:-1])
    with pytest.raises(ValueError, match="requires y"):
        _small_model().fit(X, None)
    fitted = _small_model(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="16 features"):
        fitted.predict(X[:, :10])


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def test_statsmodels_tables_load_as_documented():
    macro = load_macrodata()
    assert macro.shape == (202, 12) and not macro.isna().any().any()
    # GDP growth: 100·Δlog of the level.
    from statsmodels.datasets import macrodata

    gdp = macrodata.load_pandas().data["realgdp"].to_numpy()
    np.testing.assert_allclose(macro["realgdp"].to_numpy(), 100 * np.diff(np.log(gdp)))
    fertility = load_fertility()
    assert fertility.shape == (52, 192) and not fertility.isna().any().any()
    elnino = load_elnino()
    assert elnino.shape == (732, 1)
    np.testing.assert_array_equal(load_elnino(as_channels=True).to_numpy().reshape(-1), elnino["sst"].to_numpy())
    assert isinstance(macro.index, pd.DatetimeIndex) and macro.index.freq is not None


def test_channel_groups_are_deterministic_and_grouped():
    series, groups = make_channel_groups(500, 9, 3, random_state=1)
    again, _ = make_channel_groups(500, 9, 3, random_state=1)
    np.testing.assert_array_equal(series, again)
    correlation = np.corrcoef(series.T)
    same = groups[:, None] == groups[None]
    off_diagonal = ~np.eye(9, dtype=bool)
    assert correlation[same & off_diagonal].min() > correlation[~same].max()
    with pytest.raises(ValueError, match="exceeds n_channels"):
        make_channel_groups(100, 2, 3)


def test_channel_groups_of_each_driver_kind_and_size():
    series, groups = make_channel_groups(
        600, 7, 3, drivers=["square", "random_walk", "sine"], group_sizes=[1, 2, 4], noise=0.0, random_state=0
    )
    assert groups.tolist() == [0, 1, 1, 2, 2, 2, 2]
    # Without noise every channel is gain · driver + offset with a positive gain: the same shape within a group.
    shapes = (series - series.mean(0)) / series.std(0)
    np.testing.assert_allclose(shapes[:, 1], shapes[:, 2], atol=1e-9)
    np.testing.assert_allclose(shapes[:, 3], shapes[:, 6], atol=1e-9)
    assert np.unique(np.round(shapes[:, 0], 9)).size == 2  # a square wave takes two values
    # A random walk's increments are white; a sine's are a sine.
    increments = np.diff(shapes[:, 1])
    assert abs(np.corrcoef(increments[:-1], increments[1:])[0, 1]) < 0.15
    mixed, mixed_groups = make_channel_groups(300, 6, 3, drivers="mixed", random_state=0)
    assert mixed.shape == (300, 6) and mixed_groups.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="group_sizes"):
        make_channel_groups(100, 6, 2, group_sizes=[2, 2])
    with pytest.raises(ValueError, match="drivers must name one of"):
        make_channel_groups(100, 6, 2, drivers=["sine", "sawtooth"])


# ---------------------------------------------------------------------------
# Slow: recovery of planted groups, zero-shot on real data
# ---------------------------------------------------------------------------


def _recovery_experiment(seed, **data_params):
    """The planted-group recovery of the test below (shared with benchmarks/calibrate_ccm_floors.py).

    12 channels in 3 groups driven by a sine, a square wave and a random walk,
    lookback 96, horizon 24, K = 3, a linear base, 30 epochs. Returns the ARI of
    the learned channel labels against the planted groups and the cluster report.
    """
    params = {"n_steps": 1000, "n_channels": 12, "n_groups": 3, "drivers": "mixed", **data_params}
    series, groups = make_channel_groups(**params, random_state=seed)
    series = (series - series[:700].mean(0)) / series[:700].std(0)
    X, y = make_windows(series[:700], 96, 24)
    model = ChannelClusterForecaster("linear", n_clusters=3, max_epochs=30, random_state=seed, device="cpu").fit(X, y)
    return adjusted_rand_score(groups, model.channel_labels_), model.cluster_report()


@pytest.mark.slow
def test_planted_channel_groups_are_recovered_sharply():
    # Floors from benchmarks/calibrate_ccm_floors.py: ARI 1.00 on seeds 0-4 for both data sets, mean largest
    # probability 1.000 (equal groups) and >= 0.998 (unequal); before the spectrum-and-trend features and the
    # dead-cluster re-seeding the equal groups gave ARI 0.81 on average.
    ari, report = _recovery_experiment(0)
    assert ari >= RECOVERY_FLOOR
    assert report.structure_found and report.sharpness >= 0.95
    unequal, unequal_report = _recovery_experiment(1, group_sizes=[2, 4, 6], noise=0.5)
    assert unequal >= RECOVERY_FLOOR and unequal_report.structure_found


RECOVERY_FLOOR = 0.9


def test_report_finds_no_structure_in_independent_channels():
    # i.i.d. white-noise channels: nothing groups them, whatever the model learns.
    noise = np.random.default_rng(0).normal(size=(500, 9))
    X, y = make_windows(noise, 48, 8)
    model = ChannelClusterForecaster("linear", n_clusters=3, max_epochs=10, random_state=0, device="cpu").fit(X, y)
    report = model.cluster_report()
    assert not report.structure_found and "No cluster structure found" in report.message
    assert report.clusters["n_channels"].sum() == 9


def _fertility_zero_shot(seed):
    """MSE of CCM and of the last value on countries never seen in training."""
    fertility = load_fertility()
    rng = np.random.default_rng(0)
    seen = rng.permutation(fertility.shape[1])[:115]
    unseen = np.setdiff1d(np.arange(fertility.shape[1]), seen)
    values = fertility.to_numpy()
    X, y = make_windows(values[:40, seen], 10, 5)
    model = ChannelClusterForecaster(
        n_clusters=4, decomposition_kernel=5, batch_size=4, lr_schedule="constant", max_epochs=200, patience=20,
        random_state=seed, device="cpu",
    ).fit(X, y)
    X_new, y_new = make_windows(values[:, unseen], 10, 5)
    ccm = np.mean((model.predict(X_new) - y_new) ** 2)
    last_value = np.mean((X_new[:, -1:, :] - y_new) ** 2)
    return ccm, last_value


@pytest.mark.slow
def test_zero_shot_on_unseen_countries_beats_the_last_value():
    ccm, last_value = _fertility_zero_shot(0)
    assert ccm < last_value


# -- transform: the clustering a Pipeline passes on --------------------------------------------------------------


@given(data=st.data())
def test_transform_rows_are_distributions_over_clusters_per_channel(agnostic_model, data):
    X = data.draw(channel_windows(lookback=LOOKBACK))
    flat = agnostic_model.transform(X)
    K = agnostic_model.n_clusters_
    assert flat.shape == (X.shape[0], X.shape[2] * K)
    per_channel = flat.reshape(X.shape[0], X.shape[2], K)
    assert np.all(per_channel >= 0)
    np.testing.assert_allclose(per_channel.sum(axis=2), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(per_channel, agnostic_model.cluster_proba(X))


def test_transform_names_tensors_pipeline_and_pickle(windows, device):
    import pickle

    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    X, y, _ = windows
    model = _small_model("linear", device=device).fit(X, y)
    names = model.get_feature_names_out()
    assert len(names) == X.shape[2] * 3 and names[0] == "channel0_cluster0" and names[4] == "channel1_cluster1"
    frame = model.set_output(transform="pandas").transform(X[:5])
    assert list(frame.columns) == list(names)
    model.set_output(transform="default")
    as_tensor = model.transform(torch.as_tensor(X[:5], device=device))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.device.type == torch.device(device).type
    np.testing.assert_array_equal(as_tensor.cpu().numpy(), model.transform(X[:5]))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).transform(X[:5]), model.transform(X[:5]))
    pipe = make_pipeline(_small_model("linear", device=device), PCA(2)).fit(X, y)
    assert pipe.transform(X[:7]).shape == (7, 2)


# -- forecast errors over every (window, step, channel) ---------------------------------------------------------


@given(data=st.data())
def test_forecast_errors_match_numpy_and_take_window_weights(data):
    from sklearn_interp.forecasting import forecast_mae, forecast_mse

    shape = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    y_true, y_pred = rng.normal(size=shape), rng.normal(size=shape)
    weights = rng.uniform(0.1, 2.0, size=shape[0])
    assert forecast_mse(y_true, y_pred) == pytest.approx(np.mean((y_true - y_pred) ** 2), rel=1e-12)
    assert forecast_mae(y_true, y_pred) == pytest.approx(np.mean(np.abs(y_true - y_pred)), rel=1e-12)
    per_window = ((y_true - y_pred) ** 2).reshape(shape[0], -1).mean(1)
    expected = np.sum(weights * per_window) / weights.sum()
    assert forecast_mse(y_true, y_pred, sample_weight=weights) == pytest.approx(expected, rel=1e-12)
    # The flattened layout gives the same figure.
    assert forecast_mse(y_true.reshape(shape[0], -1), y_pred.reshape(shape[0], -1)) == pytest.approx(
        forecast_mse(y_true, y_pred), rel=1e-12
    )
    assert forecast_mse(torch.from_numpy(y_true), torch.from_numpy(y_pred)) == pytest.approx(
        forecast_mse(y_true, y_pred), rel=1e-12
    )


def test_forecast_error_scorers_in_a_search_and_bad_input(windows):
    from sklearn_interp.forecasting import forecast_mse, neg_forecast_mae_scorer, neg_forecast_mse_scorer

    X, y, _ = windows
    model = _small_model("linear").fit(X, y)
    assert neg_forecast_mse_scorer(model, X, y) == pytest.approx(-forecast_mse(y, model.predict(X)), rel=1e-12)
    assert neg_forecast_mae_scorer(model, X, y) < 0
    search = GridSearchCV(
        _small_model("linear", max_epochs=2), {"learning_rate": [1e-7, 1e-2]},
        cv=TimeSeriesSplit(n_splits=2, gap=LOOKBACK + HORIZON - 1),
        scoring={"mse": neg_forecast_mse_scorer, "mae": neg_forecast_mae_scorer}, refit="mse",
    ).fit(X, y)
    # A step of 1e-7 leaves the model at its random start: the trained one forecasts better.
    assert search.best_params_ == {"learning_rate": 1e-2}
    with pytest.raises(ValueError, match="y_true has shape"):
        forecast_mse(y, y[:, :2])
    bad = y.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        forecast_mse(bad, y)


@pytest.mark.parametrize("features", ["window", "spectrum", "spectrum_trend"])
def test_every_assigner_input_fits_and_keeps_the_invariants(windows, features):
    X, y, _ = windows
    model = _small_model("linear", channel_features=features, max_epochs=2).fit(X, y)
    proba = model.cluster_proba(X[:10])
    np.testing.assert_allclose(proba.sum(axis=2), 1.0, rtol=1e-12)
    order = np.random.default_rng(0).permutation(X.shape[2])
    np.testing.assert_allclose(model.predict(X[:10][:, :, order]), model.predict(X[:10])[:, :, order], rtol=1e-10, atol=1e-10)
