"""Local intrinsic dimension of point clouds such as contextual embeddings.

The local intrinsic dimension (LID) of a point is an intrinsic-dimension
estimate computed on its ``n_neighbors`` nearest neighbours only, the point
itself excluded (Ruppik et al., 2025, after the TwoNN estimator of Facco et
al., 2017). Its mean over a token sample tracks training dynamics of
language models.

The algorithm lives in small functions on tensors; :class:`LocalIDEstimator`
is a thin layer of validation and state over them. The costly part is
finding, for every member ``p`` of every neighbourhood, its nearest *other*
members. Recomputing all distances inside each neighbourhood costs
``O(n L² D)``; instead, ``p``'s nearest members are the first entries of its
own sorted global neighbour list that belong to the neighbourhood, which is
exact, and only the few members whose list holds too few of them fall back
to brute force.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Literal, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin

ESTIMATORS = ("twonn", "twonn_ml", "mle", "gride")

# Bounds of the GRIDE likelihood maximisation (those of DADApy).
_GRIDE_BOUNDS = (1e-3, 1e3)
# Bisection steps on log(d): the bracket shrinks below float64 resolution.
_GRIDE_STEPS = 64
# Gram-trick squared distances are used when their rounding bound is below
# this fraction of the smallest one (distances then accurate to 5e-11);
# otherwise they are recomputed from differences.
_GRAM_RELATIVE_TOL = 1e-10
# Floats a chunk of the within-neighbourhood brute force may gather, so
# that fallback stays within a fixed memory budget.
_CHUNK_ELEMENTS = 2**24


# ---------------------------------------------------------------------------
# Exact k nearest neighbours, chunked brute force.
# ---------------------------------------------------------------------------


def _exact_distances(points, centres):
    """Euclidean distances ``‖points − centre‖`` from differences, not the Gram trick.

    ``points`` is (..., k, D) and ``centres`` (..., D); returns (..., k).
    """
    return torch.linalg.vector_norm(points - centres.unsqueeze(-2), dim=-1)


def _gram_rounding_bound(query_sqnorms, reference_max_sqnorm, n_features, dtype):
    """An upper bound on the rounding error of Gram-trick squared distances.

    ``‖q‖² + ‖r‖² − 2 q·r`` computed in floating point is off by at most
    about ``(D + 3) ε (‖q‖ + ‖r‖)²``; used to prove that the candidates kept
    from the Gram-trick ranking contain the exact nearest neighbours.
    """
    eps = torch.finfo(dtype).eps
    return (n_features + 3) * eps * (query_sqnorms.sqrt() + math.sqrt(reference_max_sqnorm)) ** 2


def _exact_rows(query, reference, n_neighbors, excluded):
    """Exact nearest neighbours of a few rows, against the whole reference.

    ``excluded`` holds, per query row, a reference index to skip (its own
    row) or -1. Used where the Gram-trick ranking cannot be trusted.
    """
    distances = torch.cdist(query, reference, compute_mode="donot_use_mm_for_euclid_dist")
    rows = torch.nonzero(excluded >= 0).squeeze(1)
    distances[rows, excluded[rows]] = torch.inf
    values, indices = torch.topk(distances, n_neighbors, dim=1, largest=False, sorted=True)
    return values, indices


def _nearest_neighbors(query, reference, n_neighbors, *, exclude_self, batch_size, verbose=0):
    """The ``n_neighbors`` nearest rows of ``reference`` for every row of ``query``.

    Candidates are ranked by Gram-trick distances (one matrix product per
    chunk). A rounding bound then decides, row by row, whether those
    distances are accurate to ``_GRAM_RELATIVE_TOL``; where they may not be
    (float32, near-duplicates) they are recomputed from differences. The
    same bound proves that no row outside the candidates is nearer than the
    last neighbour kept; rows where that cannot be proven are redone
    exactly against the whole reference.

    Parameters
    ----------
    query : tensor of shape (n_query, D)
    reference : tensor of shape (n_reference, D)
        Both centred by the same vector, which keeps the Gram trick accurate.
    n_neighbors : int
    exclude_self : bool
        ``query`` is ``reference`` and row ``i`` is not its own neighbour
        (excluded by index, so an exact duplicate of ``i`` still is one).
    batch_size : int or None
        Query rows per chunk: memory is ``batch_size × (n_reference +
        n_neighbors × D)`` floats.

    Returns
    -------
    distances : tensor of shape (n_query, n_neighbors), ascending
    indices : int64 tensor of shape (n_query, n_neighbors)
    """
    n_query = query.shape[0]
    n_reference, n_features = reference.shape
    n_available = n_reference - 1 if exclude_self else n_reference
    n_candidates = min(n_available, n_neighbors + 8 + n_neighbors // 8)
    reference_sqnorms = (reference * reference).sum(1)
    reference_max_sqnorm = float(reference_sqnorms.max())
    distances = torch.empty((n_query, n_neighbors), dtype=query.dtype, device=query.device)
    indices = torch.empty((n_query, n_neighbors), dtype=torch.int64, device=query.device)
    slices = _torch.batch_slices(n_query, batch_size)
    for rows in _torch.progress(slices, verbose=verbose, desc="nearest neighbours"):
        chunk = query[rows]
        chunk_sqnorms = (chunk * chunk).sum(1)
        # ‖r‖² − 2 q·r ranks the reference rows; ‖q‖² is added to the few kept.
        partial = torch.addmm(reference_sqnorms[None, :], chunk, reference.T, alpha=-2.0)
        own = torch.arange(rows.start, rows.stop, device=query.device)
        if exclude_self:
            partial[torch.arange(len(own), device=query.device), own] = torch.inf
        squared, candidates = torch.topk(partial, n_candidates, dim=1, largest=False, sorted=True)
        squared += chunk_sqnorms[:, None]
        bound = _gram_rounding_bound(chunk_sqnorms, reference_max_sqnorm, n_features, query.dtype)
        found = squared.clamp(min=0).sqrt()
        inaccurate = torch.nonzero(bound > _GRAM_RELATIVE_TOL * squared[:, 0]).squeeze(1)
        if len(inaccurate):
            exact = _exact_distances(reference[candidates[inaccurate]], chunk[inaccurate])
            exact, order = torch.sort(exact, dim=1)
            found[inaccurate], candidates[inaccurate] = exact, candidates[inaccurate].gather(1, order)
        if n_candidates < n_available:
            # A row outside the candidates has a Gram value at least the
            # largest kept one, hence a squared distance at least that minus
            # the rounding bound.
            floor = squared[:, -1] - bound
            unproven = torch.nonzero(found[:, n_neighbors - 1] ** 2 > floor).squeeze(1)
            if len(unproven):
                excluded = own[unproven] if exclude_self else torch.full_like(unproven, -1)
                found[unproven], candidates[unproven] = _exact_rows(
                    chunk[unproven], reference, n_candidates, excluded
                )
        distances[rows] = found[:, :n_neighbors]
        indices[rows] = candidates[:, :n_neighbors]
    return distances, indices


# ---------------------------------------------------------------------------
# Nearest other members inside every neighbourhood.
# ---------------------------------------------------------------------------


def _nearest_within(neighbourhoods, graph_indices, graph_distances, reference, n_nearest):
    """Distances from every member of every neighbourhood to its nearest other members.

    Member ``p``'s global neighbour list (``graph_indices[p]``, sorted by
    distance, ``p`` itself excluded) lists every reference row nearer than
    its last entry, so the first ``n_nearest`` entries that belong to the
    neighbourhood are exactly ``p``'s ``n_nearest`` nearest other members.
    Members whose list holds fewer are computed by brute force.

    Parameters
    ----------
    neighbourhoods : int64 tensor of shape (b, L)
        Reference rows forming each neighbourhood.
    graph_indices, graph_distances : tensors of shape (n_reference, K)
        The exact k-NN graph of the reference rows, self excluded.
    reference : tensor of shape (n_reference, D)
    n_nearest : int

    Returns
    -------
    nearest : tensor of shape (b, L, n_nearest)
        Ascending distances to the nearest other members.
    """
    n_rows, size = neighbourhoods.shape
    graph_width = graph_indices.shape[1]
    device = reference.device
    # Membership through a dense (b, n_reference) mask: a scatter and a
    # gather, far cheaper than searching sorted member lists.
    membership = torch.zeros((n_rows, reference.shape[0]), dtype=torch.bool, device=device)
    membership.scatter_(1, neighbourhoods, True)
    members = neighbourhoods.reshape(-1)
    nearest = torch.empty((n_rows * size, n_nearest), dtype=reference.dtype, device=device)
    # (neighbourhood, member) pairs still to resolve, as flat indices. A
    # member's nearest neighbours mostly lie in the neighbourhood too, so the
    # head of its list usually suffices; the rest read the whole list, and
    # the few left after that are brute-forced.
    pending = torch.arange(n_rows * size, device=device)
    head = min(graph_width, max(16, 4 * n_nearest))
    for width in dict.fromkeys((head, graph_width)):
        pending_members = members[pending]
        is_member = membership[(pending // size)[:, None], graph_indices[pending_members, :width]]
        hits, found = _first_hits(is_member, n_nearest)
        nearest[pending[found]] = graph_distances[pending_members[found, None], hits[found]]
        pending = pending[~found]
        if not len(pending):
            break
    if len(pending):
        pairs = torch.stack([pending // size, pending % size], dim=1)
        nearest[pending] = _nearest_within_brute_force(neighbourhoods, pairs, reference, n_nearest)
    return nearest.view(n_rows, size, n_nearest)


def _first_hits(is_member, n_hits):
    """Positions of the first ``n_hits`` True entries along the last axis.

    Returns
    -------
    hits : int64 tensor of shape (..., n_hits)
        Ascending positions; meaningless where ``found`` is False.
    found : bool tensor of shape (...)
        Whether the row holds ``n_hits`` True entries.
    """
    width = is_member.shape[-1]
    if n_hits > 4:
        position = torch.arange(width, device=is_member.device)
        marked = torch.where(is_member, position, width)
        hits = torch.topk(marked, n_hits, dim=-1, largest=False, sorted=True).values
        return hits.clamp(max=width - 1), hits[..., -1] < width
    # For the few hits TwoNN needs, repeated argmax is several times faster.
    remaining = is_member.to(torch.uint8)
    hits = []
    for _ in range(n_hits):
        hit = remaining.argmax(-1, keepdim=True)
        found = remaining.gather(-1, hit).squeeze(-1).bool()
        remaining.scatter_(-1, hit, 0)
        hits.append(hit)
    return torch.cat(hits, dim=-1), found


def _nearest_within_brute_force(neighbourhoods, pairs, reference, n_nearest):
    """Exact nearest other members for (neighbourhood row, member column) pairs."""
    size, n_features = neighbourhoods.shape[1], reference.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // (size * n_features))
    out = []
    for batch in _torch.batch_slices(len(pairs), chunk):
        rows, columns = pairs[batch].unbind(1)
        members = neighbourhoods[rows]  # (f, L)
        centres = members.gather(1, columns[:, None])  # (f, 1)
        distances = _exact_distances(reference[members], reference[centres[:, 0]])
        # The member itself is excluded by index, not by a zero distance.
        distances.masked_fill_(members == centres, torch.inf)
        out.append(torch.topk(distances, n_nearest, dim=1, largest=False, sorted=True).values)
    return torch.cat(out)


# ---------------------------------------------------------------------------
# Estimators of the dimension from within-neighbourhood distances.
# ---------------------------------------------------------------------------


def _n_nearest(estimator, mle_k, gride_n1):
    """How many nearest other members each estimator reads."""
    return {"twonn": 2, "twonn_ml": 2, "mle": mle_k, "gride": 2 * gride_n1}[estimator]


def _zero_denominator(denominator, duplicate_tol):
    """Members whose ratio is undefined: a (near-)duplicate in the neighbourhood.

    The distance in the ratio's denominator is zero, or at most
    ``duplicate_tol`` times its median over the neighbourhood.
    """
    if duplicate_tol > 0:
        threshold = duplicate_tol * denominator.median(dim=-1, keepdim=True).values
        return denominator <= threshold
    return denominator <= 0


def _max_undefined(size, discard_fraction):
    """How many undefined ratios a neighbourhood of ``size`` tolerates.

    As many as the TwoNN fit discards, so its kept ratios are all defined.
    """
    return size - math.floor(size * (1 - discard_fraction))


def _twonn(nearest, *, discard_fraction, duplicate_tol, drop_undefined):
    """TwoNN: least-squares slope of ``−log(1 − F)`` on ``log μ`` through the origin.

    ``μ = r2 / r1`` per member, sorted; the largest ``discard_fraction`` are
    dropped and the empirical CDF ``F_j = j / n`` runs over all ``n``.
    Undefined ratios (duplicates) sort last, into the discarded tail; with
    ``drop_undefined`` they are removed and ``n`` counts the rest
    (scikit-dimension's convention).
    """
    r1, r2 = nearest[..., 0], nearest[..., 1]
    size = r1.shape[-1]
    undefined = _zero_denominator(r1, duplicate_tol)
    n_undefined = undefined.sum(-1)
    log_ratio = torch.log(r2 / r1).masked_fill(undefined, torch.inf)
    log_ratio = torch.sort(log_ratio, dim=-1).values
    n = (size - n_undefined) if drop_undefined else torch.full_like(n_undefined, size)
    n = n.to(nearest.dtype)
    n_kept = torch.floor(n * (1 - discard_fraction))
    rank = torch.arange(1, size + 1, dtype=nearest.dtype, device=nearest.device)
    kept = rank <= n_kept.unsqueeze(-1)
    x = torch.where(kept, log_ratio, 0.0)
    y = torch.where(kept, -torch.log(1 - rank / n.unsqueeze(-1)), 0.0)
    dimension = (x * y).sum(-1) / (x * x).sum(-1)
    # No ratio kept gives 0 / 0, caught as non-finite.
    return _undefined_to_nan(dimension, undefined, discard_fraction, drop_undefined, minimum=1)


def _twonn_ml(nearest, *, discard_fraction, duplicate_tol, drop_undefined):
    """TwoNN maximum likelihood ``(n − 1) / Σ log μ`` over the defined ratios."""
    r1, r2 = nearest[..., 0], nearest[..., 1]
    undefined = _zero_denominator(r1, duplicate_tol)
    n = (~undefined).sum(-1).to(nearest.dtype)
    log_ratio = torch.log(r2 / r1).masked_fill(undefined, 0.0)
    dimension = (n - 1) / log_ratio.sum(-1)
    return _undefined_to_nan(dimension, undefined, discard_fraction, drop_undefined, minimum=2)


def _mle(nearest, *, discard_fraction, duplicate_tol, drop_undefined):
    """Levina–Bickel MLE per member, combined by their harmonic mean.

    Member ``p`` with distances ``T_1 ≤ … ≤ T_k`` estimates
    ``(k − 1) / Σ_{j<k} log(T_k / T_j)``; the harmonic mean over members is
    MacKay and Ghahramani's correction (scikit-dimension's ``comb="mle"``).
    """
    k = nearest.shape[-1]
    undefined = _zero_denominator(nearest[..., 0], duplicate_tol)
    log_distances = torch.log(nearest)
    log_sums = (k - 1) * log_distances[..., -1] - log_distances[..., :-1].sum(-1)
    log_sums = log_sums.masked_fill(undefined, 0.0)
    n = (~undefined).sum(-1).to(nearest.dtype)
    dimension = (k - 1) * n / log_sums.sum(-1)
    return _undefined_to_nan(dimension, undefined, discard_fraction, drop_undefined, minimum=1)


def _gride_score(dimension, log_ratio, defined, n1):
    """Derivative of the GRIDE log-likelihood in ``d`` (decreasing in ``d``)."""
    d = dimension.unsqueeze(-1)
    # a / (1 − μ^(−d)) with a = log μ, whose limit at a = 0 is 1 / d.
    safe = torch.where(log_ratio > 0, log_ratio, 1.0)
    term = torch.where(log_ratio > 0, safe / -torch.expm1(-d * safe), 1.0 / d)
    n = defined.sum(-1).to(log_ratio.dtype)
    return (
        n / dimension
        + (n1 - 1) * torch.where(defined, term, 0.0).sum(-1)
        - (2 * n1 - 1) * torch.where(defined, log_ratio, 0.0).sum(-1)
    )


def _gride(nearest, *, n1, discard_fraction, duplicate_tol, drop_undefined):
    """GRIDE: maximum likelihood of ``μ = r_{2 n1} / r_{n1}`` (Denti et al., 2022).

    The density ``d (μ^d − 1)^{n1−1} / (B(n1, n1) μ^{(2 n1 − 1) d + 1})`` has a
    log-likelihood concave in ``d``; its maximiser on DADApy's bracket
    ``[1e-3, 1e3]`` is found by bisection on ``log d``. ``n1 = 1`` gives
    ``n / Σ log μ``.
    """
    denominator, numerator = nearest[..., n1 - 1], nearest[..., 2 * n1 - 1]
    undefined = _zero_denominator(denominator, duplicate_tol)
    defined = ~undefined
    log_ratio = torch.log(numerator / denominator).masked_fill(undefined, 0.0)
    shape, dtype, device = log_ratio.shape[:-1], log_ratio.dtype, log_ratio.device
    low = torch.full(shape, math.log(_GRIDE_BOUNDS[0]), dtype=dtype, device=device)
    high = torch.full(shape, math.log(_GRIDE_BOUNDS[1]), dtype=dtype, device=device)
    for _ in range(_GRIDE_STEPS):
        middle = (low + high) / 2
        rising = _gride_score(middle.exp(), log_ratio, defined, n1) > 0
        low = torch.where(rising, middle, low)
        high = torch.where(rising, high, middle)
    dimension = ((low + high) / 2).exp()
    return _undefined_to_nan(dimension, undefined, discard_fraction, drop_undefined, minimum=1)


def _undefined_to_nan(dimension, undefined, discard_fraction, drop_undefined, *, minimum):
    """NaN where too few ratios are defined for the estimate to mean anything."""
    size = undefined.shape[-1]
    n_undefined = undefined.sum(-1)
    too_few = (size - n_undefined) < minimum
    if not drop_undefined:
        too_few |= n_undefined > _max_undefined(size, discard_fraction)
    return dimension.masked_fill(too_few | ~torch.isfinite(dimension), torch.nan)


def _dimension(nearest, *, estimator, discard_fraction, gride_n1, duplicate_tol, drop_undefined):
    """One dimension per neighbourhood from (…, L, m) within-neighbourhood distances."""
    options = dict(
        discard_fraction=discard_fraction, duplicate_tol=duplicate_tol, drop_undefined=drop_undefined
    )
    if estimator == "twonn":
        return _twonn(nearest, **options)
    if estimator == "twonn_ml":
        return _twonn_ml(nearest, **options)
    if estimator == "mle":
        return _mle(nearest, **options)
    return _gride(nearest, n1=gride_n1, **options)


def _pareto_log_likelihood(dimension, r1, r2):
    """Log-density ``log d − (d + 1) log μ`` of the ratio ``μ = r2 / r1`` under TwoNN's model."""
    log_ratio = torch.log(r2 / r1)
    value = torch.log(dimension) - (dimension + 1) * log_ratio
    return value.masked_fill(~torch.isfinite(value), torch.nan)


# ---------------------------------------------------------------------------
# Rows of the fitted cloud.
# ---------------------------------------------------------------------------


def _unique_rows(X):
    """Distinct rows in order of first occurrence, and every row's representative.

    Returns
    -------
    first_rows : int64 tensor of shape (n_unique,)
        Row of ``X`` where each distinct row first occurs, ascending.
    representative : int64 tensor of shape (n_samples,)
        Index into ``first_rows`` of every row of ``X``.
    """
    # Adding 0.0 turns -0.0 into 0.0, so equal rows compare equal bitwise.
    _, inverse = torch.unique(X + 0.0, dim=0, return_inverse=True)
    n_samples = X.shape[0]
    n_unique = int(inverse.max()) + 1
    first = torch.full((n_unique,), n_samples, dtype=torch.int64, device=X.device)
    first.scatter_reduce_(0, inverse, torch.arange(n_samples, device=X.device), reduce="amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_unique, device=X.device)
    return first[order], rank[inverse]


def _centred(X, centre):
    # Centring keeps the Gram trick's rounding small and makes the neighbour
    # search invariant to translations of the cloud.
    return X - centre


def _global_dimension(graph_distances, *, n_nearest, **options):
    """The estimator over a whole cloud, from its k-NN graph's distances."""
    return float(_dimension(graph_distances[None, :, :n_nearest], **options)[0])


def intrinsic_dimension(
    X: ArrayLike | torch.Tensor,
    *,
    estimator: Literal["twonn", "twonn_ml", "mle", "gride"] = "twonn",
    discard_fraction: float = 0.1,
    mle_k: int = 20,
    gride_n1: int = 1,
    device: str | torch.device = "auto",
    dtype: Literal["float32", "float64"] = "float64",
    batch_size: int = 256,
) -> float:
    """Global intrinsic dimension of a point cloud.

    The estimators of :class:`LocalIDEstimator` applied to the whole cloud,
    from its exact k-nearest-neighbour graph (chunked brute force in torch,
    ``O(n² D)`` time and ``batch_size × n`` memory). Rows are used as given:
    an exact duplicate gives a zero nearest distance and its ratio is
    dropped, as scikit-dimension does. :class:`LocalIDEstimator`'s
    ``global_id_`` is the same estimate on the distinct rows.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
    estimator : {"twonn", "twonn_ml", "mle", "gride"}, default="twonn"
    discard_fraction : float, default=0.1
        Fraction of largest ratios TwoNN discards.
    mle_k : int, default=20
        Neighbours per point for ``"mle"``.
    gride_n1 : int, default=1
        Scale of ``"gride"``: the ratio of the ``2·n1``-th to the ``n1``-th
        neighbour distance.
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float64"
    batch_size : int, default=256
        Rows per chunk of the neighbour search.

    Returns
    -------
    dimension : float
        NaN when too many points have an exact duplicate.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.manifold import intrinsic_dimension
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 10))
    >>> round(intrinsic_dimension(plane), 1)
    2.0
    """
    estimate = LocalIDEstimator(
        estimator=estimator,
        discard_fraction=discard_fraction,
        mle_k=mle_k,
        gride_n1=gride_n1,
        handle_duplicates="keep",
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    estimate._validate_params()
    X_t, _ = estimate._validate_tensor(X, reset=True, ensure_min_samples=3)
    n_nearest = _n_nearest(estimator, mle_k, gride_n1)
    if n_nearest > X_t.shape[0] - 1:
        raise ValueError(
            f"estimator={estimator!r} reads {n_nearest} neighbours per point, "
            f"but X has only {X_t.shape[0]} rows."
        )
    with torch.no_grad():
        X_t = _centred(X_t, X_t.mean(0))
        distances, _ = _nearest_neighbors(X_t, X_t, n_nearest, exclude_self=True, batch_size=batch_size)
        return _global_dimension(distances, n_nearest=n_nearest, **estimate._estimator_options(drop_undefined=True))


class LocalIDEstimator(TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Local intrinsic dimension (LID) of every point of a cloud.

    For every point, an intrinsic-dimension estimator (TwoNN by default) is
    fitted on its ``n_neighbors`` nearest neighbours, the point itself
    excluded by index; the mean of these local estimates over a token sample
    is the statistic Ruppik et al. (2025) track across training checkpoints
    of language models. Exact duplicate rows, common in token embeddings,
    are removed before estimation and given their representative's value.

    Computed in torch on CPU or GPU: an exact k-nearest-neighbour graph by
    chunked brute force (``O(n² D)`` time, ``batch_size × n`` memory), from
    which the nearest points inside every neighbourhood are read without
    recomputing its distances. For clouds too large for ``O(n²)``, estimate
    on a random subset with ``max_samples`` (the paper uses 30 000 tokens).

    Read more in the :ref:`User Guide <local_id>`.

    Parameters
    ----------
    n_neighbors : int, default=128
        Neighbourhood size ``L`` (the paper's 128), at least 3. Clipped,
        with a warning, to one less than the number of distinct fitted rows.
        LIDs are comparable only at equal ``n_neighbors`` and sample size.
    estimator : {"twonn", "twonn_ml", "mle", "gride"}, default="twonn"
        ``"twonn"``: Facco et al.'s least-squares fit of ``−log(1 − F)`` on
        ``log(r2 / r1)`` through the origin, as scikit-dimension computes it.
        ``"twonn_ml"``: its maximum likelihood ``(n − 1) / Σ log(r2 / r1)``.
        ``"mle"``: Levina–Bickel with ``mle_k`` neighbours inside each
        neighbourhood, combined by the harmonic mean. ``"gride"``: maximum
        likelihood of the ratio of the ``2·gride_n1``-th to the ``gride_n1``-th
        neighbour distance (Denti et al., 2022).
    discard_fraction : float, default=0.1
        Fraction of largest ratios TwoNN discards (boundary and outlier
        points), in (0, 1). For every estimator it is also the largest
        fraction of undefined (duplicate) ratios a neighbourhood may hold
        before its LID is NaN.
    mle_k : int, default=20
        Neighbours per member for ``estimator="mle"``.
    gride_n1 : int, default=1
        Scale of ``estimator="gride"``.
    handle_duplicates : {"unique", "raise", "keep"}, default="unique"
        ``"unique"``: estimate on the distinct rows and give every duplicate
        its representative's value. ``"raise"``: a ``ValueError`` if ``X``
        has duplicate rows. ``"keep"``: use the rows as given, dropping the
        undefined ratios of duplicates as scikit-dimension does (for parity
        with it).
    duplicate_tol : float, default=0.0
        A ratio is undefined when its denominator distance is at most
        ``duplicate_tol`` times that distance's median over the
        neighbourhood; 0 catches exact duplicates only, a small positive
        value also near-duplicates.
    smooth : bool, default=False
        Also compute ``local_ids_smooth_``: the mean of a point's LID and
        its neighbours' LIDs.
    max_samples : int, default=None
        Fit on a random subset of this many distinct rows; the other rows
        get LIDs as new points (see :meth:`transform`).
    random_state : int, RandomState instance or None, default=None
        Draws the ``max_samples`` subset.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    dtype : {"float32", "float64"}, default="float64"
        Working precision. Distances are always exact differences, never
        the Gram trick, which in float32 moves single LIDs by 0.3.
    batch_size : int, default=256
        Points per chunk; memory is about ``batch_size × (n_fit +
        n_neighbors × n_features)`` floats.
    verbose : int, default=0
        Progress bars when positive.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features,)
        Names of features seen during ``fit``, when ``X`` has string
        column names.
    X_fit_ : ndarray of shape (n_fit, n_features)
        The reference cloud: the distinct (and sub-sampled) rows.
    sample_indices_ : ndarray of shape (n_fit,)
        Row of ``X`` each row of ``X_fit_`` comes from.
    representative_ : ndarray of shape (n_samples,)
        Row of ``X_fit_`` representing each row of ``X``; -1 for rows left
        out by ``max_samples``.
    local_ids_ : ndarray of shape (n_samples,)
        LID of every row of ``X`` (NaN where undefined).
    local_ids_smooth_ : ndarray of shape (n_samples,)
        Smoothed LIDs; only when ``smooth=True``.
    mean_local_id_, median_local_id_, std_local_id_ : float
        Summaries of the LIDs of the rows of ``X_fit_`` (NaN ignored): the
        paper's statistic is the mean.
    global_id_ : float
        The same estimator on the whole of ``X_fit_``.
    n_neighbors_ : int
        The neighbourhood size used, after clipping.
    neighbor_indices_ : ndarray of shape (n_fit, L)
        Each fitted row's neighbourhood: rows of ``X_fit_`` by distance.
    neighbor_distances_ : ndarray of shape (n_fit, L)
        Their distances, ascending (exact to a relative 5e-11).
    n_duplicates_ : int
        Rows of ``X`` that repeat an earlier row.
    n_undefined_ : int
        Rows of ``X`` whose LID is NaN.

    See Also
    --------
    intrinsic_dimension : The global estimate alone.
    mean_local_id : The mean LID of new rows (the paper's statistic).
    twonn_loglik_scorer : The default ``score`` as a named scorer.

    Notes
    -----
    TwoNN on ``L = 100`` neighbours is biased low in high dimension: a
    10-dimensional Gaussian cloud reads about 9 locally against 10.3
    globally. Compare LIDs only at equal ``n_neighbors`` and sample size.

    References
    ----------
    .. [1] B. M. Ruppik et al., "Less is More: Local Intrinsic Dimensions of
       Contextual Language Models", NeurIPS 2025.
    .. [2] E. Facco, M. d'Errico, A. Rodriguez and A. Laio, "Estimating the
       intrinsic dimension of datasets by a minimal neighborhood
       information", Scientific Reports 7, 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.manifold import LocalIDEstimator
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 3)) @ rng.standard_normal((3, 20))
    >>> lid = LocalIDEstimator(n_neighbors=100).fit(X)
    >>> lid.local_ids_.shape
    (1000,)
    >>> bool(2.5 < lid.mean_local_id_ < 3.5)
    True
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 3, None, closed="left")],
        "estimator": [StrOptions(set(ESTIMATORS))],
        "discard_fraction": [Interval(Real, 0, 1, closed="neither")],
        "mle_k": [Interval(Integral, 2, None, closed="left")],
        "gride_n1": [Interval(Integral, 1, None, closed="left")],
        "handle_duplicates": [StrOptions({"unique", "raise", "keep"})],
        "duplicate_tol": [Interval(Real, 0, None, closed="left")],
        "smooth": ["boolean"],
        "max_samples": [Interval(Integral, 4, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        n_neighbors: int = 128,
        *,
        estimator: Literal["twonn", "twonn_ml", "mle", "gride"] = "twonn",
        discard_fraction: float = 0.1,
        mle_k: int = 20,
        gride_n1: int = 1,
        handle_duplicates: Literal["unique", "raise", "keep"] = "unique",
        duplicate_tol: float = 0.0,
        smooth: bool = False,
        max_samples: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float64",
        batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.estimator = estimator
        self.discard_fraction = discard_fraction
        self.mle_k = mle_k
        self.gride_n1 = gride_n1
        self.handle_duplicates = handle_duplicates
        self.duplicate_tol = duplicate_tol
        self.smooth = smooth
        self.max_samples = max_samples
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | torch.Tensor, y: object = None) -> LocalIDEstimator:
        """Estimate the LID of every row of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            The point cloud, e.g. token embeddings; at least 4 distinct rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : LocalIDEstimator
            The fitted estimator.
        """
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(
        self,
        X: ArrayLike | torch.Tensor,
        y: object = None,
    ) -> np.ndarray | torch.Tensor:
        """Estimate the LID of every row of ``X`` and return them.

        Each row's neighbourhood excludes the row itself (and, by
        deduplication, its copies), like ``kneighbors(X=None)``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            The point cloud; at least 4 distinct rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        local_ids : ndarray or torch.Tensor of shape (n_samples, 1)
            ``local_ids_`` as a column; a tensor on the estimator's device
            when ``X`` is a tensor.
        """
        local_ids, as_tensor = self._fit(X)
        return _torch.to_output(local_ids[:, None], as_tensor)

    def _estimator_options(self, *, drop_undefined=None):
        if drop_undefined is None:
            drop_undefined = self.handle_duplicates == "keep"
        return dict(
            estimator=self.estimator,
            discard_fraction=self.discard_fraction,
            gride_n1=self.gride_n1,
            duplicate_tol=self.duplicate_tol,
            drop_undefined=drop_undefined,
        )

    def _fit(self, X):
        X_t, as_tensor = self._validate_tensor(X, reset=True, ensure_min_samples=4)
        self._clear_device_cache()
        with torch.no_grad():
            sample_indices, representative = self._select_rows(X_t)
            reference = X_t[sample_indices]
            self.n_neighbors_ = self._effective_n_neighbors(reference.shape[0])
            n_nearest = self._check_n_nearest()
            centre = reference.mean(0)
            reference = _centred(reference, centre)
            graph_distances, graph_indices = _nearest_neighbors(
                reference,
                reference,
                self.n_neighbors_,
                exclude_self=True,
                batch_size=self.batch_size,
                verbose=self.verbose,
            )
            fit_ids = self._local_ids(graph_indices, graph_indices, graph_distances, reference, n_nearest)
            local_ids = torch.full((X_t.shape[0],), torch.nan, dtype=reference.dtype, device=reference.device)
            in_fit = representative >= 0
            local_ids[in_fit] = fit_ids[representative[in_fit]]
            left_out = torch.nonzero(~in_fit).squeeze(1)
            if len(left_out):
                # Rows left out by max_samples are new points to the sample.
                query = _centred(X_t[left_out], centre)
                _, left_out_neighbors = _nearest_neighbors(
                    query, reference, self.n_neighbors_, exclude_self=False, batch_size=self.batch_size
                )
                local_ids[left_out] = self._local_ids(
                    left_out_neighbors, graph_indices, graph_distances, reference, n_nearest
                )
            if self.smooth:
                smooth = torch.empty_like(local_ids)
                smooth[in_fit] = _smoothed(fit_ids, fit_ids, graph_indices)[representative[in_fit]]
                if len(left_out):
                    smooth[left_out] = _smoothed(local_ids[left_out], fit_ids, left_out_neighbors)
                self.local_ids_smooth_ = _torch.to_numpy(smooth)
            self.global_id_ = _global_dimension(graph_distances, n_nearest=n_nearest, **self._estimator_options())

        self.X_fit_ = _torch.to_numpy(X_t[sample_indices])
        self.sample_indices_ = _torch.to_numpy(sample_indices)
        self.representative_ = _torch.to_numpy(representative)
        self.neighbor_indices_ = _torch.to_numpy(graph_indices)
        self.neighbor_distances_ = _torch.to_numpy(graph_distances)
        self.local_ids_ = _torch.to_numpy(local_ids)
        fit_ids = _torch.to_numpy(fit_ids)
        defined = fit_ids[np.isfinite(fit_ids)]
        self.mean_local_id_ = float(defined.mean()) if defined.size else np.nan
        self.median_local_id_ = float(np.median(defined)) if defined.size else np.nan
        self.std_local_id_ = float(defined.std()) if defined.size else np.nan
        self.n_undefined_ = int(np.isnan(self.local_ids_).sum())
        if self.n_undefined_:
            warnings.warn(
                f"{self.n_undefined_} of {len(self.local_ids_)} rows have an undefined local ID "
                f"(NaN): more than discard_fraction={self.discard_fraction} of the ratios in "
                "their neighbourhood have a zero (or, with duplicate_tol, near-zero) "
                "denominator distance. Deduplicate (handle_duplicates='unique') or raise "
                "n_neighbors.",
                UserWarning,
            )
        return local_ids, as_tensor

    def _select_rows(self, X_t):
        """The rows forming the reference cloud, and each input row's representative."""
        n_samples = X_t.shape[0]
        first_rows, representative = _unique_rows(X_t)
        self.n_duplicates_ = n_samples - len(first_rows)
        if self.handle_duplicates == "raise" and self.n_duplicates_:
            raise ValueError(
                f"X has {self.n_duplicates_} duplicate row(s) and handle_duplicates='raise'; "
                "use handle_duplicates='unique' to estimate on the distinct rows."
            )
        if self.handle_duplicates == "keep":
            first_rows = representative = torch.arange(n_samples, device=X_t.device)
        if len(first_rows) < 4:
            raise ValueError(
                f"LocalIDEstimator needs at least 4 distinct rows (a neighbourhood of 3 "
                f"points besides its centre), but X has {len(first_rows)}."
            )
        if self.max_samples is not None and self.max_samples < len(first_rows):
            rng = check_random_state(self.random_state)
            chosen = np.sort(rng.choice(len(first_rows), self.max_samples, replace=False))
            chosen = torch.as_tensor(chosen, device=X_t.device)
            new_index = torch.full((len(first_rows),), -1, dtype=torch.int64, device=X_t.device)
            new_index[chosen] = torch.arange(len(chosen), device=X_t.device)
            first_rows, representative = first_rows[chosen], new_index[representative]
        return first_rows, representative

    def _effective_n_neighbors(self, n_fit):
        if self.n_neighbors <= n_fit - 1:
            return self.n_neighbors
        warnings.warn(
            f"n_neighbors={self.n_neighbors} is not smaller than the {n_fit} distinct "
            f"fitted rows; using {n_fit - 1}, i.e. every other row: the estimates are "
            "not local anymore.",
            UserWarning,
        )
        return n_fit - 1

    def _check_n_nearest(self):
        n_nearest = _n_nearest(self.estimator, self.mle_k, self.gride_n1)
        if n_nearest > self.n_neighbors_ - 1:
            parameter = {"mle": f"mle_k={self.mle_k}", "gride": f"gride_n1={self.gride_n1}"}.get(
                self.estimator, ""
            )
            raise ValueError(
                f"estimator={self.estimator!r} with {parameter} reads the {n_nearest} nearest "
                f"other points of each neighbourhood member, so it needs n_neighbors >= "
                f"{n_nearest + 1}; the neighbourhoods have {self.n_neighbors_} points."
            )
        return n_nearest

    def _local_ids(self, neighbourhoods, graph_indices, graph_distances, reference, n_nearest):
        """One LID per neighbourhood (rows of reference indices), in chunks."""
        out = torch.empty(neighbourhoods.shape[0], dtype=reference.dtype, device=reference.device)
        options = self._estimator_options()
        slices = _torch.batch_slices(neighbourhoods.shape[0], self.batch_size)
        for rows in _torch.progress(slices, verbose=self.verbose, desc="local ID"):
            nearest = _nearest_within(neighbourhoods[rows], graph_indices, graph_distances, reference, n_nearest)
            out[rows] = _dimension(nearest, **options)
        return out

    # -- new points ----------------------------------------------------------
    def _query(self, X):
        """LIDs of new rows, and their distances to the nearest fitted rows."""
        check_is_fitted(self)
        X_t, as_tensor = self._validate_tensor(X, reset=False)
        device, dtype = X_t.device, X_t.dtype
        with torch.no_grad():
            fitted = self._on_device("X_fit_", device, dtype)
            centre = fitted.mean(0)
            reference = _centred(fitted, centre)
            graph_indices = self._on_device("neighbor_indices_", device, torch.int64)
            graph_distances = self._on_device("neighbor_distances_", device, dtype)
            distances, neighbourhoods = _nearest_neighbors(
                _centred(X_t, centre),
                reference,
                self.n_neighbors_,
                exclude_self=False,
                batch_size=self.batch_size,
                verbose=self.verbose,
            )
            n_nearest = _n_nearest(self.estimator, self.mle_k, self.gride_n1)
            local_ids = self._local_ids(neighbourhoods, graph_indices, graph_distances, reference, n_nearest)
        return local_ids, distances, as_tensor

    def transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """LID of new rows, each in its neighbourhood among the fitted rows.

        The neighbourhood of a row is its ``n_neighbors_`` nearest rows of
        ``X_fit_``; a row equal to a fitted row is not excluded from it (use
        :meth:`fit_transform` for the training cloud itself).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        local_ids : ndarray or torch.Tensor of shape (n_samples, 1)
        """
        local_ids, _, as_tensor = self._query(X)
        return _torch.to_output(local_ids[:, None], as_tensor)

    def score(self, X: ArrayLike | torch.Tensor, y: object = None) -> float:
        """Mean held-out log-likelihood of ``X`` under the fitted LIDs (higher is better).

        The mean of :meth:`score_samples` over the rows where it is defined:
        how well the LIDs of the fitted neighbourhoods predict the
        nearest-neighbour ratios of unseen points. It is what a search with
        default scoring ranks by, so ``GridSearchCV`` over ``n_neighbors``
        picks the largest neighbourhoods that still see one local geometry:
        larger ones average the estimate over more ratios until they reach
        across regions of different dimension. The mean LID itself, the
        paper's statistic, is ``mean_local_id_`` and :func:`mean_local_id`;
        it is not a criterion.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Held-out rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        mean_log_likelihood : float
            NaN when no row has a defined likelihood.
        """
        log_likelihood = _torch.as_numpy(self.score_samples(X))
        finite = np.isfinite(log_likelihood)
        return float(log_likelihood[finite].mean()) if finite.any() else float("nan")

    def score_samples(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Held-out log-likelihood of each row's nearest-neighbour ratio.

        Row ``x`` has the ratio ``μ = r2 / r1`` of its distances to its two
        nearest fitted rows; under TwoNN's model its density is Pareto,
        ``d μ^(−d−1)``, with ``d`` the LID of ``x``'s neighbourhood. Higher is
        better: it rewards LIDs that predict the local geometry of unseen
        points, so it can select ``n_neighbors``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_likelihood : ndarray or torch.Tensor of shape (n_samples,)
            NaN for rows that equal a fitted row (``r1 = 0``) or whose LID
            is undefined. A tensor on the estimator's device for a tensor.
        """
        local_ids, distances, _ = self._query(X)
        log_likelihood = _pareto_log_likelihood(local_ids, distances[:, 0], distances[:, 1])
        return _torch.to_output(log_likelihood, _torch.is_tensor(X))

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        """Name of the one output column.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against the fitted feature names; not used otherwise.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``["local_id"]``.
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return np.asarray(["local_id"], dtype=object)


def _smoothed(own_ids, fit_ids, neighbourhoods):
    """Mean of each point's LID and its neighbours' LIDs (NaN ignored)."""
    return torch.nanmean(torch.cat([own_ids[:, None], fit_ids[neighbourhoods]], dim=1), dim=1)


def mean_local_id(estimator: BaseEstimator, X: ArrayLike | torch.Tensor) -> float:
    """The mean LID of the rows of ``X`` under a fitted :class:`LocalIDEstimator` (NaN ignored).

    Each row's LID is estimated in its neighbourhood among the fitted rows,
    as :meth:`LocalIDEstimator.transform` does; ``mean_local_id_`` is the
    same statistic for the fitted rows themselves.

    Parameters
    ----------
    estimator : fitted LocalIDEstimator or Pipeline ending in one
    X : array-like or torch.Tensor of shape (n_samples, n_features)

    Returns
    -------
    mean_local_id : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.manifold import LocalIDEstimator, mean_local_id
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 3)) @ rng.standard_normal((3, 20))
    >>> lid = LocalIDEstimator(n_neighbors=100).fit(X[:800])
    >>> bool(2.5 < mean_local_id(lid, X[800:]) < 3.5)
    True
    """
    local_ids = _torch.as_numpy(estimator.transform(X))
    return float(np.nanmean(local_ids)) if np.isfinite(local_ids).any() else float("nan")


def mean_lid_scorer(estimator: BaseEstimator, X: ArrayLike, y: object = None) -> float:
    """Scorer: :func:`mean_local_id`, for reporting in a search.

    For ``GridSearchCV(scoring={"loglik": twonn_loglik_scorer, "mean_lid":
    mean_lid_scorer}, refit="loglik")``: a mean LID is not "higher is
    better", so do not refit on it.

    Parameters
    ----------
    estimator : fitted LocalIDEstimator or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)
    y : Ignored

    Returns
    -------
    mean_local_id : float
    """
    return mean_local_id(estimator, X)


def twonn_loglik_scorer(estimator: BaseEstimator, X: ArrayLike, y: object = None) -> float:
    """Scorer: the mean held-out Pareto log-likelihood, :meth:`LocalIDEstimator.score`.

    The default ``score`` already; name it explicitly next to other metrics
    in a multi-metric search.

    Parameters
    ----------
    estimator : fitted LocalIDEstimator or Pipeline ending in one
    X : array-like of shape (n_samples, n_features)
    y : Ignored

    Returns
    -------
    mean_log_likelihood : float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_interp.manifold import LocalIDEstimator, mean_lid_scorer, twonn_loglik_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((600, 2)) @ rng.standard_normal((2, 5))
    >>> search = GridSearchCV(
    ...     LocalIDEstimator(), {"n_neighbors": [10, 50]}, cv=3,
    ...     scoring={"loglik": twonn_loglik_scorer, "mean_lid": mean_lid_scorer}, refit="loglik",
    ... ).fit(X)
    >>> sorted(search.best_params_)
    ['n_neighbors']
    """
    return float(estimator.score(X))
