"""Bi-cross-validation: held-out scores that can choose the size of a dictionary.

A held-out row's codes are fitted to that row, so its reconstruction R²
keeps rising with every component added, past the true rank, because the
extra components fit the row's noise. Owen and Perry (2009) hold out
*features* as well as rows: the codes of a held-out row are computed from
a random subset of its features, and the score is how well those codes
predict the features they did not see. Noise in the visible features
cannot help predict the hidden ones, so the score peaks near the true size.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import _final_step, _r2, _total_sum_of_squares


def _hidden_columns(n_features, holdout_fraction, random_state):
    """``(visible, hidden)`` column indices: a random ``holdout_fraction`` of the columns is hidden."""
    n_hidden = int(round(holdout_fraction * n_features))
    if n_hidden < 1 or n_hidden > n_features - 1:
        raise ValueError(
            f"holdout_fraction={holdout_fraction} hides {n_hidden} of {n_features} features; bi-cross-validation "
            "needs at least one hidden and one visible feature."
        )
    permutation = check_random_state(random_state).permutation(n_features)
    return np.sort(permutation[n_hidden:]), np.sort(permutation[:n_hidden])


def bicrossval_r2(
    estimator: BaseEstimator,
    X: ArrayLike | torch.Tensor,
    *,
    holdout_fraction: float = 0.5,
    random_state: int | np.random.RandomState | None = None,
) -> float:
    """R² of the hidden features predicted from codes fitted to the visible ones.

    Parameters
    ----------
    estimator : fitted SNMFDecomposer, MatchingPursuitSAE or TopKSAE, or a Pipeline ending in one
        Any estimator with ``components_`` (and ``bias_`` if it has a
        decoder bias) and a private ``_visible_codes`` method.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Held-out rows, as the pipeline receives them.
    holdout_fraction : float in (0, 1), default=0.5
        Share of the features hidden from the encoder.
    random_state : int, RandomState instance or None, default=None
        Draws the hidden features. Give an int in a search, so that every
        candidate is scored on the same hidden features.

    Returns
    -------
    r2 : float
        ``1 − ‖X_h − codes @ components_[:, h] − bias_h‖² / ‖X_h − mean(X_h)‖²``
        over the hidden columns ``h``; higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> from sklearn_interp.model_selection import bicrossval_r2
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((300, 3)) @ rng.standard_normal((3, 20)) + 0.1 * rng.standard_normal((300, 20))
    >>> snmf = SNMFDecomposer(3, sparsity=None, random_state=0).fit(X[:200])
    >>> round(snmf.score(X[200:]), 2), round(bicrossval_r2(snmf, X[200:], random_state=0), 2)
    (0.95, 0.9)
    """
    if not isinstance(holdout_fraction, Real) or not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be a number in (0, 1), got {holdout_fraction!r}.")
    model, X = _final_step(estimator, X)
    check_is_fitted(model)
    if not hasattr(model, "_visible_codes"):
        raise TypeError(
            f"{type(model).__name__} cannot encode from a subset of its features; bi-cross-validation scores "
            "SNMFDecomposer, MatchingPursuitSAE and TopKSAE (or a Pipeline ending in one)."
        )
    X_t, _ = model._validate_tensor(X, reset=False)
    if X_t.shape[0] < 2:
        raise ValueError(f"bi-cross-validation needs at least 2 held-out rows, got {X_t.shape[0]}.")
    visible, hidden = _hidden_columns(X_t.shape[1], holdout_fraction, random_state)
    visible_t = torch.as_tensor(visible, device=X_t.device)
    hidden_t = torch.as_tensor(hidden, device=X_t.device)
    codes = model._visible_codes(X_t, visible_t)
    components = model._on_device("components_", X_t.device, X_t.dtype)[:, hidden_t]
    prediction = codes @ components
    if hasattr(model, "bias_"):
        prediction += model._on_device("bias_", X_t.device, X_t.dtype)[hidden_t]
    X_hidden = X_t[:, hidden_t]
    residual_ss = float(torch.sum((X_hidden - prediction) ** 2, dtype=torch.float64))
    return _r2(residual_ss, _total_sum_of_squares(X_hidden, model.batch_size))


class BiCrossValScorer:
    """A ``scoring=`` callable: :func:`bicrossval_r2` with fixed options.

    Made by :func:`bicrossval_scorer`; picklable, so it works with
    ``n_jobs`` in a search.
    """

    def __init__(
        self, holdout_fraction: float = 0.5, random_state: int | np.random.RandomState | None = None
    ) -> None:
        self.holdout_fraction = holdout_fraction
        self.random_state = random_state

    def __call__(self, estimator, X, y=None):
        return bicrossval_r2(estimator, X, holdout_fraction=self.holdout_fraction, random_state=self.random_state)

    def __repr__(self):
        return f"bicrossval_scorer(holdout_fraction={self.holdout_fraction!r}, random_state={self.random_state!r})"


@validate_params(
    {
        "holdout_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def bicrossval_scorer(
    holdout_fraction: float = 0.5,
    random_state: int | np.random.RandomState | None = None,
) -> BiCrossValScorer:
    """Scorer for choosing the size of a dictionary by bi-cross-validation.

    Use it as ``GridSearchCV(..., scoring=bicrossval_scorer(random_state=0))``
    over ``n_components``, ``k`` or ``sparsity`` of
    :class:`~sklearn_interp.decomposition.SNMFDecomposer`,
    :class:`~sklearn_interp.decomposition.MatchingPursuitSAE` or
    :class:`~sklearn_interp.decomposition.TopKSAE`. On every held-out fold
    a random ``holdout_fraction`` of the features is hidden; each row's codes
    are fitted to the visible features (non-negative least squares for
    SNMF; for the sparse autoencoders, the same encoder over the atoms cut
    to the visible features and renormalised), and the score is the R² of
    the hidden features they predict. Unlike the held-out R² of
    ``score``, it stops rising once the dictionary fits noise.

    Parameters
    ----------
    holdout_fraction : float in (0, 1), default=0.5
        Share of the features hidden from the encoder.
    random_state : int, RandomState instance or None, default=None
        Draws the hidden features. With an int every candidate and fold of a
        search is scored on the same hidden features, which makes the
        comparison paired; ``None`` draws afresh at every call.

    Returns
    -------
    scorer : BiCrossValScorer
        ``scorer(estimator, X, y=None) -> float``, higher is better.

    See Also
    --------
    simplest_within_one_se : A ``refit=`` rule that prefers the smaller of near-equal models.

    References
    ----------
    .. [1] A. B. Owen and P. O. Perry, "Bi-cross-validation of the SVD and
       the nonnegative matrix factorization", Annals of Applied Statistics
       3(2), 2009.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> from sklearn_interp.model_selection import bicrossval_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((300, 3)) @ rng.standard_normal((3, 20)) + 0.3 * rng.standard_normal((300, 20))
    >>> search = GridSearchCV(SNMFDecomposer(sparsity=None, random_state=0), {"n_components": [1, 3, 8]},
    ...                       scoring=bicrossval_scorer(random_state=0), cv=3).fit(X)
    >>> search.best_params_
    {'n_components': 3}
    """
    return BiCrossValScorer(holdout_fraction=holdout_fraction, random_state=random_state)


def mean_l0(estimator: BaseEstimator, X: ArrayLike | torch.Tensor) -> float:
    """Mean number of non-zero codes per row of ``X`` (lower is sparser).

    Parameters
    ----------
    estimator : fitted transformer, or a Pipeline ending in one
        Its ``transform`` gives the codes.
    X : array-like or torch.Tensor of shape (n_samples, n_features)

    Returns
    -------
    l0 : float
    """
    model, X = _final_step(estimator, X)
    codes = _torch.as_numpy(model.transform(X))
    return float(np.count_nonzero(codes, axis=1).mean())


def mean_l0_scorer(estimator: BaseEstimator, X: ArrayLike, y: object = None) -> float:
    """Scorer: :func:`mean_l0`, for reporting next to the criteria a search ranks by.

    Not a "higher is better" criterion: do not refit on it.
    """
    return mean_l0(estimator, X)


def _score_method(estimator, X, y=None):
    """The estimator's own ``score`` (a pipeline's passes ``X`` through its steps)."""
    return float(estimator.score(X))


def dictionary_scoring(
    holdout_fraction: float = 0.5,
    random_state: int | np.random.RandomState | None = None,
) -> dict[str, Any]:
    """Multi-metric ``scoring=`` for dictionaries: R², bi-cross-validated R² and L0.

    Parameters
    ----------
    holdout_fraction : float in (0, 1), default=0.5
        For the ``"bicv_r2"`` entry.
    random_state : int, RandomState instance or None, default=None
        For the ``"bicv_r2"`` entry.

    Returns
    -------
    scoring : dict
        ``"r2"`` (the estimator's ``score``: reconstruction of held-out
        rows), ``"bicv_r2"`` (:func:`bicrossval_scorer`, the one to refit
        on) and ``"l0"`` (:func:`mean_l0_scorer`, report only). Add
        :func:`~sklearn_interp.intervention.loss_recovered_scorer` for a
        pipeline that starts from texts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> from sklearn_interp.model_selection import dictionary_scoring
    >>> X = np.random.default_rng(0).random((90, 12))
    >>> search = GridSearchCV(SNMFDecomposer(sparsity=None, random_state=0), {"n_components": [2, 4]},
    ...                       scoring=dictionary_scoring(random_state=0), refit="bicv_r2", cv=3).fit(X)
    >>> sorted(key for key in search.cv_results_ if key.startswith("mean_test"))
    ['mean_test_bicv_r2', 'mean_test_l0', 'mean_test_r2']
    """
    return {
        "r2": _score_method,
        "bicv_r2": bicrossval_scorer(holdout_fraction, random_state),
        "l0": mean_l0_scorer,
    }
