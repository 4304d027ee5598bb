"""The one-standard-error rule as a ``refit=`` callable for scikit-learn's searches.

Among candidates whose scores differ by less than the noise of
cross-validation, the data cannot tell which is better; the rule takes the
least complex of them (Breiman et al., 1984; Hastie, Tibshirani and
Friedman, *The Elements of Statistical Learning*, §7.10).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd


def _complexity_key(value):
    """Order of one parameter value: larger numbers are more complex, ``None`` (no limit) most."""
    if value is None:
        return math.inf
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(
            f"cannot order the parameter value {value!r} by complexity; pass complexity= a function of the "
            "candidate's params that returns a number or a tuple of numbers."
        )
    return float(value)


def _complexity_function(complexity):
    if callable(complexity):
        return complexity
    names = [complexity] if isinstance(complexity, str) else list(complexity)
    if not names or not all(isinstance(name, str) for name in names):
        raise TypeError(f"complexity must be a parameter name, a list of them or a function, got {complexity!r}.")

    def by_names(params):
        missing = [name for name in names if name not in params]
        if missing:
            raise KeyError(f"complexity names {missing}, which the search does not vary; it varies {sorted(params)}.")
        return tuple(_complexity_key(params[name]) for name in names)

    return by_names


def one_se_table(
    cv_results: dict[str, Any],
    complexity: str | Sequence[str] | Callable[..., Any],
    *,
    scoring: str = "score",
) -> pd.DataFrame:
    """Every candidate's mean score, standard error and complexity.

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_``.
    complexity : str, list of str or callable
        As in :func:`simplest_within_one_se`.
    scoring : str, default="score"
        The metric, for a multi-metric search (the key of ``scoring=``).

    Returns
    -------
    table : pandas.DataFrame
        One row per candidate, in the search's order: ``params``,
        ``mean``, ``standard_error`` (the sample standard deviation over the
        folds divided by the square root of their number), ``complexity``,
        ``within_one_se`` and ``chosen``.
    """
    key = _complexity_function(complexity)
    split_keys = sorted(
        (name for name in cv_results if name.startswith("split") and name.endswith(f"_test_{scoring}")),
        key=lambda name: int(name[len("split"):].split("_")[0]),
    )
    if not split_keys:
        raise KeyError(
            f"cv_results has no per-split test scores for {scoring!r}; with multi-metric scoring pass "
            "scoring= the name of the metric to refit on."
        )
    scores = np.column_stack([np.asarray(cv_results[name], dtype=float) for name in split_keys])
    # A fold that failed to score (NaN) is left out of its candidate's mean and spread.
    valid = [row[np.isfinite(row)] for row in scores]
    n_valid = np.array([len(row) for row in valid])
    mean = np.array([row.mean() if len(row) else np.nan for row in valid])
    spread = np.array([row.std(ddof=1) if len(row) > 1 else 0.0 for row in valid])
    standard_error = spread / np.sqrt(np.maximum(n_valid, 1))
    params = list(cv_results["params"])
    table = pd.DataFrame(
        {"params": params, "mean": mean, "standard_error": standard_error,
         "complexity": [key(candidate) for candidate in params]}
    )
    finite = np.isfinite(table["mean"].to_numpy())
    if not finite.any():
        raise ValueError(f"every candidate's mean test {scoring!r} is NaN: no candidate can be chosen.")
    best = int(np.flatnonzero(finite)[np.argmax(table["mean"].to_numpy()[finite])])
    threshold = table["mean"].iloc[best] - table["standard_error"].iloc[best]
    table["within_one_se"] = finite & (table["mean"].to_numpy() >= threshold)
    eligible = table[table["within_one_se"]]
    # The least complex; among equally complex ones, the best scoring.
    order = sorted(eligible.index, key=lambda row: (eligible.at[row, "complexity"], -eligible.at[row, "mean"]))
    table["chosen"] = False
    table.loc[order[0], "chosen"] = True
    return table


class _OneStandardErrorRule:
    """The callable :func:`simplest_within_one_se` returns (picklable)."""

    def __init__(self, complexity, scoring):
        self.complexity = complexity
        self.scoring = scoring

    def __call__(self, cv_results):
        table = one_se_table(cv_results, self.complexity, scoring=self.scoring)
        return int(np.flatnonzero(table["chosen"].to_numpy())[0])

    def __repr__(self):
        return f"simplest_within_one_se(complexity={self.complexity!r}, scoring={self.scoring!r})"


def simplest_within_one_se(
    complexity: str | Sequence[str] | Callable[..., Any],
    *,
    scoring: str = "score",
) -> Callable[..., Any]:
    """A ``refit=`` rule: the least complex candidate within one standard error of the best.

    The best candidate is the one with the highest mean test score; its
    standard error is the sample standard deviation of its fold scores over
    the square root of the number of folds. Every candidate whose mean is at
    least the best mean minus that standard error is as good as the data can
    tell, and the rule returns the least complex of them.

    Parameters
    ----------
    complexity : str, list of str or callable
        A parameter name (``"n_components"``), or a list of them compared in
        order (``["n_components", "sparsity"]``), where a larger value is
        more complex and ``None`` (no limit, as in ``sparsity=None``) is the
        most complex; or a function of a candidate's ``params`` dict that
        returns a number or a tuple (lower is simpler). More components, a
        larger ``k`` and a larger ``sparsity`` (more neurons kept per SNMF
        feature) are more complex.
    scoring : str, default="score"
        With multi-metric scoring, the metric the rule reads (the key given
        to ``scoring=``).

    Returns
    -------
    refit : callable
        ``refit(cv_results) -> index`` of the chosen candidate, for
        ``GridSearchCV(..., refit=refit)``. The search then has no
        ``best_score_``; read ``cv_results_`` at ``best_index_``.

    See Also
    --------
    one_se_table : The table the rule is read from.
    sklearn_interp.plotting.plot_one_se : The rule as a figure.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> from sklearn_interp.model_selection import bicrossval_scorer, simplest_within_one_se
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((300, 3)) @ rng.standard_normal((3, 20)) + 0.3 * rng.standard_normal((300, 20))
    >>> search = GridSearchCV(SNMFDecomposer(sparsity=None, random_state=0), {"n_components": [1, 3, 8]},
    ...                       scoring=bicrossval_scorer(random_state=0), cv=3,
    ...                       refit=simplest_within_one_se("n_components")).fit(X)
    >>> search.best_params_
    {'n_components': 3}
    """
    _complexity_function(complexity)
    if not isinstance(scoring, str):
        raise TypeError(f"scoring must be the name of a metric, got {scoring!r}.")
    return _OneStandardErrorRule(complexity, scoring)
