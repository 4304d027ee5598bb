"""LocalIDTracker: the mean local ID of a fixed sample through training, from embeddings, checkpoints or a callback."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from sklearn_interp.activations import TransformerActivations
from sklearn_interp.manifold import LocalIDEstimator, LocalIDTracker
from sklearn_interp.neural_network import TorchMLPClassifier
from sklearn_interp.testing import REORDERING_RTOL, tiny_causal_lm, zen_of_python


def _cloud(rng, n_rows, dimension, n_features=12):
    return rng.standard_normal((n_rows, dimension)) @ rng.standard_normal((dimension, n_features))


def test_the_table_equals_the_estimator_run_by_hand_on_the_fixed_sample():
    rng = np.random.default_rng(0)
    clouds = {step: {"train": _cloud(rng, 300, 3 + step), "valid": _cloud(rng, 200, 2)} for step in range(3)}
    tracker = LocalIDTracker(n_neighbors=20, n_samples=150, random_state=0)
    for step, splits in clouds.items():
        for split, X in splits.items():
            tracker.record(step, X, split=split, accuracy=0.1 * step)
    table = tracker.table()
    assert list(table.columns) == [
        "step", "split", "n_samples", "mean_lid", "median_lid", "std_lid", "n_undefined", "accuracy",
    ]
    assert len(table) == 6
    for _, row in table.iterrows():
        rows, n_rows = tracker.sample_indices_[(row["split"], None)]
        assert n_rows == len(clouds[row["step"]][row["split"]]) and len(rows) == 150 == row["n_samples"]
        by_hand = LocalIDEstimator(20).fit(clouds[row["step"]][row["split"]][rows])
        np.testing.assert_allclose(
            [row["mean_lid"], row["median_lid"], row["std_lid"]],
            [by_hand.mean_local_id_, by_hand.median_local_id_, by_hand.std_local_id_],
            rtol=REORDERING_RTOL[np.dtype(np.float64)],  # the same float64 computation on the same rows
        )
        assert row["accuracy"] == pytest.approx(0.1 * row["step"])


def test_the_sample_is_drawn_once_per_split_whatever_the_order_of_first_use():
    rng = np.random.default_rng(1)
    X_a, X_b = _cloud(rng, 100, 3), _cloud(rng, 80, 3)
    first = LocalIDTracker(n_neighbors=10, n_samples=40, random_state=3)
    first.record(0, X_a, split="a")
    first.record(0, X_b, split="b")
    second = LocalIDTracker(n_neighbors=10, n_samples=40, random_state=3)
    second.record(0, X_b, split="b")
    second.record(0, X_a, split="a")
    for key in (("a", None), ("b", None)):
        np.testing.assert_array_equal(first.sample_indices_[key][0], second.sample_indices_[key][0])
    # Later steps reuse the rows of the first.
    first.record(1, X_a * 2.0, split="a")
    table = first.table()
    a_rows = table[table["split"] == "a"]
    # Scaling every point leaves every ratio of distances, hence every TwoNN estimate, unchanged.
    assert a_rows["mean_lid"].iloc[1] == pytest.approx(a_rows["mean_lid"].iloc[0], rel=1e-9)


def test_bad_input_gets_a_clear_error():
    rng = np.random.default_rng(2)
    tracker = LocalIDTracker(n_neighbors=30)
    with pytest.raises(ValueError, match=r"has 20 samples at step 4, but n_neighbors=30 needs at least 31"):
        tracker.record(4, _cloud(rng, 20, 3))
    tracker = LocalIDTracker(n_neighbors=10)
    tracker.record(0, _cloud(rng, 50, 3), split="valid")
    with pytest.raises(ValueError, match=r"split 'valid' had 50 rows at its first step and has 49 at step 1"):
        tracker.record(1, _cloud(rng, 49, 3), split="valid")
    repeated = np.repeat(_cloud(rng, 8, 3), 4, axis=0)  # 32 rows, 8 distinct
    with pytest.raises(ValueError, match="only 8 distinct rows at step 0"):
        tracker.record(0, repeated, split="copies")
    with pytest.raises(ValueError, match="2-D"):
        tracker.record(0, np.zeros(40), split="flat")
    with pytest.raises(ValueError, match="No metric 'accuracy'"):
        tracker.lag_correlation("accuracy")
    with pytest.raises(ValueError, match="n_neighbors"):
        LocalIDTracker(n_neighbors=2).record(0, _cloud(rng, 50, 3))


def test_lag_correlation_finds_a_planted_lead_of_one_step():
    # Accuracy gains one step after each fall of the mean LID, in proportion to it.
    rng = np.random.default_rng(4)
    dimensions = [6, 6, 3, 3, 3, 7, 7, 2, 2, 5, 5, 5, 2]
    tracker = LocalIDTracker(n_neighbors=30, random_state=0)
    accuracy = 0.0
    for step, dimension in enumerate(dimensions):
        if step >= 2:
            accuracy += 0.02 * max(0, dimensions[step - 2] - dimensions[step - 1])
        tracker.record(step, _cloud(rng, 400, dimension, n_features=10), split="train", accuracy=accuracy)
    correlations = tracker.lag_correlation("accuracy", lags=(0, 1, 2)).set_index("lag")
    assert correlations["n_pairs"].tolist() == [12, 11, 10]
    # The oracle: Pearson's r of the fall at t and the gain at t + lag, by hand.
    table = tracker.table()
    fall, gain = -np.diff(table["mean_lid"].to_numpy()), np.diff(table["accuracy"].to_numpy())
    for lag in (0, 1, 2):
        x, y = fall[: len(fall) - lag], gain[lag:]
        expected = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
        assert correlations.loc[lag, "correlation"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert correlations.loc[1, "correlation"] > 0.6 > 0.3 > correlations.loc[0, "correlation"]
    as_loss = tracker.lag_correlation("accuracy", lags=(1,), higher_is_better=False)["correlation"]
    assert as_loss.iloc[0] == pytest.approx(-correlations.loc[1, "correlation"])
    with pytest.raises(ValueError, match="non-negative"):
        tracker.lag_correlation("accuracy", lags=(-1,))


def _mlp_data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


def _mlp(**params):
    return TorchMLPClassifier(
        hidden_layer_sizes=(16,), max_epochs=4, batch_size=32, random_state=0, device="cpu", **params
    )


def test_as_a_callback_it_records_every_epoch_without_changing_training():
    X, y = _mlp_data()
    plain = _mlp().fit(X, y)
    tracker = LocalIDTracker(n_neighbors=10, probes={"train": X[:60], "valid": X[60:]}, embed="layers.1")
    tracked = _mlp(callbacks=[("lid", tracker)]).fit(X, y)
    for a, b in zip(plain.module_.state_dict().values(), tracked.module_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    table = tracker.table()
    assert table["step"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert table["train_loss"].iloc[2:].to_numpy() == pytest.approx(
        np.repeat(tracked.loss_curve_, 2), rel=1e-6
    )
    assert table["train_loss"].iloc[:2].isna().all()  # step 0 is before any epoch
    # The recorded LID is that of the hidden ReLU layer of the fitted network, by hand.
    with torch.no_grad():
        hidden = tracked.module_.layers[:2](torch.as_tensor(X[60:])).double().numpy()
    final_valid = table[(table["split"] == "valid") & (table["step"] == 4)]["mean_lid"].iloc[0]
    assert final_valid == pytest.approx(LocalIDEstimator(10).fit(hidden).mean_local_id_, rel=1e-6)
    # A refit starts a fresh table.
    _mlp(callbacks=[("lid", tracker)]).fit(X, y)
    assert len(tracker.table()) == 10


class _RecordsEpochSquared(Callback):
    """Writes a metric into the net's history, as an EpochScoring would."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("epoch_squared", float(len(net.history) ** 2))


def test_a_callable_embed_and_extra_scorers_reach_the_table():
    X, y = _mlp_data()
    tracker = LocalIDTracker(n_neighbors=10, probes={"train": X}, embed=lambda module, batch: module(batch), every=2)
    _mlp(callbacks=[_RecordsEpochSquared(), ("lid", tracker)]).fit(X, y)
    table = tracker.table()
    assert table["step"].tolist() == [0, 2, 4]
    assert table["epoch_squared"].iloc[1:].tolist() == [4.0, 16.0]


def test_callback_misuse_is_a_clear_error():
    X, y = _mlp_data()
    with pytest.raises(ValueError, match="names no submodule"):
        _mlp(callbacks=[LocalIDTracker(n_neighbors=10, probes={"train": X}, embed="encoder")]).fit(X, y)
    with pytest.raises(ValueError, match="needs probes"):
        _mlp(callbacks=[LocalIDTracker(n_neighbors=10)]).fit(X, y)
    with pytest.raises(ValueError, match=r"names \['lid'\] are given twice"):
        _mlp(callbacks=[("lid", Callback()), ("lid", Callback())]).fit(X, y)
    with pytest.raises(ValueError, match="progress"):
        _mlp(verbose=1, callbacks=[("progress", Callback())]).fit(X, y)
    with pytest.raises(TypeError, match="skorch callbacks"):
        _mlp(callbacks=[print]).fit(X, y)


def test_record_checkpoints_reads_each_folder_like_transformer_activations(tmp_path):
    folders = []
    for step, seed in ((0, 0), (50, 1)):
        model, tokenizer = tiny_causal_lm(random_state=seed)
        folder = tmp_path / f"checkpoint-{step}"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    texts = zen_of_python()
    tracker = LocalIDTracker(n_neighbors=12, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.record_checkpoints(folders, {"zen": texts}, layer=[0, 2], metrics=[{"loss": 3.0}, {"loss": 2.0}])
    table = tracker.table()
    assert table[["step", "layer"]].values.tolist() == [[0, 0], [0, 2], [50, 0], [50, 2]]
    assert table["loss"].tolist() == [3.0, 3.0, 2.0, 2.0]
    for _, row in table.iterrows():
        folder = folders[[0, 50].index(row["step"])]
        X = TransformerActivations(folder, layer=row["layer"], site="residual", device="cpu").fit().transform(texts)
        by_hand = LocalIDEstimator(12).fit(X.astype(np.float64))
        # The same batches as the tracker's (one layer read instead of two); 1e-4 allows float32 reordering.
        assert row["mean_lid"] == pytest.approx(by_hand.mean_local_id_, rel=1e-4)
    with pytest.raises(ValueError, match="is not a folder"):
        LocalIDTracker(n_neighbors=12).record_checkpoints([str(tmp_path / "missing")], texts, layer=0)
    with pytest.raises(ValueError, match="metrics has 1 entries for 2 checkpoints"):
        LocalIDTracker(n_neighbors=12).record_checkpoints(folders, texts, layer=0, metrics=[{}])
    assert isinstance(tracker.table(), pd.DataFrame)


class _CountsEvents(Callback):
    def initialize(self):
        self.events = []
        return self

    def on_train_begin(self, net, **kwargs):
        self.events.append("begin")

    def on_epoch_end(self, net, **kwargs):
        self.events.append("epoch")


def _skorch_trained():
    from test_common import ARRAY_ESTIMATORS

    # SDMCalibrator around a fitted scikit-learn estimator trains no net.
    return [e for e in ARRAY_ESTIMATORS if "callbacks" in e.get_params(deep=False) and getattr(e, "estimator", None) is None]


@pytest.mark.parametrize("estimator", _skorch_trained(), ids=lambda e: type(e).__name__)
def test_every_skorch_trained_estimator_runs_the_callbacks_it_is_given(estimator):
    """README: every estimator trained by gradient descent takes skorch ``callbacks``."""
    from sklearn.base import clone, is_regressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = X @ [1.0, -0.5, 0.2, 0.0] if is_regressor(estimator) else (X[:, 0] > 0).astype(int)
    counter = _CountsEvents()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clone(estimator).set_params(callbacks=[("count", counter)]).fit(X, y)
    assert counter.events[0] == "begin" and counter.events.count("epoch") >= 1


def test_sesa_runs_the_callbacks_it_is_given():
    from sklearn_interp.datasets import make_concept_ranking
    from sklearn_interp.ranking import SESARanker

    data = make_concept_ranking(n_queries=12, n_candidates=8, n_concepts=4, random_state=0)
    counter = _CountsEvents()
    SESARanker(encoder="bow", embedding_dim=8, hidden_dim=8, max_epochs=2, random_state=0, device="cpu",
               callbacks=[counter]).fit(
        data.frame[["qid", "query", "item"]], data.target,
        item_concepts=data.item_concepts, query_concepts=data.query_concepts,
    )
    assert counter.events == ["begin", "epoch", "epoch"]
