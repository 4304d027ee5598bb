"""Display of SNMF features by their most strongly coded tokens."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted


class SNMFFeatureDisplay:
    """Top tokens of SNMF features, one small bar chart per feature.

    Build it with :meth:`from_estimator`; the constructor only stores what
    :meth:`plot` draws.

    Parameters
    ----------
    tokens : list of list of str
        For every shown feature, its top tokens, strongest first.
    codes : list of ndarray
        For every shown feature, the codes of those tokens.
    features : ndarray of int
        Indices of the shown features.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> from sklearn_interp.plotting import SNMFFeatureDisplay
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(60, 8)
    >>> snmf = SNMFDecomposer(2, sparsity=0.5, max_iter=20, random_state=0).fit(X)
    >>> tokens = np.array([f"tok{i}" for i in range(60)])
    >>> display = SNMFFeatureDisplay.from_estimator(snmf, tokens, n_tokens=3)
    >>> display.axes_.shape
    (2,)
    """

    def __init__(
        self,
        tokens: Sequence[Sequence[str]],
        codes: list[np.ndarray],
        features: np.ndarray,
    ) -> None:
        self.tokens = tokens
        self.codes = codes
        self.features = features

    @classmethod
    def from_estimator(
        cls,
        estimator: BaseEstimator,
        tokens: Sequence[str],
        *,
        features: ArrayLike | None = None,
        n_tokens: int = 8,
        ax: np.ndarray | None = None,
        n_cols: int = 2,
    ) -> SNMFFeatureDisplay:
        """Show the training tokens that express each feature most strongly.

        Parameters
        ----------
        estimator : fitted SNMFDecomposer
            With ``training_codes_`` (fitted by ``fit``).
        tokens : array-like of str of shape (n_samples,)
            The token of every training row, e.g. ``TransformerActivations.tokens_``.
        features : array-like of int, default=None
            Features to show; ``None`` shows the eight with the largest total code.
        n_tokens : int, default=8
            Tokens per feature.
        ax : array of matplotlib Axes, default=None
            One axes per feature; ``None`` makes a new figure.
        n_cols : int, default=2
            Columns of the new figure's grid; two keep the labels legible
            at a page's text width.

        Returns
        -------
        display : SNMFFeatureDisplay
        """
        check_is_fitted(estimator, "training_codes_")
        codes = estimator.training_codes_
        tokens = np.asarray(tokens, dtype=object)
        if tokens.shape != (codes.shape[0],):
            raise ValueError(
                f"tokens must have one entry per training row ({codes.shape[0]}), got shape {tokens.shape}."
            )
        if features is None:
            features = np.argsort(-codes.sum(axis=0), kind="stable")[: min(8, codes.shape[1])]
        features = np.asarray(features, dtype=int)
        top = estimator.top_activating(n=n_tokens)[features]
        display = cls(
            tokens=[list(tokens[rows]) for rows in top],
            codes=[codes[rows, feature] for rows, feature in zip(top, features)],
            features=features,
        )
        return display.plot(ax=ax, n_cols=n_cols)

    def plot(self, *, ax: np.ndarray | None = None, n_cols: int = 2) -> SNMFFeatureDisplay:
        """Draw the bars.

        Parameters
        ----------
        ax : array of matplotlib Axes, default=None
            One axes per feature; ``None`` makes a new figure.
        n_cols : int, default=2
            Columns of the new figure's grid; two keep the labels legible
            at a page's text width.

        Returns
        -------
        display : SNMFFeatureDisplay
            With ``figure_`` and ``axes_`` set.
        """
        import matplotlib.pyplot as plt

        n_features = len(self.features)
        if ax is None:
            n_cols = min(n_cols, n_features)
            n_rows = -(-n_features // n_cols)
            figure, ax = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.4 * n_rows), squeeze=False)
            for extra in ax.ravel()[n_features:]:
                extra.set_visible(False)
        axes = np.asarray(ax).ravel()[:n_features]
        for axis, feature, tokens, codes in zip(axes, self.features, self.tokens, self.codes):
            positions = np.arange(len(tokens))[::-1]
            axis.barh(positions, codes, color="tab:blue")
            axis.set_yticks(positions, [repr(token) for token in tokens], fontsize=9)
            axis.set_title(f"feature {feature}", fontsize=10)
            axis.tick_params(axis="x", labelsize=8)
        self.axes_ = axes
        self.figure_ = axes[0].figure
        self.figure_.tight_layout()
        return self
