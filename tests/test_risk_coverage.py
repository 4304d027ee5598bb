"""Selective-prediction metrics: calibration error, risk–coverage, AURC, the display, the SDM score and with_alpha."""

import warnings

import matplotlib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_interp.calibration import (
    RiskCoverageDisplay,
    SDMCalibrator,
    aurc,
    excess_aurc,
    expected_calibration_error,
    reliable_admitted_fraction,
    risk_coverage_curve,
    selective_report_by_alpha,
)

matplotlib.use("Agg")

labels_and_predictions = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        arrays(np.int64, n, elements=st.integers(0, 2)),
        arrays(np.int64, n, elements=st.integers(0, 2)),
        arrays(np.float64, n, elements=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])),
    )
)


@given(labels_and_predictions)
def test_risk_coverage_matches_sorting_by_hand(data):
    y_true, y_pred, confidence = data
    coverage, risk, thresholds = risk_coverage_curve(y_true, y_pred, confidence)
    for c, r, t in zip(coverage, risk, thresholds):
        kept = confidence >= t
        assert c == pytest.approx(kept.mean(), rel=1e-12)
        assert r == pytest.approx(np.mean(y_true[kept] != y_pred[kept]), rel=1e-12, abs=1e-15)
    assert coverage[-1] == 1.0 and np.all(np.diff(coverage) > 0)
    # The area is the tie-aware mean of the risks; the oracle ranks errors last.
    assert aurc(y_true, y_pred, confidence) == pytest.approx(np.sum(np.diff(np.r_[0, coverage]) * risk), rel=1e-12)
    assert excess_aurc(y_true, y_pred, confidence) >= -1e-12


@given(st.integers(1, 30), st.integers(0, 30))
def test_without_ties_aurc_is_the_mean_risk_and_an_oracle_confidence_has_no_excess(n_correct, n_errors):
    y_true = np.zeros(n_correct + n_errors, dtype=int)
    y_pred = np.r_[np.zeros(n_correct, dtype=int), np.ones(n_errors, dtype=int)]
    oracle = np.linspace(1, 0, n_correct + n_errors)  # every correct row more confident than every error
    errors = y_pred != y_true
    expected = np.mean([errors[:k].mean() for k in range(1, len(errors) + 1)])
    assert aurc(y_true, y_pred, oracle) == pytest.approx(expected, rel=1e-12)
    assert excess_aurc(y_true, y_pred, oracle) == pytest.approx(0.0, abs=1e-12)
    if n_errors:
        assert excess_aurc(y_true, y_pred, oracle[::-1]) > 0  # errors first: the worst ranking


def test_top_label_ece_of_a_binary_problem_is_the_weighted_reliability_gap():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 500)  # the confidence of predicting class 1
    y = (rng.uniform(size=500) < p**2).astype(int)
    proba = np.column_stack([1 - p, p])
    # With every confidence above 0.5 the top label is class 1, so the binned
    # accuracy is scikit-learn's fraction of positives.
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, 9)
    accuracy, confidence = calibration_curve(y, p, n_bins=10, strategy="uniform")
    weights = np.bincount(bins, minlength=10)[np.bincount(bins, minlength=10) > 0] / len(p)
    expected = np.sum(weights * np.abs(accuracy - confidence))
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(expected, rel=1e-9)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected, rel=1e-9)  # 1-D input
    # Equal-mass bins and the classwise variant measure the same miscalibration, differently.
    assert 0 < expected_calibration_error(y, proba, strategy="quantile") < 1
    assert 0 < expected_calibration_error(y, proba, kind="classwise") < 1


def test_metric_inputs_fail_clearly():
    with pytest.raises(ValueError, match="columns"):
        expected_calibration_error([0, 1, 2], [[0.5, 0.5]] * 3)
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([0, 1], [[0.5, np.nan], [0.5, 0.5]])
    with pytest.raises(ValueError, match="not among the classes"):
        expected_calibration_error(["a", "c"], [[0.5, 0.5]] * 2, labels=["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        aurc([0, 1], [0, 1], [0.5, np.nan])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        risk_coverage_curve([0, 1], [0, 1, 1], [0.1, 0.2, 0.3])


@given(labels_and_predictions, st.sampled_from([0.5, 0.8, 1.0]))
def test_reliable_admitted_fraction_counts_rows_whose_classes_meet_alpha(data, alpha):
    y_true, y_pred, confidence = data
    y_selective = np.where(confidence >= 0.5, y_pred, -1)
    admitted = y_selective != -1

    def accuracy(mask):
        return np.mean(y_true[mask] == y_selective[mask]) if mask.any() else -1.0

    counted = [
        admitted[i]
        and accuracy(admitted & (y_true == y_true[i])) >= alpha
        and accuracy(admitted & (y_selective == y_selective[i])) >= alpha
        for i in range(len(y_true))
    ]
    assert reliable_admitted_fraction(y_true, y_selective, alpha=alpha) == pytest.approx(np.mean(counted))


def test_display_from_estimator_and_from_predictions_agree():
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[:400], y[:400])
    display = RiskCoverageDisplay.from_estimator(model, X[400:], y[400:])
    proba = model.predict_proba(X[400:])
    again = RiskCoverageDisplay.from_predictions(y[400:], model.predict(X[400:]), proba.max(axis=1), name="lr")
    np.testing.assert_array_equal(display.risk, again.risk)
    assert display.aurc == pytest.approx(aurc(y[400:], model.predict(X[400:]), proba.max(axis=1)))
    assert "LogisticRegression" in display.line_.get_label() and display.ax_.get_xlabel().startswith("coverage")


@pytest.fixture(scope="module")
def cancer_sdm():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(exemplar_dim=32, n_repeats=1, max_epochs=8, learning_rate=3e-3, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return X, y, params, SDMCalibrator(alpha=0.9, **params).fit(X[:400], y[:400])


def test_with_alpha_equals_a_refit_at_that_alpha(cancer_sdm):
    X, y, params, sdm = cancer_sdm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        refit = SDMCalibrator(alpha=0.97, **params).fit(X[:400], y[:400])
    copy = sdm.with_alpha(0.97)
    assert copy.q_prime_min_ == refit.q_prime_min_ and sdm.alpha == 0.9
    np.testing.assert_array_equal(copy.thresholds_, refit.thresholds_)
    np.testing.assert_array_equal(copy.predict_selective(X[400:]), refit.predict_selective(X[400:]))
    assert copy.score(X[400:], y[400:]) == refit.score(X[400:], y[400:])
    with pytest.raises(ValueError, match="alpha"):
        sdm.with_alpha(0.4)


def test_selective_report_by_alpha_is_one_row_per_requirement(cancer_sdm):
    X, y, _, sdm = cancer_sdm
    report = selective_report_by_alpha(sdm, X[400:], y[400:], alphas=(0.8, 0.9, 0.99))
    assert list(report.index) == [0.8, 0.9, 0.99]
    # A stricter requirement never admits more, and the score is what SDM.score gives at that alpha.
    assert np.all(np.diff(report["admitted"].to_numpy()) <= 0)
    assert report.loc[0.9, "reliable_admitted"] == sdm.score(X[400:], y[400:])
