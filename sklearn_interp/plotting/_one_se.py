"""The one-standard-error rule as a figure: every candidate's score, its error bar and the choice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..model_selection import one_se_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _label(params):
    return ", ".join(f"{name}={value}" for name, value in params.items())


def plot_one_se(
    cv_results: dict[str, Any],
    complexity: str | Sequence[str] | Callable[..., Any],
    *,
    scoring: str = "score",
    ax: Axes | None = None,
    label: str | None = None,
) -> Axes:
    """Mean test score ± one standard error per candidate, from least to most complex.

    The dashed line is the best mean minus its standard error; the chosen
    candidate (the least complex one above the line, as
    :func:`~sklearn_interp.model_selection.simplest_within_one_se` picks)
    is ringed.

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_``.
    complexity : str, list of str or callable
        As in :func:`~sklearn_interp.model_selection.simplest_within_one_se`.
    scoring : str, default="score"
        The metric, for a multi-metric search.
    ax : matplotlib Axes, default=None
        A new figure when ``None``.
    label : str, default=None
        Legend label of the curve; ``scoring`` by default.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_interp.plotting import plot_one_se
    >>> results = {"params": [{"k": 1}, {"k": 2}], "split0_test_score": [0.5, 0.9], "split1_test_score": [0.6, 0.8]}
    >>> plot_one_se(results, "k").get_xlabel()
    'candidate, least to most complex'
    """
    import matplotlib.pyplot as plt

    table = one_se_table(cv_results, complexity, scoring=scoring)
    table = table.iloc[sorted(range(len(table)), key=lambda row: table["complexity"].iloc[row])]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    positions = np.arange(len(table))
    ax.errorbar(positions, table["mean"], yerr=table["standard_error"], marker="o", capsize=3,
                label=label or scoring)
    best = int(np.nanargmax(table["mean"].to_numpy()))
    ax.axhline(table["mean"].iloc[best] - table["standard_error"].iloc[best], color="grey", linestyle="--",
               linewidth=1, label="best − 1 SE")
    chosen = int(np.flatnonzero(table["chosen"].to_numpy())[0])
    ax.plot(positions[chosen], table["mean"].iloc[chosen], "o", markersize=14, markerfacecolor="none",
            markeredgecolor="C3", label=f"chosen: {_label(table['params'].iloc[chosen])}")
    ax.set_xticks(positions, [_label(params) for params in table["params"]], rotation=30, ha="right")
    ax.set(xlabel="candidate, least to most complex", ylabel=f"mean test {scoring}")
    ax.legend(loc="lower right", fontsize="small")
    return ax
