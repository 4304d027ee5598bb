"""Similarity-Distance-Magnitude calibration with selective prediction.

The model-free pieces come first, each one formula of Schmaltz's
"Similarity-Distance-Magnitude" papers written so that it can be
property-tested alone: the SDM activation, the similarity ``q``, the
distance quantile ``d``, the rescaled similarity ``q′``, the
high-reliability region search and the DKW lower estimate. Then the network
of the learned mode and :class:`SDMCalibrator`, a thin estimator that
composes them.
"""

from __future__ import annotations

import copy
import math
import warnings
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch import NeuralNet

from .. import _torch
from .._training import init_layer_, make_net
from ..base import TorchClassifierMixin, TorchEstimatorMixin
from ._selective import reliable_admitted_fraction

if TYPE_CHECKING:
    import skorch

# Rows of queries whose distances to the whole support set are held at once:
# memory is this many times the support size.
QUERY_CHUNK = 1024

# UV's Cauchy offsets are tabulated for the floor of q̃ in 0..N_OFFSET_BINS-1.
N_OFFSET_BINS = 20


def sdm_activation(logits: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The SDM activation ``softmax(log(2 + q) · d · z′)``, row by row.

    ``(2+q)^{d·z′_i} / Σ_c (2+q)^{d·z′_c}`` computed as a softmax of the
    shifted logits, which never overflows. ``q = e − 2, d = 1`` gives the
    softmax of ``z′``; ``d = 0`` gives the uniform distribution.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        The magnitude ``z′``.
    q : torch.Tensor of shape (n_samples,)
        Similarity, ``≥ 0``.
    d : torch.Tensor of shape (n_samples,)
        Distance quantile, in [0, 1].

    Returns
    -------
    proba : torch.Tensor of shape (n_samples, n_classes)

    Examples
    --------
    >>> import math, torch
    >>> from sklearn_interp.calibration import sdm_activation
    >>> z = torch.tensor([[2.0, 0.0]])
    >>> sdm_activation(z, torch.tensor([math.e - 2]), torch.tensor([1.0]))
    tensor([[0.8808, 0.1192]])
    >>> sdm_activation(z, torch.tensor([10.0]), torch.tensor([0.0]))
    tensor([[0.5000, 0.5000]])
    """
    logits = torch.as_tensor(logits)
    q = _torch.to_tensor(q, logits.device, logits.dtype)
    d = _torch.to_tensor(d, logits.device, logits.dtype)
    shifted = logits - logits.max(dim=1, keepdim=True).values
    return torch.softmax(torch.log(2 + q)[:, None] * d[:, None] * shifted, dim=1)


def change_of_base_nll(logits, labels, q, d):
    """SDM's training loss per row: ``−log SDM(z′)_y / log(2 + q)``.

    The negative log-likelihood of the SDM activation in base ``2 + q``, so
    rows with little support (small ``q``) weigh more. ``q = e − 2, d = 1``
    gives the cross-entropy.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
    labels : torch.Tensor of shape (n_samples,), integer
    q, d : torch.Tensor of shape (n_samples,)

    Returns
    -------
    loss : torch.Tensor of shape (n_samples,)
    """
    log_base = torch.log(2 + q)
    log_proba = torch.log_softmax(log_base[:, None] * d[:, None] * logits, dim=1)
    return -log_proba.gather(1, labels[:, None]).squeeze(1) / log_base


def squared_distances(queries, support):
    """Squared Euclidean distances by one matrix product, clamped at 0.

    ``‖a‖² + ‖b‖² − 2⟨a, b⟩``; the clamp removes the tiny negative values
    that rounding leaves for (near) duplicates.
    """
    cross = queries @ support.T
    squared = (queries * queries).sum(1, keepdim=True) + (support * support).sum(1)[None, :] - 2 * cross
    return squared.clamp_min_(0)


def support_neighbours(
    queries: torch.Tensor,
    support: torch.Tensor,
    matches: torch.Tensor,
    query_predictions: torch.Tensor,
    *,
    max_q: int,
    query_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity ``q`` and nearest support point of every query.

    ``q`` is the length of the leading run, in order of distance, of support
    points that are correctly predicted and predicted as the query is
    (``matches[ŷ, j]``), capped at ``max_q``. That run needs no sort: it is
    the number of matching support points strictly closer than the nearest
    non-matching one, one reduction over the support set instead of a
    top-``k`` search. Support points tied in distance with the nearest
    non-matching one are not counted.

    Parameters
    ----------
    queries : torch.Tensor of shape (n_queries, n_dims)
    support : torch.Tensor of shape (n_support, n_dims)
    matches : torch.Tensor of shape (n_classes, n_support), bool
        ``matches[c, j]``: support point ``j`` is predicted ``c`` and that
        prediction is correct.
    query_predictions : torch.Tensor of shape (n_queries,), integer
    max_q : int
        The cap on ``q`` (the depth of the reference's neighbour search).
    query_index : torch.Tensor of shape (n_queries,), default=None
        For queries that are themselves support points, their row in
        ``support``: that row is left out of their neighbourhood (exclusion by
        index, so a duplicate elsewhere in the support still counts).

    Returns
    -------
    q : torch.Tensor of shape (n_queries,), int64
    nearest_distance : torch.Tensor of shape (n_queries,)
        Euclidean distance to the nearest support point.
    nearest_index : torch.Tensor of shape (n_queries,), int64
        Its row in ``support`` (the first one on ties).
    """
    n_queries = queries.shape[0]
    q = torch.empty(n_queries, dtype=torch.int64, device=queries.device)
    nearest_distance = torch.empty(n_queries, dtype=queries.dtype, device=queries.device)
    nearest_index = torch.empty(n_queries, dtype=torch.int64, device=queries.device)
    for rows in _torch.batch_slices(n_queries, QUERY_CHUNK):
        distances = squared_distances(queries[rows], support)
        if query_index is not None:
            own = torch.arange(distances.shape[0], device=distances.device)
            distances[own, query_index[rows]] = math.inf
        nearest_distance[rows], nearest_index[rows] = distances.min(dim=1)
        matching = matches[query_predictions[rows]]
        nearest_other = torch.where(matching, math.inf, distances).min(dim=1).values
        q[rows] = (matching & (distances < nearest_other[:, None])).sum(dim=1).clamp_max(max_q)
    return q, nearest_distance.sqrt_(), nearest_index


def class_references(values, labels, n_classes, keep=None):
    """Per class, the sorted ``values`` of the rows with that label (and ``keep``).

    Returns
    -------
    references : list of ndarray
        ``n_classes`` sorted 1-D arrays (possibly empty).
    """
    values, labels = np.asarray(values), np.asarray(labels)
    if keep is None:
        keep = np.ones(len(values), dtype=bool)
    return [np.sort(values[(labels == c) & keep]) for c in range(n_classes)]


def distance_quantile(
    nearest_distance: torch.Tensor,
    references: Sequence[ArrayLike | torch.Tensor],
) -> torch.Tensor:
    """The distance signal ``d = min_c Q_c``, in [0, 1].

    ``Q_c`` is the fraction of class ``c``'s references (nearest distances
    of calibration points of true class ``c`` with ``q > 0``) that are at
    least ``nearest_distance``. The most conservative class is taken, so
    ``d`` does not depend on the prediction. A class without references
    gives ``d = 0``.

    Parameters
    ----------
    nearest_distance : torch.Tensor of shape (n_samples,)
    references : list of sorted 1-D arrays or tensors, one per class

    Returns
    -------
    d : torch.Tensor of shape (n_samples,)
    """
    d = torch.ones_like(nearest_distance)
    for reference in references:
        if len(reference) == 0:
            return torch.zeros_like(nearest_distance)
        reference = _torch.to_tensor(reference, nearest_distance.device, nearest_distance.dtype)
        below = torch.searchsorted(reference, nearest_distance.contiguous(), right=False)
        d = torch.minimum(d, 1 - below.to(d.dtype) / len(reference))
    return d


def reset_flips(q, logits, proba):
    """``q`` with 0 wherever the calibrated output does not single out ``argmax z′``.

    A uniform (``d = 0``) or tied output can move the argmax; such rows are
    treated as out of distribution, as the UV reference does. A tie counts
    as a flip whatever the class order (the reference breaks it towards the
    lowest index), so relabelling the classes never changes ``q``.
    """
    predictions = logits.argmax(dim=1, keepdim=True)
    own = proba.gather(1, predictions)
    others = proba.scatter(1, predictions, -math.inf).max(dim=1, keepdim=True).values
    return torch.where((own > others).squeeze(1), q, torch.zeros_like(q))


def rescaled_similarity(q: torch.Tensor, predicted_proba: torch.Tensor) -> torch.Tensor:
    """``q′ = min(q, (2 + q)^p)`` with ``p`` the calibrated probability of ``ŷ``.

    ``q′ = 0`` exactly when ``q = 0``, and ``min(q, 1) ≤ q′ ≤ q``.
    """
    q = q.to(predicted_proba.dtype)
    return torch.minimum(q, torch.exp(predicted_proba * torch.log(2 + q)))


def _order_statistic_index(n, alpha):
    # ⌊(1 − α)·n⌋ with the product rounded first: (1 − 0.9)·10 is 0.999…
    # in floating point and must give 1.
    return min(math.floor(round((1 - alpha) * n, 9)), n - 1)


def class_thresholds(proba, labels, alpha, n_classes):
    """Class-wise thresholds ``ψ_c``: the lower ``1 − α`` order statistic of ``proba[:, c]``.

    Over the rows of true class ``c``: ``sorted[min(⌊(1−α)·n_c⌋, n_c − 1)]``,
    no interpolation; ``0`` for a class without rows (which fails any test
    ``ψ_c ≥ α``).
    """
    thresholds = np.zeros(n_classes)
    for c in range(n_classes):
        values = np.sort(proba[labels == c, c])
        if len(values):
            thresholds[c] = values[_order_statistic_index(len(values), alpha)]
    return thresholds


def high_reliability_search(
    q_prime: np.ndarray,
    proba: np.ndarray,
    labels: np.ndarray,
    alpha: float,
    n_classes: int,
) -> tuple[float, np.ndarray]:
    """The smallest ``q′_min`` whose class-wise thresholds all reach ``alpha``.

    Candidates are the distinct ``q′ ≥ 1`` of the calibration rows, in
    increasing order; for each, :func:`class_thresholds` of the rows with
    ``q′ ≥`` the candidate. The first candidate with every ``ψ_c ≥ α`` is
    the answer.

    Parameters
    ----------
    q_prime : ndarray of shape (n_samples,)
    proba : ndarray of shape (n_samples, n_classes)
        Calibrated probabilities of the calibration rows.
    labels : ndarray of shape (n_samples,), integer
        True classes.
    alpha : float in (1/2, 1]

    Returns
    -------
    q_prime_min : float
        ``inf`` when no candidate qualifies: no high-reliability region
        exists and nothing can be admitted.
    thresholds : ndarray of shape (n_classes,)
        ``ψ``; ``inf`` everywhere when no region exists.
    """
    q_prime = np.asarray(q_prime, dtype=np.float64)
    candidates = np.unique(q_prime[np.floor(q_prime) >= 1])
    for candidate in candidates:
        kept = q_prime >= candidate
        thresholds = class_thresholds(proba[kept], labels[kept], alpha, n_classes)
        if np.all(thresholds >= alpha):
            return float(candidate), thresholds
    return math.inf, np.full(n_classes, math.inf)


def prediction_set_is_singleton(proba, thresholds, predictions):
    """Whether ``{c : proba_c ≥ ψ_c}`` is exactly ``{ŷ}``, row by row."""
    above = proba >= thresholds[None, :]
    own = above.gather(1, predictions[:, None]).squeeze(1)
    return own & (above.sum(dim=1) == 1)


def count_below(references, values, *, strict=True):
    """``(n_samples, n_classes)`` counts of each class's references below ``values``.

    ``strict`` counts ``r < value``; otherwise ``r ≤ value``.
    """
    columns = []
    for reference in references:
        reference = _torch.to_tensor(reference, values.device, values.dtype)
        columns.append(torch.searchsorted(reference, values.contiguous(), right=not strict))
    return torch.stack(columns, dim=1)


def effective_sample_size(q_prime, references):
    """v2's effective sample size: ``min(#{s ∈ S_c : s < q′}, |S_c| − 1)`` per class.

    ``S_c`` are the sorted ``q′`` of the calibration rows of true class ``c``.
    """
    sizes = torch.tensor([len(r) for r in references], device=q_prime.device)
    return torch.minimum(count_below(references, q_prime), (sizes - 1).clamp_min(0)[None, :])


def dkw_epsilon(sample_size, alpha):
    """The DKW band half-width ``sqrt(ln(2 / (1 − α)) / (2 n))`` (Massart's constant).

    ``1`` (the whole unit interval) where ``n = 0`` or ``α = 1``.
    """
    sample_size = sample_size.to(torch.float64)
    if alpha >= 1:
        return torch.ones_like(sample_size)
    epsilon = torch.sqrt(math.log(2 / (1 - alpha)) / (2 * sample_size.clamp_min(1)))
    return torch.where(sample_size > 0, epsilon.clamp_max(1), torch.ones_like(epsilon))


def output_quantiles(proba, references):
    """UV's class-wise output quantiles ``v_c = #{o ∈ O_c : o < p_c} / |O_c|``.

    ``O_c`` are the sorted ``SDM(z′)_c`` of calibration rows of true class
    ``c`` (each class must have some); a value at or above ``max(O_c)``
    saturates to 1.
    """
    columns = []
    for c, reference in enumerate(references):
        reference = _torch.to_tensor(reference, proba.device, proba.dtype)
        below = torch.searchsorted(reference, proba[:, c].contiguous(), right=False)
        quantile = below.to(proba.dtype) / len(reference)
        columns.append(torch.where(proba[:, c] >= reference[-1], torch.ones_like(quantile), quantile))
    return torch.stack(columns, dim=1)


def cauchy_quantile(alpha):
    """``tan(π(α − 1/2))``, the α-quantile of the standard Cauchy distribution."""
    return math.tan(math.pi * (alpha - 0.5))


def median_absolute_deviation(values, axis=0):
    """MAD about the median, ignoring NaN and infinite values; 0 where fewer than two remain."""
    values = np.where(np.isfinite(values), values, np.nan)
    counts = np.sum(~np.isnan(values), axis=axis)
    with warnings.catch_warnings():
        # All-NaN slices are expected (empty bins); they become 0 below.
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(values, axis=axis, keepdims=True)
        mad = np.nanmedian(np.abs(values - median), axis=axis)
    return np.where(counts >= 2, np.nan_to_num(mad), 0.0)


# -- the network of the learned mode ------------------------------------------


class _ExemplarNetwork(torch.nn.Module):
    """Exemplar adaptor ``h′ = A·(h − μ)/σ + a`` and linear head ``z′ = W′h′ + b′``.

    The reference's 1-D convolution with kernel width and stride ``D`` over
    one input vector is this affine map; there is no nonlinearity.
    """

    def __init__(self, n_features, exemplar_dim, n_classes, generator, *, input_mean, input_std, device, dtype):
        super().__init__()
        self.adaptor = init_layer_(torch.nn.Linear(n_features, exemplar_dim, device=device, dtype=dtype), generator)
        self.head = init_layer_(torch.nn.Linear(exemplar_dim, n_classes, device=device, dtype=dtype), generator)
        self.register_buffer("input_mean", torch.tensor(input_mean, device=device, dtype=dtype))
        self.register_buffer("input_std", torch.tensor(input_std, device=device, dtype=dtype))

    def exemplars(self, X):
        return self.adaptor((X - self.input_mean) / self.input_std)

    def forward(self, X):
        return self.head(self.exemplars(X))


class _ChangeOfBaseNet(NeuralNet):
    """skorch net minimising :func:`change_of_base_nll`.

    The targets are ``(n, 3)``: the label, then the ``q`` and ``d`` of the
    row, which the estimator recomputes between epochs (they are not
    differentiated).
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        labels = y_true[:, 0].round().long()
        return change_of_base_nll(y_pred, labels, y_true[:, 1], y_true[:, 2]).mean()


def _targets(labels, q, d, dtype):
    return torch.stack([labels.to(dtype), q.to(dtype), d.to(dtype)], dim=1)


class _LinearRescaler(torch.nn.Module):
    """UV's rescaler ``v′ = W″v`` (no bias), initialised at the identity."""

    def __init__(self, n_classes, *, device, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.eye(n_classes, device=device, dtype=dtype))

    def forward(self, quantiles):
        return quantiles @ self.weight.T


# -- the estimator ----------------------------------------------------------------


class SDMCalibrator(
    TorchClassifierMixin, TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """Similarity-Distance-Magnitude calibration with selective prediction.

    A classifier over given embeddings (hidden states of a language model,
    sentence embeddings, any features) whose probabilities account for how
    much the training data supports each prediction, and which abstains
    where that support is too thin to reach the target accuracy ``alpha``.
    It learns an exemplar space and a linear head, then for every input
    measures three signals:

    * **similarity** ``q``: how many of its nearest training exemplars, in
      a row, are correctly predicted and predicted as the input is;
    * **distance** ``d``: the quantile of its distance to the nearest
      training exemplar among the calibration set's, for the most
      conservative class (``0`` far from the data);
    * **magnitude** ``z′``: the logits.

    The SDM activation ``softmax(log(2+q)·d·z′)`` replaces the softmax, and
    a search over the calibration set finds the region of high reliability:
    the smallest rescaled similarity ``q′_min`` and class-wise thresholds
    ``ψ`` for which calibration rows reach accuracy ``alpha`` within every
    class. ``predict_selective`` admits a prediction only inside that
    region, by default with the DKW lower estimate of the distance.

    Read more in the :ref:`User Guide <sdm>`.

    Parameters
    ----------
    estimator : estimator or None, default=None
        ``None`` learns the exemplar adaptor and head (the paper's SDM
        estimator). Otherwise a classifier with ``decision_function`` or
        ``predict_proba`` for the magnitude, refitted on each repeat's
        training split, or a fitted one wrapped in
        :class:`~sklearn.frozen.FrozenEstimator`; the exemplar space is then
        the standardised ``X`` (or ``exemplar_transform(X)``), the papers'
        raw-feature ablation.
    exemplar_dim : int, default=1000
        Dimension ``M`` of the learned exemplar space.
    exemplar_transform : callable or None, default=None
        ``X -> exemplars``, only with ``estimator``.
    alpha : float in (0.5, 1], default=0.95
        Target accuracy inside the admitted region, for every true class
        and every predicted class. A requirement of the user, not a
        hyperparameter: ``score`` is measured at this ``alpha``, so a
        search over ``alpha`` compares different requirements and its
        answer means nothing.
    method : {"v2", "uv"}, default="v2"
        ``"v2"``, the SDM estimator of the ACL 2026 paper; ``"uv"`` adds the
        Universal Verification rescaler over class-wise output quantiles and
        Cauchy offsets across the repeats.
    n_repeats : int, default=3
        ``J``: repeats of (split, initialisation, training); the best by
        ``selection_metric`` is kept. The reference uses 10.
    max_epochs : int, default=100
        Epochs per repeat; the best epoch by ``selection_metric`` is kept.
        The reference uses 200.
    selection_metric : {"auto", "balanced_loss", "balanced_median_q"}, default="auto"
        ``"balanced_loss"`` (lowest class-balanced SDM loss on the
        calibration split; v2's rule) or ``"balanced_median_q"`` (highest
        class-balanced median ``q``; UV's). ``"auto"`` follows ``method``.
    batch_size : int, default=50
    learning_rate : float, default=3e-3
        Adam's step size. The reference's 1e-5 (with its 10 repeats × 200
        epochs) found no high-reliability region on scikit-learn's digits
        after 56 s of fitting; 3e-3 × 100 epochs × 3 repeats finds one on
        digits, breast cancer, wine and MiniLM topic embeddings at ``alpha``
        0.9 and 0.95 for every seed measured
        (``benchmarks/calibrate_sdm_defaults.py``), in about 10 s on digits.
    calibration_fraction : float in (0, 1), default=0.5
        Share of ``(X, y)`` held out as the calibration split of each
        repeat, when no calibration arrays are given.
    stratify : bool, default=True
        Stratify the splits by class. The reference does not (it assumes
        balanced classes); with ``False`` a warning flags imbalanced ``y``.
    max_q : int, default=2048
        Cap on ``q`` (the reference's neighbour-search depth).
    normalize_input : bool, default=True
        Standardise the inputs by the scalar mean and standard deviation of
        all entries of the training split.
    use_lower : bool, default=True
        Admit by the DKW lower estimate (``is_hr_lower``) rather than the
        point estimate (``is_hr``).
    reject_label : int, float or str, default=-1
        What ``predict_selective`` returns for a rejected row; must not be a
        class.
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, RandomState instance or None, default=None
        Decides the splits, initial weights and batch orders.
    verbose : int, default=0
        ``>= 1`` shows a progress bar over repeats and epochs.
    callbacks : list of skorch Callback or (name, Callback) pairs, default=None
        Further skorch callbacks, run during training after the library's
        own: a :class:`~sklearn_interp.manifold.LocalIDTracker`,
        ``skorch.callbacks.EpochScoring``, ``LRScheduler``, ...
        Every repeat trains a fresh net (callbacks are re-initialised) one
        epoch per ``partial_fit``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Defined only when ``X`` has string feature names.
    net_ : skorch.NeuralNet
        The chosen repeat's trained net (learned mode only).
    estimator_ : estimator
        The chosen repeat's magnitude model (``estimator`` mode only).
    support_exemplars_ : ndarray of shape (n_support, n_exemplar_dims)
        Exemplars of the chosen repeat's training split, searched at
        prediction.
    support_indices_ : ndarray of shape (n_support,)
        Their rows in the ``X`` given to ``fit``.
    support_labels_, support_predictions_ : ndarray of shape (n_support,)
        Their true and predicted classes, as indices into ``classes_``.
    distance_references_ : list of ndarray
        Per class, the sorted nearest distances of calibration rows of that
        class with ``q > 0`` (``R_c``).
    qprime_references_ : list of ndarray
        Per class, the sorted ``q′`` of its calibration rows (``S_c``).
    q_prime_min_ : float
        Start of the high-reliability region (``inf`` when none exists).
    calibration_q_prime_ : ndarray of shape (n_calibration,)
        The chosen repeat's calibration rows' ``q′``, with
        ``calibration_proba_`` (their SDM probabilities, shape
        (n_calibration, n_classes)) and ``calibration_labels_`` (their
        classes, as indices into ``classes_``): what :meth:`with_alpha`
        searches again.
    thresholds_ : ndarray of shape (n_classes,)
        Class-wise probability thresholds ``ψ``.
    hr_found_ : bool
        Whether a high-reliability region exists; when not, nothing is ever
        admitted (a result, announced by a warning).
    repeat_q_prime_min_ : ndarray of shape (n_repeats,)
        ``q′_min`` of every repeat.
    input_mean_, input_std_ : float
        The scalar standardisation of the chosen repeat.
    best_repeat_, best_epoch_ : int
    history_ : pandas.DataFrame
        One row per repeat and epoch: the calibration split's balanced loss,
        balanced median ``q`` and accuracy.
    rescaler_ : ndarray of shape (n_classes, n_classes)
        ``W″`` (``method="uv"`` only), like the attributes below.
    output_references_ : list of ndarray
        Per class, the sorted calibration ``SDM(z′)_c`` (``O_c``).
    qtilde_references_ : list of ndarray
        Per class, the sorted calibration ``q̃``.
    q_tilde_min_ : float
        The chosen repeat's ``q̃_min``.
    q_tilde_min_gamma_ : float
        ``q̃_min`` plus the Cauchy offset of its spread over the repeats.
    offsets_ : ndarray of shape (n_classes, 20)
        Cauchy offsets ``m`` per prediction and ``⌊q̃⌋``.

    See Also
    --------
    sklearn.calibration.CalibratedClassifierCV : Calibration without abstention.
    sklearn_interp.calibration.selective_report : Accuracies among admitted rows, per class.

    Notes
    -----
    ``predict`` and ``decision_function`` use the magnitude alone and never
    abstain, so ``scoring="accuracy"`` works unchanged. ``score`` measures
    what SDM is for: the share of held-out rows admitted at the required
    accuracy ``alpha`` (:func:`~sklearn_interp.calibration.reliable_admitted_fraction`),
    so a search over ``learning_rate``, ``exemplar_dim`` or ``max_epochs``
    prefers the model that admits more at that accuracy.

    Deviations from the reference, each documented in the user guide:
    splits are stratified; self-matches are excluded by row index, so exact
    duplicates elsewhere in the support count as neighbours; ``q`` is the
    number of matching support points closer than the nearest non-matching
    one, which is the reference's leading run without its sort; a row whose
    calibrated output does not single out ``argmax z′`` (uniform at
    ``d = 0``, or tied) gets ``q = 0`` whatever the class order; UV's
    rescaler is trained on full batches with step 1e-2 rather than on single
    rows with step 1e-4.

    References
    ----------
    .. [1] A. Schmaltz, "Similarity-Distance-Magnitude Universal Verification",
       arXiv:2502.20167, 2025.
    .. [2] A. Schmaltz, "Similarity-Distance-Magnitude Activations", Findings
       of ACL, 2026 (arXiv:2509.12760).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_interp.calibration import SDMCalibrator, admitted_fraction
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> sdm = SDMCalibrator(exemplar_dim=128, n_repeats=1, max_epochs=10,
    ...                     learning_rate=1e-3, device="cpu", random_state=0)
    >>> pipeline = make_pipeline(StandardScaler(), sdm).fit(X, y)
    >>> sdm.hr_found_, round(sdm.q_prime_min_, 1)
    (True, 52.0)
    >>> X_scaled = pipeline[0].transform(X)
    >>> round(admitted_fraction(sdm.predict_selective(X_scaled)), 2)
    0.28
    >>> sdm.predict_details(X_scaled[:2])[["prediction", "q", "d", "admitted"]].shape
    (2, 4)
    """

    _parameter_constraints: dict = {
        **TorchEstimatorMixin._torch_parameter_constraints,
        "callbacks": [list, None],
        "estimator": [HasMethods(["fit"]), None],
        "exemplar_dim": [Interval(Integral, 1, None, closed="left")],
        "exemplar_transform": [callable, None],
        "alpha": [Interval(Real, 0.5, 1, closed="right")],
        "method": [StrOptions({"v2", "uv"})],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "selection_metric": [StrOptions({"auto", "balanced_loss", "balanced_median_q"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "stratify": ["boolean"],
        "max_q": [Interval(Integral, 1, None, closed="left")],
        "normalize_input": ["boolean"],
        "use_lower": ["boolean"],
        "reject_label": [Integral, Real, str],
    }

    def __init__(
        self,
        estimator: BaseEstimator | None = None,
        *,
        exemplar_dim: int = 1000,
        exemplar_transform: Callable[..., Any] | None = None,
        alpha: float = 0.95,
        method: Literal["v2", "uv"] = "v2",
        n_repeats: int = 3,
        max_epochs: int = 100,
        selection_metric: Literal["auto", "balanced_loss", "balanced_median_q"] = "auto",
        batch_size: int = 50,
        learning_rate: float = 3e-3,
        calibration_fraction: float = 0.5,
        stratify: bool = True,
        max_q: int = 2048,
        normalize_input: bool = True,
        use_lower: bool = True,
        reject_label: int | float | str = -1,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[skorch.callbacks.Callback | tuple[str, skorch.callbacks.Callback]] | None = None,
    ) -> None:
        self.estimator = estimator
        self.exemplar_dim = exemplar_dim
        self.exemplar_transform = exemplar_transform
        self.alpha = alpha
        self.method = method
        self.n_repeats = n_repeats
        self.max_epochs = max_epochs
        self.selection_metric = selection_metric
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.calibration_fraction = calibration_fraction
        self.stratify = stratify
        self.max_q = max_q
        self.normalize_input = normalize_input
        self.use_lower = use_lower
        self.reject_label = reject_label
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # -- fitting ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(
        self,
        X: ArrayLike | torch.Tensor,
        y: ArrayLike,
        X_calibration: ArrayLike | None = None,
        y_calibration: ArrayLike | None = None,
    ) -> SDMCalibrator:
        """Train ``n_repeats`` models, keep the best, and calibrate it.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
        X_calibration : array-like of shape (n_calibration, n_features), default=None
            A fixed calibration set; ``X`` is then the training (support)
            set of every repeat, and repeats differ only in initialisation.
            Without it every repeat splits ``(X, y)`` afresh.
        y_calibration : array-like of shape (n_calibration,), default=None

        Returns
        -------
        self : SDMCalibrator
        """
        if self.exemplar_transform is not None and self.estimator is None:
            raise ValueError("exemplar_transform applies only with an estimator; the learned mode learns its exemplars.")
        X_t, _ = self._validate_tensor(X, reset=True, ensure_min_samples=4)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != X_t.shape[0]:
            raise ValueError(f"X has {X_t.shape[0]} rows but y has {len(y)}.")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(f"SDMCalibrator needs at least two classes; y has only {self.classes_[0]!r}.")
        if self.reject_label in self.classes_.tolist():
            raise ValueError(f"reject_label={self.reject_label!r} is one of the classes; choose another.")
        self._clear_device_cache()
        # One stream for the splits and every repeat's seeds.
        random_state = check_random_state(self.random_state)
        splits, X_all, y_all = self._splits(X_t, y_index, X_calibration, y_calibration, random_state)
        seeds = _torch.draw_seeds(random_state, size=(self.n_repeats, 2))
        # One tick per epoch of every repeat, advanced by the training loops.
        ticks = iter(_torch.progress(
            range(self.n_repeats * (self.max_epochs if self.estimator is None else 1)),
            verbose=self.verbose, desc="SDM repeats × epochs",
        ))
        runs = [
            self._fit_repeat(X_all, y_all, train, calibration, seeds[j], j, ticks)
            for j, (train, calibration) in enumerate(splits)
        ]
        self._store(runs, n_classes)
        return self

    def _splits(self, X_t, y_index, X_calibration, y_calibration, random_state):
        """(train rows, calibration rows) per repeat, over the stacked data."""
        n = X_t.shape[0]
        if (X_calibration is None) != (y_calibration is None):
            raise ValueError("Give both X_calibration and y_calibration, or neither.")
        if X_calibration is not None:
            X_ca, _ = self._validate_tensor(X_calibration, reset=False, dtype=X_t.dtype)
            y_ca = column_or_1d(y_calibration)
            if len(y_ca) != X_ca.shape[0]:
                raise ValueError(f"X_calibration has {X_ca.shape[0]} rows but y_calibration has {len(y_ca)}.")
            unknown = ~np.isin(y_ca, self.classes_)
            if unknown.any():
                raise ValueError(f"y_calibration has labels that are not in y: {np.unique(y_ca[unknown])!r}.")
            y_ca_index = np.searchsorted(self.classes_, y_ca)
            missing = np.setdiff1d(np.arange(len(self.classes_)), y_ca_index)
            if len(missing):
                raise ValueError(f"y_calibration has no rows of class(es) {self.classes_[missing]!r}; every class needs some.")
            train, calibration = np.arange(n), np.arange(n, n + X_ca.shape[0])
            return [(train, calibration)] * self.n_repeats, torch.cat([X_t, X_ca]), np.concatenate([y_index, y_ca_index])
        counts = np.bincount(y_index)
        if counts.min() < 2:
            raise ValueError(
                f"Class {self.classes_[counts.argmin()]!r} has {counts.min()} row(s); every class needs at "
                "least 2 to appear in both the training and the calibration split."
            )
        if not self.stratify and counts.max() > 1.5 * counts.min():
            warnings.warn(
                f"The classes are imbalanced (counts {counts.min()} to {counts.max()}) and stratify=False: "
                "a class may be nearly missing from a split.",
                UserWarning,
                stacklevel=4,
            )
        splitter_class = StratifiedShuffleSplit if self.stratify else ShuffleSplit
        splitter = splitter_class(
            n_splits=self.n_repeats,
            test_size=self.calibration_fraction,
            random_state=_torch.draw_seeds(random_state),
        )
        try:
            splits = list(splitter.split(np.zeros(n), y_index))
        except ValueError as error:
            raise ValueError(f"Cannot split the data into training and calibration rows: {error}") from None
        return splits, X_t, y_index

    def _fit_repeat(self, X_all, y_all, train, calibration, seeds, repeat, ticks):
        """One repeat: a model on ``train``, its best epoch, and its calibration."""
        device = X_all.device
        X_tr = X_all[_torch.to_tensor(train, device, torch.int64)]
        X_ca = X_all[_torch.to_tensor(calibration, device, torch.int64)]
        y_tr = _torch.to_tensor(y_all[train], device, torch.int64)
        y_ca = _torch.to_tensor(y_all[calibration], device, torch.int64)
        n_classes = len(self.classes_)
        history = []
        if self.estimator is None:
            model, best_epoch, signals, (mean, std) = self._train_network(X_tr, y_tr, X_ca, y_ca, seeds, repeat, history, ticks)
        else:
            model = clone(self.estimator).fit(_torch.to_numpy(X_tr), self.classes_[y_all[train]])
            self._check_estimator_classes(model)
            mean, std = self._input_scale(X_tr)
            space = self._model_space(model, mean, std)
            signals = _Signals.compute(space, X_tr, y_tr, X_ca, y_ca, n_classes, self.max_q)
            history.append(signals.summary(repeat, 0, y_ca, n_classes))
            best_epoch = 0
            next(ticks, None)
        run = _Run(
            model=model, signals=signals, train=np.asarray(train), history=history,
            best_epoch=best_epoch, input_mean=mean, input_std=std,
            selection=history[best_epoch][self._selection_key()],
        )
        run.calibrate(y_ca, n_classes, self.alpha, self.method)
        return run

    def _train_network(self, X_tr, y_tr, X_ca, y_ca, seeds, repeat, history, ticks):
        """Train the adaptor and head for ``max_epochs`` epochs; keep the best epoch."""
        device, dtype = X_tr.device, X_tr.dtype
        n_classes = len(self.classes_)
        mean, std = self._input_scale(X_tr)
        generator = _torch.make_generator(int(seeds[0]))
        module = _ExemplarNetwork(
            X_tr.shape[1], self.exemplar_dim, n_classes, generator,
            input_mean=mean, input_std=std, device=device, dtype=dtype,
        )
        net = make_net(
            _ChangeOfBaseNet, module, torch.nn.CrossEntropyLoss(),
            device=device, batch_size=self.batch_size, learning_rate=self.learning_rate, seed=int(seeds[1]),
            user_callbacks=self.callbacks,
        )
        # Epoch 1 is plain cross-entropy: q = e − 2 and d = 1.
        q_tr = torch.full((X_tr.shape[0],), math.e - 2, device=device, dtype=dtype)
        d_tr = torch.ones_like(q_tr)
        epoch_seeds = _torch.draw_seeds(int(seeds[1]), size=self.max_epochs)
        best_key, best = self._selection_key(), None
        sign = 1 if best_key == "balanced_loss" else -1
        for epoch in range(self.max_epochs):
            # A fresh batch order every epoch: each partial_fit builds a new
            # iterator, which reads its seed from this attribute.
            net.iterator_train__seed = int(epoch_seeds[epoch])
            net.partial_fit(X_tr, _targets(y_tr, q_tr, d_tr, dtype), epochs=1)
            space = _NetworkSpace(net.module_)
            signals = _Signals.compute(space, X_tr, y_tr, X_ca, y_ca, n_classes, self.max_q)
            summary = signals.summary(repeat, epoch, y_ca, n_classes)
            history.append(summary)
            if best is None or sign * summary[best_key] < sign * best[0]:
                best = (summary[best_key], epoch, copy.deepcopy(module.state_dict()), signals)
            q_tr, d_tr = signals.q_train.to(dtype), signals.d_train
            next(ticks, None)
        _, best_epoch, state, signals = best
        module.load_state_dict(state)
        module.eval()
        return net, best_epoch, signals, (mean, std)

    def _input_scale(self, X_tr):
        if not self.normalize_input:
            return 0.0, 1.0
        mean = float(X_tr.to(torch.float64).mean())
        std = float(X_tr.to(torch.float64).std()) if X_tr.numel() > 1 else 0.0
        return mean, (std if std > 0 else 1.0)

    def _selection_key(self):
        metric = self.selection_metric
        if metric == "auto":
            metric = "balanced_loss" if self.method == "v2" else "balanced_median_q"
        return metric

    def _check_estimator_classes(self, model):
        model_classes = getattr(model, "classes_", None)
        if model_classes is None or not np.array_equal(np.asarray(model_classes), self.classes_):
            raise ValueError(
                f"The estimator's classes_ ({model_classes!r}) differ from the classes of y "
                f"({self.classes_!r}); fit it on the same labels."
            )
        if not (hasattr(model, "decision_function") or hasattr(model, "predict_proba")):
            raise TypeError(f"{type(model).__name__} has neither decision_function nor predict_proba to give logits.")

    def _model_space(self, model, mean, std):
        if self.estimator is None:
            return _NetworkSpace(model.module_)
        return _EstimatorSpace(model, self.exemplar_transform, mean, std)

    def _store(self, runs, n_classes):
        """Keep the best repeat's state as fitted attributes."""
        sign = 1 if self._selection_key() == "balanced_loss" else -1
        selections = np.array([sign * run.selection for run in runs])
        best = int(np.nanargmin(selections)) if np.isfinite(selections).any() else 0
        run = runs[best]
        if self.estimator is None:
            self.net_ = run.model
        else:
            self.estimator_ = run.model
        signals = run.signals
        self.best_repeat_, self.best_epoch_ = best, run.best_epoch
        self.input_mean_, self.input_std_ = run.input_mean, run.input_std
        self.support_exemplars_ = _torch.to_numpy(signals.support)
        self.support_indices_ = run.train
        self.support_labels_ = _torch.to_numpy(signals.y_train)
        self.support_predictions_ = _torch.to_numpy(signals.predictions_train)
        self.history_ = pd.DataFrame([row for r in runs for row in r.history])
        for name, value in run.calibration.items():
            setattr(self, name, value)
        self.repeat_q_prime_min_ = np.array([r.calibration["q_prime_min_"] for r in runs])
        self.hr_found_ = bool(np.isfinite(self.q_prime_min_))
        if self.method == "uv":
            factor = cauchy_quantile(self.alpha)
            q_tilde_mins = np.array([r.calibration["q_tilde_min_"] for r in runs])
            self.q_tilde_min_gamma_ = self.q_tilde_min_ + median_absolute_deviation(q_tilde_mins) * factor
            medians = np.stack([r.offset_medians for r in runs])
            self.offsets_ = median_absolute_deviation(medians, axis=0) * factor
            self.hr_found_ = bool(np.isfinite(self.q_tilde_min_gamma_))
        if not self.hr_found_:
            warnings.warn(
                f"No high-reliability region reaches alpha={self.alpha} on the calibration set: "
                "predict_selective will admit nothing. The model and data cannot support that accuracy "
                "class by class; lower alpha, add calibration data or train longer.",
                UserWarning,
                stacklevel=4,
            )

    # -- prediction -------------------------------------------------------------------
    def _space(self):
        check_is_fitted(self)
        model = self.net_ if self.estimator is None else self.estimator_
        return self._model_space(model, self.input_mean_, self.input_std_)

    def _outputs(self, X):
        """Every per-row quantity of the calibrated prediction, as tensors."""
        space = self._space()
        X_t, as_tensor = self._validate_tensor(X, reset=False, dtype=space.dtype)
        device, dtype = X_t.device, X_t.dtype
        exemplars, logits = space.embed(X_t)
        support = self._on_device("support_exemplars_", device, dtype)
        labels = self._on_device("support_labels_", device, torch.int64)
        predictions_support = self._on_device("support_predictions_", device, torch.int64)
        matches = _matches(labels, predictions_support, len(self.classes_))
        predictions = logits.argmax(dim=1)
        q, nearest, nearest_index = support_neighbours(exemplars, support, matches, predictions, max_q=self.max_q)
        outputs = _calibrated_outputs(
            logits, q, nearest, self.distance_references_, self.qprime_references_,
            self.q_prime_min_, self._on_device("thresholds_", device, dtype), self.alpha,
        )
        outputs["nearest_support_index"] = self._on_device("support_indices_", device, torch.int64)[nearest_index]
        if self.method == "uv":
            outputs.update(self._uv_outputs(logits, outputs))
        return outputs, as_tensor

    def _uv_outputs(self, logits, outputs):
        return _uv_calibrated_outputs(
            logits, outputs["q"], outputs["sdm"], self.output_references_, self.qtilde_references_,
            self._on_device("rescaler_", logits.device, logits.dtype), self.q_tilde_min_gamma_,
            self._on_device("thresholds_uv_", logits.device, logits.dtype),
            self._on_device("offsets_", logits.device, logits.dtype), self.alpha,
        )

    def _admitted(self, outputs):
        if self.method == "uv":
            return outputs["is_hr_uv_lower" if self.use_lower else "is_hr_uv"]
        return outputs["is_hr_lower" if self.use_lower else "is_hr"]

    def _logits(self, X):
        """The magnitude ``z′`` of the rows of ``X`` (what ``decision_function`` and ``predict`` use)."""
        space = self._space()
        X_t, as_tensor = self._validate_tensor(X, reset=False, dtype=space.dtype)
        return space.embed(X_t)[1], as_tensor

    def predict_proba(
        self,
        X: ArrayLike | torch.Tensor,
        kind: Literal["sdm", "lower", "softmax"] = "sdm",
    ) -> np.ndarray:
        """Calibrated class probabilities.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        kind : {"sdm", "lower", "softmax"}, default="sdm"
            ``"sdm"``: the SDM activation (with ``method="uv"``, the
            rescaled output ``p_centroid``); ``"lower"``: the same with the
            DKW lower distance; ``"softmax"``: the uncalibrated softmax of
            the logits.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; far from the training data (``d = 0``) they are
            uniform.
        """
        if kind not in ("sdm", "lower", "softmax"):
            raise ValueError(f"kind must be 'sdm', 'lower' or 'softmax', got {kind!r}.")
        outputs, as_tensor = self._outputs(X)
        uv = self.method == "uv"
        name = {"sdm": "p_centroid" if uv else "sdm", "lower": "p_lower" if uv else "sdm_lower", "softmax": "softmax"}[kind]
        return _torch.to_output(outputs[name], as_tensor)

    def predict_selective(self, X: ArrayLike | torch.Tensor) -> np.ndarray:
        """Predictions inside the high-reliability region, ``reject_label`` elsewhere.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        y_selective : ndarray of shape (n_samples,)
        """
        outputs, _ = self._outputs(X)
        return _selective_labels(
            self.classes_, _torch.to_numpy(outputs["prediction"]), _torch.to_numpy(self._admitted(outputs)), self.reject_label
        )

    def score(self, X: ArrayLike | torch.Tensor, y: ArrayLike) -> float:
        """Share of ``X`` admitted at accuracy ``alpha`` (higher is better).

        :func:`~sklearn_interp.calibration.reliable_admitted_fraction` of
        :meth:`predict_selective`: an admitted row counts when the admitted
        rows of its true class and the admitted rows of its predicted class
        are each at least ``alpha`` accurate; the score is the number of
        counted rows over ``len(X)``. This is the default criterion of a
        search: among models trained differently it prefers the one that
        admits the most at the required accuracy. Do not search over
        ``alpha`` with it (a lower requirement admits more by definition).
        The accuracy of the never-abstaining ``predict`` is
        ``scoring="accuracy"``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Held-out rows.
        y : array-like of shape (n_samples,)
            Their true classes.

        Returns
        -------
        score : float
            In [0, 1].
        """
        y = column_or_1d(y)
        if len(y) != len(X):  # named here in the caller's terms, before any prediction
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}.")
        return reliable_admitted_fraction(y, self.predict_selective(X), alpha=self.alpha, reject_label=self.reject_label)

    def with_alpha(self, alpha: float) -> SDMCalibrator:
        """A copy of the fitted calibrator whose region is searched again for another ``alpha``.

        The trained network, support and distances are shared; only the
        high-reliability search over the calibration rows is redone, so the
        copy admits exactly what a refit at ``alpha`` with the same repeats
        would. Only for ``method="v2"``: UV's offsets depend on ``alpha``
        across all repeats, so refit it instead.

        Parameters
        ----------
        alpha : float in (0.5, 1]

        Returns
        -------
        calibrator : SDMCalibrator
            ``repeat_q_prime_min_`` still describes the repeats at the fitted
            ``alpha``.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_interp.calibration import SDMCalibrator
        >>> X, y = load_digits(return_X_y=True)
        >>> sdm = SDMCalibrator(n_repeats=1, max_epochs=10, random_state=0, device="cpu").fit(X[:1000], y[:1000])
        >>> at_90 = sdm.with_alpha(0.9)
        >>> at_90.alpha, sdm.alpha, at_90.net_ is sdm.net_
        (0.9, 0.95, True)
        """
        check_is_fitted(self)
        if not isinstance(alpha, Real) or isinstance(alpha, bool) or not 0.5 < alpha <= 1:
            raise ValueError(f"alpha must be a number in (0.5, 1], got {alpha!r}.")
        if self.method != "v2":
            raise ValueError("with_alpha recalibrates method='v2' only; UV's offsets depend on alpha across repeats, so refit.")
        calibrator = copy.copy(self)
        calibrator.alpha = alpha
        calibrator.q_prime_min_, calibrator.thresholds_ = high_reliability_search(
            self.calibration_q_prime_, self.calibration_proba_, self.calibration_labels_, alpha, len(self.classes_)
        )
        calibrator.hr_found_ = bool(np.isfinite(calibrator.q_prime_min_))
        return calibrator

    def predict_details(self, X: ArrayLike | torch.Tensor) -> pd.DataFrame:
        """Every signal behind each prediction, one row per input.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        details : pandas.DataFrame
            ``prediction`` (a class), ``q``, ``d_nearest``, ``d``,
            ``q_prime``, ``floor_q_prime``, ``is_ood``, ``is_hr``,
            ``d_lower`` and ``d_upper`` (the DKW band around ``d``),
            ``q_prime_lower``, ``is_hr_lower``, ``admitted``,
            ``nearest_support_index`` (the row of ``fit``'s ``X`` nearest in
            the exemplar space: explanation by exemplar), then per class
            ``sdm_<c>``, ``sdm_lower_<c>`` and ``effective_sample_size_<c>``;
            with ``method="uv"`` also ``q_tilde``, ``q_tilde_lower``,
            ``p_centroid``, ``p_lower`` (of the prediction), ``is_hr_uv`` and
            ``is_hr_uv_lower``.
        """
        outputs, _ = self._outputs(X)
        columns = {"prediction": self.classes_[_torch.to_numpy(outputs["prediction"])]}
        scalar_names = [
            "q", "d_nearest", "d", "q_prime", "floor_q_prime", "is_ood", "is_hr",
            "d_lower", "d_upper", "q_prime_lower", "is_hr_lower",
        ]
        if self.method == "uv":
            scalar_names += ["q_tilde", "q_tilde_lower", "p_centroid_predicted", "p_lower_predicted", "is_hr_uv", "is_hr_uv_lower"]
        for name in scalar_names:
            columns[name.removesuffix("_predicted")] = _torch.to_numpy(outputs[name])
        columns["admitted"] = _torch.to_numpy(self._admitted(outputs))
        columns["nearest_support_index"] = _torch.to_numpy(outputs["nearest_support_index"])
        for name in ("sdm", "sdm_lower", "effective_sample_size"):
            values = _torch.to_numpy(outputs[name])
            for c, label in enumerate(self.classes_):
                columns[f"{name}_{label}"] = values[:, c]
        return pd.DataFrame(columns)

    def transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray:
        """The exemplar vectors ``h′`` in which ``q`` and ``d`` are measured.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        exemplars : ndarray of shape (n_samples, n_exemplar_dims)
        """
        space = self._space()
        X_t, as_tensor = self._validate_tensor(X, reset=False, dtype=space.dtype)
        exemplars, _ = space.embed(X_t)
        return _torch.to_output(exemplars, as_tensor)

    @property
    def _n_features_out(self):
        return self.support_exemplars_.shape[1]


# -- the pieces the estimator composes ----------------------------------------------------


def _matches(labels, predictions, n_classes):
    """``(n_classes, n_support)``: support point correctly predicted as that class."""
    correct = predictions == labels
    return (torch.arange(n_classes, device=labels.device)[:, None] == predictions[None, :]) & correct[None, :]


class _NetworkSpace:
    """Exemplars and logits from the learned network."""

    def __init__(self, module):
        self.module = module
        self.dtype = next(module.parameters()).dtype

    def embed(self, X):
        was_training = self.module.training
        self.module.eval()
        exemplars, logits = [], []
        with torch.no_grad():
            for rows in _torch.batch_slices(X.shape[0], QUERY_CHUNK):
                exemplar = self.module.exemplars(X[rows])
                exemplars.append(exemplar)
                logits.append(self.module.head(exemplar))
        self.module.train(was_training)
        return torch.cat(exemplars), torch.cat(logits)


class _EstimatorSpace:
    """Exemplars from the (standardised) inputs, logits from a scikit-learn classifier."""

    def __init__(self, model, exemplar_transform, mean, std):
        self.model, self.exemplar_transform = model, exemplar_transform
        self.mean, self.std = mean, std
        self.dtype = None

    def embed(self, X):
        X_np = _torch.to_numpy(X)
        if hasattr(self.model, "decision_function"):
            scores = np.asarray(self.model.decision_function(X_np), dtype=np.float64)
            # Two classes: the log-odds s, as logits (−s/2, s/2) whose softmax is sigmoid(s).
            logits = np.column_stack([-scores / 2, scores / 2]) if scores.ndim == 1 else scores
        else:
            logits = np.log(np.clip(self.model.predict_proba(X_np), 1e-12, None))
        if self.exemplar_transform is None:
            exemplars = (X - self.mean) / self.std
        else:
            exemplars = _torch.to_tensor(np.asarray(self.exemplar_transform(X_np)), X.device, X.dtype)
            if exemplars.ndim != 2 or exemplars.shape[0] != X.shape[0] or not bool(torch.isfinite(exemplars).all()):
                raise ValueError(
                    "exemplar_transform must return a finite 2D array with one row per input, got shape "
                    f"{tuple(exemplars.shape)}."
                )
        return exemplars, _torch.to_tensor(logits, X.device, X.dtype)


class _Signals:
    """``q``, ``d`` and predictions of a repeat's training and calibration rows.

    Training rows search the training rows with themselves excluded, and get
    ``d`` against references from the training rows; calibration rows search
    the training rows and get ``d`` against their own references.
    """

    @classmethod
    def compute(cls, space, X_tr, y_tr, X_ca, y_ca, n_classes, max_q):
        self = cls()
        self.support, logits_tr = space.embed(X_tr)
        exemplars_ca, self.logits_ca = space.embed(X_ca)
        self.y_train = y_tr
        self.predictions_train = logits_tr.argmax(dim=1)
        predictions_ca = self.logits_ca.argmax(dim=1)
        matches = _matches(y_tr, self.predictions_train, n_classes)
        own = torch.arange(X_tr.shape[0], device=X_tr.device)
        self.q_train, nearest_tr, _ = support_neighbours(
            self.support, self.support, matches, self.predictions_train, max_q=max_q, query_index=own
        )
        self.q_ca, self.nearest_ca, _ = support_neighbours(exemplars_ca, self.support, matches, predictions_ca, max_q=max_q)
        train_references = class_references(_torch.to_numpy(nearest_tr), _torch.to_numpy(y_tr), n_classes, _torch.to_numpy(self.q_train > 0))
        self.distance_references = class_references(
            _torch.to_numpy(self.nearest_ca), _torch.to_numpy(y_ca), n_classes, _torch.to_numpy(self.q_ca > 0)
        )
        self.d_train = distance_quantile(nearest_tr, train_references)
        self.d_ca = distance_quantile(self.nearest_ca, self.distance_references)
        return self

    def summary(self, repeat, epoch, y_ca, n_classes):
        """The calibration split's class-balanced loss and median ``q``, and its accuracy."""
        q = self.q_ca.to(self.logits_ca.dtype)
        losses = change_of_base_nll(self.logits_ca, y_ca, q, self.d_ca)
        present = [c for c in range(n_classes) if bool((y_ca == c).any())]
        return {
            "repeat": repeat,
            "epoch": epoch,
            "balanced_loss": float(np.mean([float(losses[y_ca == c].mean()) for c in present])),
            "balanced_median_q": float(np.mean([float(q[y_ca == c].median()) for c in present])),
            "accuracy": float((self.logits_ca.argmax(dim=1) == y_ca).to(torch.float64).mean()),
        }


class _Run:
    """One repeat: its model, best epoch, signals and calibration."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def calibrate(self, y_ca, n_classes, alpha, method):
        signals = self.signals
        q = signals.q_ca.to(signals.logits_ca.dtype)
        sdm = sdm_activation(signals.logits_ca, q, signals.d_ca)
        q = reset_flips(q, signals.logits_ca, sdm)
        predictions = signals.logits_ca.argmax(dim=1)
        q_prime = rescaled_similarity(q, sdm.gather(1, predictions[:, None]).squeeze(1))
        labels = _torch.to_numpy(y_ca)
        q_prime_np, sdm_np = _torch.to_numpy(q_prime), _torch.to_numpy(sdm)
        q_prime_min, thresholds = high_reliability_search(q_prime_np, sdm_np, labels, alpha, n_classes)
        self.calibration = {
            "distance_references_": signals.distance_references,
            "qprime_references_": class_references(q_prime_np, labels, n_classes),
            "q_prime_min_": q_prime_min,
            "thresholds_": thresholds,
            # Kept so that with_alpha can search the region again without retraining.
            "calibration_q_prime_": q_prime_np,
            "calibration_proba_": sdm_np,
            "calibration_labels_": labels,
        }
        if method == "uv":
            self._calibrate_uv(signals.logits_ca, q, sdm, y_ca, n_classes, alpha)

    def _calibrate_uv(self, logits, q, sdm, y_ca, n_classes, alpha):
        """UV: output quantiles, the rescaler, ``q̃_min`` and the per-bin medians for the offsets."""
        labels, sdm_np = _torch.to_numpy(y_ca), _torch.to_numpy(sdm)
        output_references = [np.sort(sdm_np[labels == c, c]) for c in range(n_classes)]
        quantiles = output_quantiles(sdm, output_references)
        predictions = logits.argmax(dim=1)
        q_tilde = quantiles.gather(1, predictions[:, None]).squeeze(1) * torch.log(2 + q)
        rescaler = _train_rescaler(quantiles, y_ca, q_tilde)
        weight = rescaler.weight.detach()
        centroid = sdm_activation_base(quantiles @ weight.T, q_tilde)
        q_tilde = torch.where(centroid.argmax(dim=1) != predictions, torch.zeros_like(q_tilde), q_tilde)
        q_tilde_np, centroid_np = _torch.to_numpy(q_tilde), _torch.to_numpy(centroid)
        q_tilde_min, thresholds = high_reliability_search(q_tilde_np, centroid_np, labels, alpha, n_classes)
        self.calibration.update(
            rescaler_=_torch.to_numpy(weight),
            output_references_=output_references,
            qtilde_references_=class_references(q_tilde_np, labels, n_classes),
            q_tilde_min_=q_tilde_min,
            thresholds_uv_=thresholds,
        )
        predicted = _torch.to_numpy(predictions)
        bins = np.minimum(np.floor(q_tilde_np).astype(int), N_OFFSET_BINS - 1)
        own = centroid_np[np.arange(len(predicted)), predicted]
        self.offset_medians = np.full((n_classes, N_OFFSET_BINS), np.nan)
        for c in range(n_classes):
            for b in range(N_OFFSET_BINS):
                cell = own[(predicted == c) & (bins == b)]
                if len(cell):
                    self.offset_medians[c, b] = np.median(cell)


def sdm_activation_base(scores, q_tilde):
    """``softmax(log(2 + q̃) · scores)``: UV's output over rescaled quantiles."""
    return torch.softmax(torch.log(2 + q_tilde)[:, None] * scores, dim=1)


def _train_rescaler(quantiles, labels, q_tilde, max_epochs=1000, patience=10):
    """Fit ``W″`` by the change-of-base NLL in base ``2 + q̃``.

    Full-batch Adam with step 1e-2, stopping once the loss has gone
    ``patience`` epochs without a new minimum (the reference's rule) or
    after ``max_epochs``. The reference takes batches of one row at step
    1e-4. ``W″`` has only ``C²`` weights, so this is a plain torch loop:
    a skorch epoch's bookkeeping would cost twenty times the step itself.
    """
    module = _LinearRescaler(quantiles.shape[1], device=quantiles.device, dtype=quantiles.dtype)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    # d = 1: the scores are scaled by log(2 + q̃) alone.
    d = torch.ones_like(q_tilde)
    best, since_best, epochs = math.inf, 0, 0
    while epochs < max_epochs and since_best < patience:
        optimizer.zero_grad()
        loss = change_of_base_nll(module(quantiles), labels, q_tilde, d).mean()
        loss.backward()
        optimizer.step()
        epochs += 1
        value = float(loss.detach())
        best, since_best = (value, 0) if value < best else (best, since_best + 1)
    return module


def _calibrated_outputs(logits, q, nearest, distance_references, qprime_references, q_prime_min, thresholds, alpha):
    """v2's per-row outputs: the SDM activation, ``q′``, the region tests and the lower estimate."""
    dtype = logits.dtype
    q = q.to(dtype)
    predictions = logits.argmax(dim=1)
    d = distance_quantile(nearest, distance_references)
    sdm = sdm_activation(logits, q, d)
    q = reset_flips(q, logits, sdm)
    own = sdm.gather(1, predictions[:, None]).squeeze(1)
    q_prime = rescaled_similarity(q, own)
    is_hr = (torch.floor(q_prime) >= 1) & (q_prime >= q_prime_min) & prediction_set_is_singleton(sdm, thresholds, predictions)
    sample_size = effective_sample_size(q_prime, qprime_references)
    epsilon = dkw_epsilon(sample_size, alpha).max(dim=1).values.to(dtype)
    d_lower = (d - epsilon).clamp(0, 1)
    sdm_lower = sdm_activation(logits, q, d_lower)
    q_prime_lower = rescaled_similarity(q, sdm_lower.gather(1, predictions[:, None]).squeeze(1))
    is_hr_lower = (
        (torch.floor(q_prime_lower) >= 1) & (q_prime_lower >= q_prime_min)
        & prediction_set_is_singleton(sdm_lower, thresholds, predictions)
    )
    return {
        "prediction": predictions, "q": q, "d_nearest": nearest, "d": d, "sdm": sdm,
        "softmax": torch.softmax(logits, dim=1), "q_prime": q_prime, "floor_q_prime": torch.floor(q_prime),
        "is_ood": torch.floor(q_prime) < 1, "is_hr": is_hr, "effective_sample_size": sample_size,
        "d_lower": d_lower, "d_upper": (d + epsilon).clamp(0, 1), "sdm_lower": sdm_lower,
        "q_prime_lower": q_prime_lower, "is_hr_lower": is_hr_lower,
    }


def _uv_calibrated_outputs(logits, q, sdm, output_references, qtilde_references, weight, q_tilde_min_gamma, thresholds, offsets, alpha):
    """UV's outputs: ``q̃``, the rescaled output and its DKW lower version with Cauchy offsets."""
    dtype = logits.dtype
    predictions = logits.argmax(dim=1)
    log_base = torch.log(2 + q)
    quantiles = output_quantiles(sdm, output_references)
    q_tilde = quantiles.gather(1, predictions[:, None]).squeeze(1) * log_base
    centroid = sdm_activation_base(quantiles @ weight.T, q_tilde)
    q_tilde = torch.where(centroid.argmax(dim=1) != predictions, torch.zeros_like(q_tilde), q_tilde)
    epsilon = dkw_epsilon(count_below(qtilde_references, q_tilde, strict=False), alpha).to(dtype)
    own_class = torch.nn.functional.one_hot(predictions, logits.shape[1]).bool()
    # The lower estimate moves the predicted class's quantile down and the others up.
    quantiles_lower = torch.where(own_class, quantiles - epsilon, quantiles + epsilon).clamp(0, 1)
    q_tilde_lower = quantiles_lower.gather(1, predictions[:, None]).squeeze(1) * log_base
    lower = sdm_activation_base(quantiles_lower @ weight.T, q_tilde_lower)

    def admitted(q_value, proba):
        bins = torch.floor(q_value).long().clamp(0, N_OFFSET_BINS - 1)
        own = (proba.gather(1, predictions[:, None]).squeeze(1) - offsets[predictions, bins]).clamp_min(0)
        return (torch.floor(q_value) >= 1) & (q_value >= q_tilde_min_gamma) & (own >= thresholds[predictions])

    return {
        "q_tilde": q_tilde, "q_tilde_lower": q_tilde_lower, "p_centroid": centroid, "p_lower": lower,
        "p_centroid_predicted": centroid.gather(1, predictions[:, None]).squeeze(1),
        "p_lower_predicted": lower.gather(1, predictions[:, None]).squeeze(1),
        "is_hr_uv": admitted(q_tilde, centroid), "is_hr_uv_lower": admitted(q_tilde_lower, lower),
    }


def _selective_labels(classes, predictions, admitted, reject_label):
    """Class labels where admitted, ``reject_label`` elsewhere.

    The dtype is the classes' when ``reject_label`` fits it (numbers with
    numbers, strings with strings), else ``object``.
    """
    labels = classes[predictions]
    reject = np.asarray(reject_label)
    numeric = reject.dtype.kind in "iuf" and labels.dtype.kind in "iuf"
    textual = reject.dtype.kind == labels.dtype.kind == "U"
    selective = labels.astype(np.result_type(labels, reject) if numeric or textual else object)
    selective[~admitted] = reject_label
    return selective
