"""Calibration error and risk–coverage: how well a classifier's confidence ranks and measures its errors.

Expected calibration error asks whether a confidence of 0.8 is right 80 %
of the time; the risk–coverage curve asks whether rejecting the least
confident rows removes the errors first, the question selective prediction
(and SDM's abstention) is judged by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .. import _torch
from ..base import _final_step

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _probability_matrix(y_true, y_proba, labels):
    """``(y_index, proba)`` with the classes in the columns' order."""
    y_true = column_or_1d(y_true)
    proba = np.asarray(_torch.as_numpy(y_proba), dtype=float)
    if proba.ndim == 1:
        # Binary: the probability of the positive (second) class.
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2:
        raise ValueError(f"y_proba must be of shape (n_samples,) or (n_samples, n_classes); got {proba.shape}.")
    check_consistent_length(y_true, proba)
    if not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1).any():
        raise ValueError("y_proba must hold probabilities in [0, 1] without NaN.")
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    if len(labels) != proba.shape[1]:
        raise ValueError(
            f"y_proba has {proba.shape[1]} columns but there are {len(labels)} classes; pass labels= in the "
            "columns' order (an estimator's classes_)."
        )
    position = {label: i for i, label in enumerate(labels.tolist())}
    unknown = {label for label in y_true.tolist() if label not in position}
    if unknown:
        raise ValueError(f"y_true holds labels {sorted(map(str, unknown))} that are not among the classes {labels.tolist()}.")
    return np.array([position[label] for label in y_true.tolist()], dtype=int), proba


def _bin_edges(confidence, n_bins, strategy):
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    # Equal mass: quantiles of the confidences, duplicate edges merged.
    return np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1)))


def _binned_gap(confidence, outcome, n_bins, strategy):
    """``Σ_b (n_b / n) |mean(outcome_b) − mean(confidence_b)|``."""
    edges = _bin_edges(confidence, n_bins, strategy)
    # Right-closed bins, the first one closed on both sides.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    gap = 0.0
    for b in np.unique(bins):
        members = bins == b
        gap += members.mean() * abs(outcome[members].mean() - confidence[members].mean())
    return float(gap)


def expected_calibration_error(
    y_true: ArrayLike,
    y_proba: ArrayLike,
    *,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    kind: Literal["top_label", "classwise"] = "top_label",
    labels: ArrayLike | None = None,
) -> float:
    """Expected calibration error of predicted probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Probabilities, columns in the order of ``labels``; a 1-D array is
        the probability of the second of two classes.
    n_bins : int, default=15
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins on [0, 1], or equal-mass bins (quantiles of the
        confidences), as in :func:`sklearn.calibration.calibration_curve`.
    kind : {"top_label", "classwise"}, default="top_label"
        ``"top_label"``: the confidence is the largest probability and the
        outcome whether its class is right (Guo et al., 2017).
        ``"classwise"``: the mean over classes of the error of every
        class's probability against the indicator of that class (Kull et
        al., 2019).
    labels : array-like of shape (n_classes,), default=None
        The classes of the columns; by default the sorted labels of
        ``y_true``.

    Returns
    -------
    ece : float
        In [0, 1]; 0 is perfectly calibrated.

    Examples
    --------
    >>> from sklearn_interp.calibration import expected_calibration_error
    >>> # Right 3 times in 4 at confidence 0.75: calibrated.
    >>> expected_calibration_error([0, 0, 0, 1], [[0.75, 0.25]] * 4)
    0.0
    >>> expected_calibration_error([0, 1, 0, 1], [[0.9, 0.1]] * 4)
    0.4
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}.")
    if kind not in ("top_label", "classwise"):
        raise ValueError(f"kind must be 'top_label' or 'classwise', got {kind!r}.")
    y_index, proba = _probability_matrix(y_true, y_proba, labels)
    if kind == "top_label":
        predicted = proba.argmax(axis=1)
        return _binned_gap(proba.max(axis=1), (predicted == y_index).astype(float), n_bins, strategy)
    return float(np.mean([
        _binned_gap(proba[:, c], (y_index == c).astype(float), n_bins, strategy) for c in range(proba.shape[1])
    ]))


def _selective_inputs(y_true, y_pred, confidence):
    y_true, y_pred = column_or_1d(y_true), column_or_1d(y_pred)
    confidence = np.asarray(_torch.as_numpy(confidence), dtype=float).ravel()
    check_consistent_length(y_true, y_pred, confidence)
    if len(y_true) == 0:
        raise ValueError("risk–coverage needs at least one row.")
    if not np.isfinite(confidence).all():
        raise ValueError("confidence contains NaN or infinity.")
    return (y_true.astype(object) != y_pred.astype(object)).astype(float), confidence


def risk_coverage_curve(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    confidence: ArrayLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk (error rate among kept rows) against coverage, keeping the most confident first.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    confidence : array-like of shape (n_samples,)
        Higher means more confident (a maximum probability, an SDM ``q′``).

    Returns
    -------
    coverage : ndarray of shape (n_thresholds,)
        Share of rows whose confidence is at least each threshold, increasing.
    risk : ndarray of shape (n_thresholds,)
        Error rate among those rows.
    thresholds : ndarray of shape (n_thresholds,)
        The distinct confidences, decreasing; tied rows enter together.

    Examples
    --------
    >>> from sklearn_interp.calibration import risk_coverage_curve
    >>> coverage, risk, _ = risk_coverage_curve([0, 1, 1, 0], [0, 1, 0, 1], [0.9, 0.8, 0.6, 0.3])
    >>> coverage.tolist(), risk.round(3).tolist()
    ([0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.333, 0.5])
    """
    errors, confidence = _selective_inputs(y_true, y_pred, confidence)
    order = np.argsort(-confidence, kind="stable")
    errors, confidence = errors[order], confidence[order]
    # The last row of every run of tied confidences closes a point of the curve.
    ends = np.r_[np.flatnonzero(np.diff(confidence) != 0), len(confidence) - 1]
    kept = ends + 1
    return kept / len(confidence), np.cumsum(errors)[ends] / kept, confidence[ends]


def _area(coverage, risk):
    """Right-step integral: each point's risk over the coverage it adds."""
    return float(np.sum(np.diff(np.r_[0.0, coverage]) * risk))


def aurc(y_true: ArrayLike, y_pred: ArrayLike, confidence: ArrayLike) -> float:
    """Area under the risk–coverage curve (lower is better).

    Without ties, the mean over ``k = 1..n`` of the error rate among the
    ``k`` most confident rows; tied rows enter together.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    confidence : array-like of shape (n_samples,)

    Returns
    -------
    aurc : float

    Examples
    --------
    >>> from sklearn_interp.calibration import aurc
    >>> round(aurc([0, 1, 1, 0], [0, 1, 0, 1], [0.9, 0.8, 0.6, 0.3]), 4)
    0.2083
    """
    coverage, risk, _ = risk_coverage_curve(y_true, y_pred, confidence)
    return _area(coverage, risk)


def excess_aurc(y_true: ArrayLike, y_pred: ArrayLike, confidence: ArrayLike) -> float:
    """AURC minus that of an oracle confidence that ranks every correct row first (Geifman et al., 2019).

    It removes what the error rate alone decides, so classifiers of
    different accuracy compare by how well their confidence ranks errors.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    confidence : array-like of shape (n_samples,)

    Returns
    -------
    e_aurc : float
        At least 0; 0 when the confidence ranks every error below every
        correct row.

    Examples
    --------
    >>> from sklearn_interp.calibration import excess_aurc
    >>> excess_aurc([0, 1, 1, 0], [0, 1, 0, 1], [0.9, 0.8, 0.3, 0.2])
    0.0
    """
    errors, confidence = _selective_inputs(y_true, y_pred, confidence)
    n, n_errors = len(errors), int(errors.sum())
    kept = np.arange(1, n + 1)
    oracle = float(np.mean(np.maximum(kept - (n - n_errors), 0) / kept))
    return aurc(y_true, y_pred, confidence) - oracle


def _confidence_of(estimator, X, response_method):
    """``(y_pred, confidence)`` of a fitted classifier (or a Pipeline ending in one)."""
    model, X_model = _final_step(estimator, X)
    if callable(response_method):
        return _torch.as_numpy(model.predict(X_model)), _torch.as_numpy(response_method(model, X_model))
    if response_method == "auto":
        response_method = "sdm" if hasattr(model, "predict_selective") else "predict_proba"
    if response_method == "sdm":
        proba = _torch.as_numpy(model.predict_proba(X_model, kind="sdm"))
    elif response_method == "predict_proba":
        proba = _torch.as_numpy(model.predict_proba(X_model))
    else:
        raise ValueError(f"response_method must be 'auto', 'predict_proba', 'sdm' or a callable; got {response_method!r}.")
    return _torch.as_numpy(model.predict(X_model)), proba.max(axis=1)


class RiskCoverageDisplay:
    """Risk–coverage curve visualisation, in the style of scikit-learn's Displays.

    Build it with :meth:`from_estimator` or :meth:`from_predictions`; the
    constructor only stores the curve.

    Parameters
    ----------
    coverage, risk : ndarray
        From :func:`risk_coverage_curve`.
    aurc : float, default=None
    name : str, default=None
        Label of the curve in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_interp.calibration import RiskCoverageDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=2000).fit(X[:1200], y[:1200])
    >>> display = RiskCoverageDisplay.from_estimator(clf, X[1200:], y[1200:], name="logistic")
    >>> bool(display.risk[0] <= display.risk[-1])
    True
    """

    def __init__(
        self,
        *,
        coverage: np.ndarray,
        risk: np.ndarray,
        aurc: float | None = None,
        name: str | None = None,
    ) -> None:
        self.coverage = coverage
        self.risk = risk
        self.aurc = aurc
        self.name = name

    def plot(
        self,
        ax: Axes | None = None,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> RiskCoverageDisplay:
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            A new figure when ``None``.
        name : str, default=None
            Overrides the stored name.
        **kwargs : dict
            Passed to ``ax.step``.

        Returns
        -------
        display : RiskCoverageDisplay
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = self.name if name is None else name
        label = name if self.aurc is None else f"{name or 'classifier'} (AURC {self.aurc:.3f})"
        (self.line_,) = ax.step(np.r_[0.0, self.coverage], np.r_[self.risk[:1], self.risk], where="post",
                                label=label, **kwargs)
        ax.set(xlabel="coverage (share of rows kept)", ylabel="risk (error rate among kept rows)", xlim=(0, 1))
        if label:
            ax.legend(loc="upper left")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_predictions(
        cls,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        confidence: ArrayLike,
        *,
        name: str | None = None,
        ax: Axes | None = None,
        **kwargs: Any,
    ) -> RiskCoverageDisplay:
        """Plot the curve of given predictions and confidences.

        Parameters
        ----------
        y_true, y_pred : array-like of shape (n_samples,)
        confidence : array-like of shape (n_samples,)
        name : str, default=None
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to ``ax.step``.

        Returns
        -------
        display : RiskCoverageDisplay
        """
        coverage, risk, _ = risk_coverage_curve(y_true, y_pred, confidence)
        return cls(coverage=coverage, risk=risk, aurc=_area(coverage, risk), name=name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator: BaseEstimator,
        X: ArrayLike,
        y: ArrayLike,
        *,
        response_method: Literal["auto", "predict_proba", "sdm"] | Callable[..., Any] = "auto",
        name: str | None = None,
        ax: Axes | None = None,
        **kwargs: Any,
    ) -> RiskCoverageDisplay:
        """Plot the curve of a fitted classifier on ``(X, y)``.

        Parameters
        ----------
        estimator : fitted classifier or Pipeline ending in one
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        response_method : {"auto", "predict_proba", "sdm"} or callable, default="auto"
            The confidence: the largest ``predict_proba`` (``"auto"`` for
            any classifier), the largest SDM probability (``"auto"`` for an
            :class:`SDMCalibrator`), or ``f(estimator, X) -> confidence``.
        name : str, default=None
            The estimator's class name by default.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to ``ax.step``.

        Returns
        -------
        display : RiskCoverageDisplay
        """
        y_pred, confidence = _confidence_of(estimator, X, response_method)
        name = type(getattr(estimator, "_final_estimator", estimator)).__name__ if name is None else name
        return cls.from_predictions(y, y_pred, confidence, name=name, ax=ax, **kwargs)
