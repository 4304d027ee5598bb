"""Forecast errors over every (window, step, channel), as the forecasting literature reports them.

The long-horizon benchmarks (the CCM paper, the Time-Series-Library) report
the mean squared and the mean absolute error over all forecast values of all
channels, on z-scored data. scikit-learn's regression metrics take 2-D
targets only; these take windows of any layout and average every value.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.metrics import make_scorer
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils._param_validation import validate_params

from .. import _torch


_ERROR_PARAMETERS = {
    "y_true": ["array-like", torch.Tensor],
    "y_pred": ["array-like", torch.Tensor],
    "sample_weight": ["array-like", None],
}


def _errors(y_true, y_pred, sample_weight):
    """Elementwise errors (n_windows, n_values) and the window weights, with clear errors on bad input."""
    y_true = check_array(_torch.as_numpy(y_true), dtype=np.float64, ensure_2d=False, allow_nd=True, input_name="y_true")
    y_pred = check_array(_torch.as_numpy(y_pred), dtype=np.float64, ensure_2d=False, allow_nd=True, input_name="y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}.")
    check_consistent_length(y_true, y_pred, sample_weight)
    n_windows = y_true.shape[0]
    weights = None if sample_weight is None else check_array(sample_weight, ensure_2d=False, input_name="sample_weight")
    return (y_pred - y_true).reshape(n_windows, -1), weights


@validate_params(_ERROR_PARAMETERS, prefer_skip_nested_validation=True)
def forecast_mse(
    y_true: ArrayLike | torch.Tensor,
    y_pred: ArrayLike | torch.Tensor,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean squared error over every forecast value: windows, steps and channels.

    Parameters
    ----------
    y_true : array-like or torch.Tensor of shape (n_windows, horizon, n_channels)
        Or any layout with the windows first (flattened, one channel).
    y_pred : array-like or torch.Tensor of the same shape
    sample_weight : array-like of shape (n_windows,), default=None
        A weight per window.

    Returns
    -------
    mse : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.forecasting import forecast_mse
    >>> forecast_mse(np.zeros((2, 3, 4)), np.ones((2, 3, 4)))
    1.0
    """
    errors, weights = _errors(y_true, y_pred, sample_weight)
    return float(np.average(np.mean(errors**2, axis=1), weights=weights))


@validate_params(_ERROR_PARAMETERS, prefer_skip_nested_validation=True)
def forecast_mae(
    y_true: ArrayLike | torch.Tensor,
    y_pred: ArrayLike | torch.Tensor,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean absolute error over every forecast value: windows, steps and channels.

    Parameters
    ----------
    y_true : array-like or torch.Tensor of shape (n_windows, horizon, n_channels)
        Or any layout with the windows first (flattened, one channel).
    y_pred : array-like or torch.Tensor of the same shape
    sample_weight : array-like of shape (n_windows,), default=None
        A weight per window.

    Returns
    -------
    mae : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.forecasting import forecast_mae
    >>> forecast_mae(np.zeros((2, 3, 4)), np.full((2, 3, 4), -2.0))
    2.0
    """
    errors, weights = _errors(y_true, y_pred, sample_weight)
    return float(np.average(np.mean(np.abs(errors), axis=1), weights=weights))


#: ``scoring=`` for a search over forecasters: minus :func:`forecast_mse` (higher is better).
neg_forecast_mse_scorer = make_scorer(forecast_mse, greater_is_better=False)
#: ``scoring=`` for a search over forecasters: minus :func:`forecast_mae` (higher is better).
neg_forecast_mae_scorer = make_scorer(forecast_mae, greater_is_better=False)
