"""Metrics and scorers of selective prediction (predictions that may abstain).

A selective prediction is a class or a reject label. The papers judge it by
how much it admits and by its accuracy among the admitted rows, conditioned
both on the true class and on the predicted class (index-conditional
accuracy), because a marginal accuracy can hide a class that is almost
always wrong.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import column_or_1d

from ..base import _final_step


def _admitted_mask(y_selective, reject_label):
    y_selective = column_or_1d(y_selective)
    return np.array([value != reject_label for value in y_selective.tolist()], dtype=bool), y_selective


def admitted_fraction(y_selective: ArrayLike, *, reject_label: int | float | str = -1) -> float:
    """Share of rows that were not rejected.

    Parameters
    ----------
    y_selective : array-like of shape (n_samples,)
        Predictions, with ``reject_label`` where the model abstained.
    reject_label : int, float or str, default=-1

    Returns
    -------
    fraction : float

    Examples
    --------
    >>> from sklearn_interp.calibration import admitted_fraction
    >>> admitted_fraction([0, -1, 1, -1])
    0.5
    """
    admitted, _ = _admitted_mask(y_selective, reject_label)
    return float(admitted.mean()) if len(admitted) else float("nan")


def selective_report(
    y_true: ArrayLike,
    y_selective: ArrayLike,
    *,
    reject_label: int | float | str = -1,
    labels: ArrayLike | None = None,
) -> pd.DataFrame:
    """Accuracy among admitted rows, per true class and per predicted class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_selective : array-like of shape (n_samples,)
        Predictions, with ``reject_label`` where the model abstained.
    reject_label : int, float or str, default=-1
    labels : array-like, default=None
        Classes to report; by default those of ``y_true`` and the admitted
        predictions.

    Returns
    -------
    report : pandas.DataFrame
        One row per class: ``n_true`` and ``n_admitted_true`` (rows of that
        true class, and how many were admitted), ``class_conditional_accuracy``
        (accuracy among those admitted), ``n_predicted`` (admitted rows
        predicted as that class) and ``prediction_conditional_accuracy``.
        Accuracies are NaN where there is nothing to measure.

    Examples
    --------
    >>> from sklearn_interp.calibration import selective_report
    >>> selective_report([0, 0, 1, 1], [0, -1, 0, 1])[["class_conditional_accuracy", "prediction_conditional_accuracy"]]
           class_conditional_accuracy  prediction_conditional_accuracy
    class
    0                             1.0                              0.5
    1                             0.5                              1.0
    """
    y_true = column_or_1d(y_true)
    admitted, y_selective = _admitted_mask(y_selective, reject_label)
    if len(y_true) != len(y_selective):
        raise ValueError(f"y_true has {len(y_true)} rows but y_selective has {len(y_selective)}.")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_selective[admitted].astype(y_true.dtype, copy=False)]))
    correct = admitted & (y_selective.astype(object) == y_true.astype(object))
    rows = []
    for label in labels:
        true_c = y_true == label
        predicted_c = admitted & (y_selective.astype(object) == label)
        n_admitted_true = int((true_c & admitted).sum())
        rows.append(
            {
                "class": label,
                "n_true": int(true_c.sum()),
                "n_admitted_true": n_admitted_true,
                "class_conditional_accuracy": (correct & true_c).sum() / n_admitted_true if n_admitted_true else np.nan,
                "n_predicted": int(predicted_c.sum()),
                "prediction_conditional_accuracy": (
                    (correct & predicted_c).sum() / predicted_c.sum() if predicted_c.any() else np.nan
                ),
            }
        )
    return pd.DataFrame(rows).set_index("class")


def index_conditional_accuracy(
    y_true: ArrayLike,
    y_selective: ArrayLike,
    *,
    reject_label: int | float | str = -1,
) -> float:
    """The worst class- or prediction-conditional accuracy among admitted rows.

    The quantity the SDM estimator's ``alpha`` targets: every true class and
    every predicted class must reach it. Classes with nothing admitted do not
    count; with nothing admitted at all the result is NaN.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_selective : array-like of shape (n_samples,)
    reject_label : int, float or str, default=-1

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> from sklearn_interp.calibration import index_conditional_accuracy
    >>> index_conditional_accuracy([0, 0, 1, 1], [0, -1, 0, 1])
    0.5
    """
    report = selective_report(y_true, y_selective, reject_label=reject_label)
    values = report[["class_conditional_accuracy", "prediction_conditional_accuracy"]].to_numpy(dtype=float)
    return float(np.nanmin(values)) if np.isfinite(values).any() else float("nan")


def reliable_admitted_fraction(
    y_true: ArrayLike,
    y_selective: ArrayLike,
    *,
    alpha: float,
    reject_label: int | float | str = -1,
) -> float:
    """Share of rows admitted where the admitted accuracy reaches ``alpha``, per class and per prediction.

    The rule: an admitted row counts when the accuracy among admitted rows of
    its *true* class is at least ``alpha`` and the accuracy among admitted
    rows *predicted* as its predicted class is at least ``alpha``; the result
    is the number of counted rows over all rows. A model that admits nothing
    scores 0; one that admits everything meets ``alpha`` only if it is
    that accurate in every class. Higher is better: at a fixed requirement
    ``alpha``, a model that admits more rows at that accuracy is more useful.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_selective : array-like of shape (n_samples,)
        Predictions, with ``reject_label`` where the model abstained.
    alpha : float in (0, 1]
        The required class- and prediction-conditional accuracy.
    reject_label : int, float or str, default=-1

    Returns
    -------
    fraction : float

    Examples
    --------
    >>> from sklearn_interp.calibration import reliable_admitted_fraction
    >>> # Class 0 is admitted twice and right twice; class 1 is right once in two.
    >>> round(reliable_admitted_fraction([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, -1, -1], alpha=0.9), 3)
    0.333
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}.")
    y_true = column_or_1d(y_true)
    report = selective_report(y_true, y_selective, reject_label=reject_label)
    admitted, y_selective = _admitted_mask(y_selective, reject_label)
    if not len(y_true):
        return float("nan")
    # A NaN accuracy (nothing admitted in that class) never holds a counted row.
    meets_true = report["class_conditional_accuracy"].to_numpy(dtype=float) >= alpha
    meets_predicted = report["prediction_conditional_accuracy"].to_numpy(dtype=float) >= alpha
    classes = report.index.tolist()
    position = {label: i for i, label in enumerate(classes)}
    counted = 0
    for truth, prediction, is_admitted in zip(y_true.tolist(), y_selective.tolist(), admitted.tolist()):
        if is_admitted and meets_true[position[truth]] and meets_predicted[position[prediction]]:
            counted += 1
    return counted / len(y_true)


def selective_report_by_alpha(
    estimator: BaseEstimator,
    X: ArrayLike,
    y: ArrayLike,
    alphas: Sequence[float] = (0.8, 0.9, 0.95, 0.99),
) -> pd.DataFrame:
    """What a fitted SDM calibrator admits on ``(X, y)`` at several required accuracies, in one table.

    Each ``alpha`` uses :meth:`SDMCalibrator.with_alpha`: the same trained
    model, its region searched again, so the rows differ only in the
    requirement.

    Parameters
    ----------
    estimator : fitted SDMCalibrator (method="v2") or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)
        Held-out rows.
    y : array-like of shape (n_samples,)
    alphas : sequence of float in (0.5, 1], default=(0.8, 0.9, 0.95, 0.99)

    Returns
    -------
    report : pandas.DataFrame
        One row per ``alpha``: ``region_found``, ``q_prime_min``,
        ``admitted`` (share of rows admitted), ``reliable_admitted`` (the
        estimator's ``score``: admitted where the accuracy reaches
        ``alpha``), ``accuracy`` among admitted rows and
        ``worst_conditional_accuracy`` (the smallest class- or
        prediction-conditional accuracy, the quantity ``alpha`` bounds).
    """
    model, X_model = _final_step(estimator, X)
    if not hasattr(model, "with_alpha"):
        raise TypeError(f"{type(model).__name__} has no with_alpha; use an SDMCalibrator.")
    y = column_or_1d(y)
    rows = []
    for alpha in alphas:
        calibrator = model.with_alpha(alpha)
        y_selective = calibrator.predict_selective(X_model)
        admitted, _ = _admitted_mask(y_selective, calibrator.reject_label)
        rows.append({
            "alpha": alpha,
            "region_found": calibrator.hr_found_,
            "q_prime_min": calibrator.q_prime_min_,
            "admitted": float(admitted.mean()),
            "reliable_admitted": reliable_admitted_fraction(y, y_selective, alpha=alpha, reject_label=calibrator.reject_label),
            "accuracy": float((y_selective[admitted].astype(object) == y[admitted].astype(object)).mean()) if admitted.any() else np.nan,
            "worst_conditional_accuracy": index_conditional_accuracy(y, y_selective, reject_label=calibrator.reject_label),
        })
    return pd.DataFrame(rows).set_index("alpha")


def _selective_predictions(estimator, X):
    """``predict_selective`` of an estimator or of the last step of a pipeline."""
    estimator, X = _final_step(estimator, X)
    if not hasattr(estimator, "predict_selective"):
        raise TypeError(f"{type(estimator).__name__} has no predict_selective; use an SDMCalibrator.")
    return estimator.predict_selective(X), estimator.reject_label


def admitted_fraction_scorer(estimator: BaseEstimator, X: ArrayLike, y: object = None) -> float:
    """Scorer: :func:`admitted_fraction` of ``estimator.predict_selective(X)``.

    Works with an :class:`~sklearn_interp.calibration.SDMCalibrator` or a
    pipeline ending in one; usable as ``scoring=`` in ``GridSearchCV``.
    """
    y_selective, reject_label = _selective_predictions(estimator, X)
    return admitted_fraction(y_selective, reject_label=reject_label)


def index_conditional_accuracy_scorer(estimator: BaseEstimator, X: ArrayLike, y: ArrayLike) -> float:
    """Scorer: :func:`index_conditional_accuracy` of ``estimator.predict_selective(X)``.

    NaN when nothing is admitted (``GridSearchCV`` ranks such candidates last).
    """
    y_selective, reject_label = _selective_predictions(estimator, X)
    return index_conditional_accuracy(y, y_selective, reject_label=reject_label)
