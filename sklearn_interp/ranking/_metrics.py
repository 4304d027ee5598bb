"""NDCG over query groups, as a function and as a scorer for model selection."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.utils.metadata_routing import MetadataRequest


def group_codes(groups):
    """Integer codes 0..n_groups−1 for any hashable group labels, in order of first appearance."""
    codes, _ = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), sort=False)
    return codes.astype(np.int64)


def query_groups_of(X, qid=None, *, qid_col="qid", query_col="query"):
    """Integer group codes of the rows of X: ``qid``, else X's ``qid_col`` column, else identical queries.

    ``X`` is a DataFrame with a ``query_col`` column or an (n_pairs, 2)
    array whose first column holds the queries.
    """
    return group_codes(query_labels_of(X, qid, qid_col=qid_col, query_col=query_col))


def query_labels_of(X, qid=None, *, qid_col="qid", query_col="query"):
    """The query label of every row of X (as given, not re-coded); see :func:`query_groups_of`."""
    n_rows = len(X)
    if qid is not None:
        groups = np.asarray(qid, dtype=object)
    elif isinstance(X, pd.DataFrame) and qid_col in X.columns:
        groups = X[qid_col].to_numpy(dtype=object)
    elif isinstance(X, pd.DataFrame):
        groups = X[query_col].to_numpy(dtype=object)
    else:
        groups = np.asarray(X, dtype=object)[:, 0]
    if groups.shape != (n_rows,):
        raise ValueError(f"qid must have one value per row of X ({n_rows}); got shape {groups.shape}.")
    if pd.isna(groups).any():
        raise ValueError("qid contains a missing value.")
    return groups


def warn_on_training_groups(ranker, labels):
    """Warn when rows being scored belong to query groups the ranker was fitted on.

    A ranker remembers its training query labels in ``_fit_query_labels``; a
    held-out NDCG over a query it has seen is optimistic, and a splitter that
    ignores groups produces exactly that.
    """
    seen = getattr(getattr(ranker, "_final_estimator", ranker), "_fit_query_labels", None)
    if not seen:
        return
    labels = set(np.asarray(labels, dtype=object).tolist())
    shared = labels & seen
    if shared:
        warnings.warn(
            f"{len(shared)} of the {len(labels)} query groups scored here were also in the training data, so "
            "this NDCG is not held out. A splitter that ignores groups (KFold, the default cv) puts rows of one "
            "query on both sides; split by query with cv=GroupKFold(n_splits) and fit(X, y, groups=qid), or "
            "score on queries never seen in fit.",
            UserWarning,
            stacklevel=3,
        )


def _dcg(relevance, k):
    discounts = 1.0 / np.log2(np.arange(2, min(k, relevance.size) + 2))
    return float(np.dot(relevance[:k], discounts))


def grouped_ndcg_score(
    y_true: ArrayLike,
    y_score: ArrayLike,
    groups: ArrayLike,
    k: int = 10,
    *,
    return_counts: bool = False,
) -> tuple[float, int]:
    """Mean NDCG@k over query groups, with linear gains.

    Within each group the rows are ranked by decreasing ``y_score``; tied
    scores keep the order of the input rows (a stable sort), so a tie never
    flatters a model. DCG@k = Σ_{rank r ≤ k} rel_r / log2(r + 1) and NDCG@k
    divides it by the DCG@k of the ideal order. A group whose labels are
    all zero has no ideal DCG: it is skipped and counted.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Non-negative relevance grades.
    y_score : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,)
        Query id of each row; rows of a group need not be contiguous.
    k : int, default=10
    return_counts : bool, default=False
        Also return the number of groups scored and skipped.

    Returns
    -------
    score : float
        NaN when every group was skipped.
    n_scored, n_skipped : int
        Only with ``return_counts=True``.

    Examples
    --------
    >>> from sklearn_interp.ranking import grouped_ndcg_score
    >>> grouped_ndcg_score([1, 0, 0, 1], [0.9, 0.1, 0.8, 0.2], groups=[0, 0, 1, 1])
    0.8154...
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    codes = group_codes(groups)
    if not (y_true.shape == y_score.shape == codes.shape) or y_true.ndim != 1:
        raise ValueError(
            f"y_true, y_score and groups must be 1D of one length; got shapes "
            f"{y_true.shape}, {y_score.shape}, {codes.shape}."
        )
    # Sort by group, then by decreasing score; the stable sort keeps input order among ties.
    order = np.lexsort((np.arange(codes.size), -y_score, codes))
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    scores = []
    for rows in np.split(order, boundaries):
        ideal = _dcg(np.sort(y_true[rows])[::-1], k)
        if ideal > 0:
            scores.append(_dcg(y_true[rows], k) / ideal)
    n_groups = len(boundaries) + 1 if codes.size else 0
    score = float(np.mean(scores)) if scores else float("nan")
    if return_counts:
        return score, len(scores), n_groups - len(scores)
    return score


def top_concept_agreement(
    contributions: ArrayLike,
    query_concepts: ArrayLike,
    item_concepts: ArrayLike,
    relevant: ArrayLike | None = None,
) -> float:
    """Share of pairs whose largest contribution is a concept both sides truly have.

    The faithfulness of a concept explanation when the true concepts are
    known: among the pairs that are ``relevant`` and share at least one
    true concept, how often the top explaining concept is one of the shared.

    Parameters
    ----------
    contributions : array-like of shape (n_pairs, n_concepts)
        A ranker's per-concept contributions (``SESARanker.transform``).
    query_concepts, item_concepts : array-like of shape (n_pairs, n_concepts)
        True 0/1 concepts of each side.
    relevant : array-like of bool of shape (n_pairs,), default=None
        Pairs to count (for instance ``y > 0``); ``None`` counts all.

    Returns
    -------
    agreement : float
        NaN when no counted pair shares a concept.

    Examples
    --------
    >>> from sklearn_interp.ranking import top_concept_agreement
    >>> top_concept_agreement([[0.9, 0.1], [0.2, 0.7]], [[1, 0], [1, 1]], [[1, 1], [1, 0]])
    0.5
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    shared = (np.asarray(query_concepts) > 0) & (np.asarray(item_concepts) > 0)
    if not (contributions.shape == shared.shape) or contributions.ndim != 2:
        raise ValueError(
            f"contributions and the concept labels must have one shape (n_pairs, n_concepts); got "
            f"{contributions.shape} and {shared.shape}."
        )
    counted = shared.any(axis=1)
    if relevant is not None:
        counted &= np.asarray(relevant, dtype=bool)
    if not counted.any():
        return float("nan")
    top = contributions[counted].argmax(axis=1)
    return float(shared[counted][np.arange(top.size), top].mean())


class NDCGScorer:
    """Scorer for model selection: mean NDCG@k of a ranker over query groups.

    Use it as ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV`
    or :func:`~sklearn.model_selection.cross_val_score`. A scorer receives
    only ``(estimator, X, y)``, so the query groups come from, in order:
    a ``qid`` passed through metadata routing
    (``sklearn.set_config(enable_metadata_routing=True)``; this scorer
    requests it), the estimator's query-id column of ``X``, or identical
    query texts. Split with :class:`~sklearn.model_selection.GroupKFold`
    on the query id so that a query never sits on both sides.

    Parameters
    ----------
    k : int, default=10

    Examples
    --------
    >>> from sklearn_interp.ranking import NDCGScorer
    >>> NDCGScorer(k=5)
    NDCGScorer(k=5)
    """

    def __init__(self, k: int = 10) -> None:
        self.k = k

    def __call__(self, estimator, X, y_true, qid=None):
        # A Pipeline ending in a ranker has no query_groups: read the groups as the ranker's defaults would.
        ranker = getattr(estimator, "_final_estimator", estimator)
        labels = query_labels_of(
            X, qid, qid_col=getattr(ranker, "qid_col", "qid"), query_col=getattr(ranker, "query_col", "query")
        )
        warn_on_training_groups(ranker, labels)
        return grouped_ndcg_score(y_true, estimator.predict(X), group_codes(labels), self.k)

    def get_metadata_routing(self) -> MetadataRequest:
        """Request ``qid`` for ``score``, the method name scorers are routed under."""
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="qid", alias=True)
        return request

    def __repr__(self):
        return f"NDCGScorer(k={self.k})"
