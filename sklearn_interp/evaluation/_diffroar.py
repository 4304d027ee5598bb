"""DiffROAR: do attributions rank the discriminative features first?

Shah, Jain and Netrapalli (2021) measure an attribution by retraining:
keep only the top-``k`` attributed features of every image (the rest
filled with the training mean), retrain a model of the same class on those
images and test it on images masked the same way; do the same with the
bottom-``k``. DiffROAR(k) is the accuracy with the top features minus the
accuracy with the bottom ones, in [−1, 1]: positive when the attribution
ranks the discriminative features first, about 0 for a random ranking,
negative for "feature inversion".

Two controls the paper lacks are built in: the mask-only leakage check
(a model trained on the keep pattern alone; when it predicts the class as
well as the masked data does, the score measures the mask, not the
features) and a choice of fill.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator, MetaEstimatorMixin, OneToOneFeatureMixin, TransformerMixin, _fit_context, clone,
)
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedShuffleSplit, check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _torch
from ._attribution import GRADIENT_ATTRIBUTIONS, compute_attribution
from ._masking import FILLS, AttributionMasker, check_image_shape

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from sklearn.model_selection import BaseCrossValidator

SIDES = ("top", "bottom")


def _seeded(estimator, seed):
    """``estimator`` with every ``*random_state`` parameter set to ``seed``."""
    names = [name for name in estimator.get_params() if name == "random_state" or name.endswith("__random_state")]
    return estimator.set_params(**{name: seed for name in names}) if names else estimator


def _fit_and_score(estimator, X_train, y_train, X_test, y_test):
    """Fit ``estimator`` on the training rows; its accuracy on the test rows."""
    estimator.fit(X_train, y_train)
    return estimator, float(np.mean(estimator.predict(X_test) == y_test))


def _pairwise_differences(top, bottom):
    """Every top-minus-bottom difference of accuracies within each split."""
    return np.concatenate([np.subtract.outer(top[split], bottom[split]).ravel() for split in top])


def _confidence_interval(differences, confidence):
    """t-interval of the mean difference; NaN with fewer than two pairs."""
    from statsmodels.stats.weightstats import DescrStatsW

    if differences.shape[0] < 2 or np.ptp(differences) == 0:
        mean = float(differences.mean())
        return (np.nan, np.nan) if differences.shape[0] < 2 else (mean, mean)
    return DescrStatsW(differences).tconfint_mean(alpha=1 - confidence)


def _leakage_flags(curve, chance):
    """Fractions where the keep pattern alone recovers most of the accuracy.

    Flagged when, on both sides, the mask-only accuracy exceeds chance by
    more than half of the margin the masked data reach above chance.
    """
    margin = np.maximum(curve["accuracy_top"], curve["accuracy_bottom"]) - chance
    threshold = chance + 0.5 * margin
    return (margin > 0) & (curve["leakage_top"] > threshold) & (curve["leakage_bottom"] > threshold)


class DiffROAR(OneToOneFeatureMixin, TransformerMixin, MetaEstimatorMixin, BaseEstimator):
    """Retrain on the top- and bottom-attributed features: does the attribution rank the signal first?

    For every split of ``cv`` into retraining and held-out rows, ``fit``
    trains ``estimator`` on the retraining rows (unless it is a
    ``FrozenEstimator``), ranks the features of every row by
    ``attribution`` and, for every kept ``fraction`` ``k`` and every repeat,
    trains a fresh ``retrain_estimator`` on the training rows with only
    their top-``k`` features kept (the rest filled) and another with only
    their bottom-``k``, and scores both on the held-out rows masked the
    same way. DiffROAR(k) = accuracy(top) − accuracy(bottom) (Shah et al.,
    2021): positive when the attribution puts discriminative features first,
    about 0 for a random ranking, negative when the least-attributed
    features are the more predictive.

    ``transform`` gives what DiffROAR scores: the attributions of the
    explained model for every row, shape ``(n_samples, n_features)``, so a
    Pipeline can pass them on and a user can look at them.
    :class:`AttributionMasker` turns such attributions into masked rows
    (keeping the top or bottom ``k``), and ``score`` retrains on those.

    With ``leakage_check``, a ``leakage_estimator`` is also trained on the
    0/1 keep pattern alone. Where it predicts the class about as well as the
    masked data do (``curve_["leakage_dominates"]``, with a warning), the
    score measures the mask and not the kept values.

    Parameters
    ----------
    estimator : estimator
        The classifier whose attributions are tested. Unfitted: it is fitted
        on ``X``; a ``FrozenEstimator`` is used as fitted. Gradient
        attributions need a torch model (``module_``), such as
        :class:`~sklearn_interp.neural_network.TorchMLPClassifier`.
    attribution : str or callable, default="input_gradient"
        ``"input_gradient"``, ``"smoothgrad"``, ``"integrated_gradients"``,
        ``"random"``, ``"oracle"`` (the ``signal_mask`` given to ``fit`` and
        ``score``), or a callable ``(estimator, X, y) -> scores`` of shape
        ``(n_samples, n_features)``, larger meaning more important.
    fractions : sequence of float in (0, 1], default=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75)
        Fractions of the features kept.
    fill : {"mean", "zero", "shuffle", "noisy_linear"}, default="mean"
        What replaces the removed features; see :class:`AttributionMasker`.
        ``"mean"`` is the paper's.
    n_repeats : int, default=1
        Retrains per split, fraction and side, each from its own seed (the
        top and bottom retrains of a repeat share it). Repeats vary the
        retraining only: the masks of a split are fixed, so the interval of
        ``curve_`` leaves out the variation of a random ranking's draw and of
        the split. Several ``cv`` splits (each with its own explained model
        and draw) cover those too.
    cv : int, cross-validation splitter or None, default=None
        Splits of ``X`` into retraining and held-out rows. ``None`` holds out
        a stratified 25 %; an int gives that many stratified folds.
    retrain_estimator : estimator or None, default=None
        The model class retrained on masked data; ``None`` clones
        ``estimator`` (the paper's protocol).
    leakage_check : bool, default=True
    leakage_estimator : estimator or None, default=None
        Trained on the keep pattern alone; ``None`` clones the retrain
        estimator.
    image_shape : tuple of int or None, default=None
        Shape of one row as an image, for ``fill="noisy_linear"``.
    noise : float, default=0.01
        Noise of ``fill="noisy_linear"``.
    tie_break : {"random", "index"}, default="random"
    confidence : float in (0, 1), default=0.95
        Level of the confidence intervals of ``curve_``.
    n_jobs : int or None, default=None
        Retrains run in parallel by joblib.
    device : str or torch.device, default="auto"
        Where masks and fills are computed.
    dtype : {"float64", "float32"} or None, default="float64"
        Precision of the masks and fills (the masked data the models are
        retrained on); ``None`` follows the input (float64 stays float64).
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        ``>= 1`` shows a progress bar over the retrains.

    Attributes
    ----------
    estimators_ : list of estimators
        The explained model of every split of ``cv``, fitted on its
        retraining rows only (the same ``FrozenEstimator`` for all splits
        when one is given), so that held-out rows are ranked by a model that
        has not fitted them.
    retrained_ : dict
        ``(split, fraction, keep)`` to the list of fitted retrained
        estimators, one per repeat.
    maskers_ : dict
        ``(split, fraction, keep)`` to the fitted :class:`AttributionMasker`
        (its fill learned on that split's retraining rows).
    results_ : pandas.DataFrame
        One row per fraction, side, split and repeat: ``fraction``,
        ``keep``, ``split``, ``repeat``, ``accuracy`` on the held-out rows,
        ``leakage_accuracy`` (mask-only; NaN without ``leakage_check``) and,
        with a signal mask, ``signal_fraction`` (share of kept features
        inside the signal).
    curve_ : pandas.DataFrame
        One row per fraction: ``accuracy_top``, ``accuracy_bottom``,
        ``diffroar``, ``ci_low``, ``ci_high`` (t-interval over all top ×
        bottom pairs of a split, the reference's convention; NaN for a
        single pair), ``n_pairs``,
        ``leakage_top``, ``leakage_bottom``, ``leakage_dominates`` and, with
        a signal mask, ``signal_fraction_top``.
    diffroar_ : float
        Mean of ``curve_["diffroar"]``.
    chance_ : float
        Accuracy of always predicting the most frequent held-out class.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)

    See Also
    --------
    AttributionMasker : The masking step alone.
    sklearn_interp.datasets.make_block_digits : Data whose signal location is known.

    References
    ----------
    .. [1] H. Shah, P. Jain and P. Netrapalli, "Do Input Gradients Highlight
       Discriminative Features?", NeurIPS 2021.
    .. [2] S. Hooker, D. Erhan, P.-J. Kindermans and B. Kim, "A Benchmark for
       Interpretability Methods in Deep Neural Networks", NeurIPS 2019.

    Examples
    --------
    >>> from sklearn.linear_model import RidgeClassifier
    >>> from sklearn_interp.datasets import make_block_digits
    >>> from sklearn_interp.evaluation import DiffROAR
    >>> blocks = make_block_digits(random_state=0)
    >>> roar = DiffROAR(RidgeClassifier(), attribution="oracle", fractions=(0.1, 0.5),
    ...                 random_state=0, device="cpu")
    >>> roar = roar.fit(blocks.data, blocks.target, signal_mask=blocks.signal_mask)
    >>> bool(roar.curve_["diffroar"].gt(0.2).all())
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "attribution": [StrOptions({*GRADIENT_ATTRIBUTIONS, "random", "oracle"}), callable],
        "fractions": ["array-like"],
        "fill": [StrOptions(set(FILLS))],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "cv": ["cv_object"],
        "retrain_estimator": [HasMethods(["fit", "predict"]), None],
        "leakage_check": ["boolean"],
        "leakage_estimator": [HasMethods(["fit", "predict"]), None],
        "image_shape": [tuple, None],
        "noise": [Interval(Real, 0, None, closed="left")],
        "tie_break": [StrOptions({"random", "index"})],
        "confidence": [Interval(Real, 0, 1, closed="neither")],
        "n_jobs": [Integral, None],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator: BaseEstimator,
        attribution: str | Callable[..., Any] = "input_gradient",
        *,
        fractions: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75),
        fill: Literal["mean", "zero", "shuffle", "noisy_linear"] = "mean",
        n_repeats: int = 1,
        cv: int | BaseCrossValidator | Iterable[Any] | None = None,
        retrain_estimator: BaseEstimator | None = None,
        leakage_check: bool = True,
        leakage_estimator: BaseEstimator | None = None,
        image_shape: tuple[int, ...] | None = None,
        noise: float = 0.01,
        tie_break: Literal["random", "index"] = "random",
        confidence: float = 0.95,
        n_jobs: int | None = None,
        device: str | torch.device = "auto",
        dtype: Literal["float64", "float32"] | None = "float64",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.attribution = attribution
        self.fractions = fractions
        self.fill = fill
        self.n_repeats = n_repeats
        self.cv = cv
        self.retrain_estimator = retrain_estimator
        self.leakage_check = leakage_check
        self.leakage_estimator = leakage_estimator
        self.image_shape = image_shape
        self.noise = noise
        self.tie_break = tie_break
        self.confidence = confidence
        self.n_jobs = n_jobs
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # -- validation ---------------------------------------------------------
    def _checked_fractions(self):
        fractions = np.asarray(self.fractions, dtype=np.float64).ravel()
        if fractions.size == 0:
            raise ValueError("fractions must hold at least one fraction of features to keep.")
        bad = fractions[~((fractions > 0) & (fractions <= 1))]
        if bad.size:
            raise ValueError(f"Every fraction must lie in (0, 1]; got {bad.tolist()}.")
        return np.unique(fractions)

    def _checked_signal_mask(self, signal_mask, shape):
        if signal_mask is None:
            if self.attribution == "oracle":
                raise ValueError(
                    "attribution='oracle' ranks the signal features first; pass "
                    "signal_mask, a boolean array shaped like X."
                )
            return None
        signal_mask = np.asarray(signal_mask)
        if signal_mask.shape != shape:
            raise ValueError(f"signal_mask must have the shape of X, {shape}; got {signal_mask.shape}.")
        return signal_mask.astype(bool)

    def _retrain_prototype(self):
        if self.retrain_estimator is not None:
            return self.retrain_estimator
        from ..neural_network import TorchModuleClassifier

        inner = self.estimator.estimator if isinstance(self.estimator, FrozenEstimator) else self.estimator
        if isinstance(inner, TorchModuleClassifier):
            raise ValueError(
                "TorchModuleClassifier wraps a module trained elsewhere and cannot be "
                "retrained on masked data; pass retrain_estimator, the model to retrain "
                "(for instance a TorchMLPClassifier of the same shape)."
            )
        return inner

    # -- fitting ---------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: ArrayLike, y: ArrayLike, signal_mask: ArrayLike | None = None) -> DiffROAR:
        """Fit the model, rank the features, retrain on masked data, score the splits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.
        signal_mask : array-like of bool, shape (n_samples, n_features), default=None
            Where the label information is (known for synthetic data such as
            :func:`~sklearn_interp.datasets.make_block_digits`): needed by
            ``attribution="oracle"``, and reported as ``signal_fraction``.

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        fractions = self._checked_fractions()
        signal_mask = self._checked_signal_mask(signal_mask, X.shape)
        check_image_shape(self.image_shape, X.shape[1])
        classes, encoded, counts = np.unique(y, return_inverse=True, return_counts=True)
        if classes.shape[0] < 2:
            raise ValueError(f"DiffROAR needs at least 2 classes; y holds only one class, {classes[0]!r}.")
        if counts.min() < 2:
            raise ValueError(
                f"DiffROAR holds out rows of every class for scoring and found 1 sample "
                f"of class {classes[counts.argmin()]!r}; every class needs at least 2."
            )
        retrain_prototype = self._retrain_prototype()
        leakage_prototype = retrain_prototype if self.leakage_estimator is None else self.leakage_estimator
        rng = check_random_state(self.random_state)
        split_seed = _torch.draw_seeds(rng)

        if self.cv is None:
            cv = StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=split_seed)
        else:
            cv = check_cv(self.cv, y, classifier=True)
        splits = list(cv.split(X, y))
        split_seeds = _torch.draw_seeds(rng, size=(len(splits), self.n_repeats + 2))
        self.chance_ = float(np.mean([np.bincount(encoded[test]).max() / len(test) for _, test in splits]))

        self.maskers_, jobs, keys, signal_rows = {}, [], [], []
        self.estimators_ = []
        for split, (train, test) in enumerate(splits):
            # The explained model of each split sees only its retraining rows,
            # so that held-out rows are ranked by a model that never fitted them.
            explained = self._fit_explained(X[train], y[train], int(split_seeds[split, -1]))
            self.estimators_.append(explained)
            scores = compute_attribution(
                self.attribution, explained, X, y, signal_mask=signal_mask, random_state=int(split_seeds[split, -2])
            )
            for fraction in fractions:
                for side in SIDES:
                    masker = self._masker(fraction, side, int(split_seeds[split, 0])).fit(X[train])
                    self.maskers_[(split, fraction, side)] = masker
                    X_train = masker.transform(X[train], attributions=scores[train])
                    X_test = masker.transform(X[test], attributions=scores[test])
                    for repeat in range(self.n_repeats):
                        model = _seeded(clone(retrain_prototype), int(split_seeds[split, repeat]))
                        jobs.append(delayed(_fit_and_score)(model, X_train, y[train], X_test, y[test]))
                        keys.append(("retrain", split, fraction, side, repeat))
                    if self.leakage_check or signal_mask is not None:
                        kept_test = masker.keep_mask(X[test], attributions=scores[test])
                    if self.leakage_check:
                        kept_train = masker.keep_mask(X[train], attributions=scores[train])
                        model = _seeded(clone(leakage_prototype), int(split_seeds[split, 0]))
                        jobs.append(
                            delayed(_fit_and_score)(
                                model, kept_train.astype(X.dtype), y[train], kept_test.astype(X.dtype), y[test]
                            )
                        )
                        keys.append(("leakage", split, fraction, side, 0))
                    if signal_mask is not None:
                        in_signal = float((kept_test & signal_mask[test]).sum() / kept_test.sum())
                        signal_rows.append((split, fraction, side, in_signal))

        outcomes = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)
        outcomes = list(_torch.progress(outcomes, verbose=self.verbose, desc="DiffROAR retrains", total=len(jobs)))
        self._collect(keys, outcomes, signal_rows)
        return self

    def _fit_explained(self, X, y, seed):
        if isinstance(self.estimator, FrozenEstimator):
            return self.estimator
        return _seeded(clone(self.estimator), seed).fit(X, y)

    def _masker(self, fraction, side, seed):
        return AttributionMasker(
            attribution=self.attribution,
            fraction=float(fraction),
            keep=side,
            fill=self.fill,
            image_shape=self.image_shape,
            noise=self.noise,
            tie_break=self.tie_break,
            device=self.device,
            dtype=self.dtype,
            random_state=seed,
        )

    def _collect(self, keys, outcomes, signal_rows):
        """Fill ``retrained_``, ``results_``, ``curve_`` and ``diffroar_`` from the jobs."""
        self.retrained_ = {}
        leakage, rows = {}, []
        for (kind, split, fraction, side, repeat), (model, accuracy) in zip(keys, outcomes):
            if kind == "leakage":
                leakage[(split, fraction, side)] = accuracy
                continue
            self.retrained_.setdefault((split, fraction, side), []).append(model)
            rows.append({"fraction": fraction, "keep": side, "split": split, "repeat": repeat, "accuracy": accuracy})
        results = pd.DataFrame(rows)
        results["leakage_accuracy"] = [leakage.get((r.split, r.fraction, r.keep), np.nan) for r in results.itertuples()]
        if signal_rows:
            signal = {(split, fraction, side): value for split, fraction, side, value in signal_rows}
            results["signal_fraction"] = [signal[(r.split, r.fraction, r.keep)] for r in results.itertuples()]
        self.results_ = results
        self.curve_ = self._curve(results)
        self.diffroar_ = float(self.curve_["diffroar"].mean())
        flagged = self.curve_.loc[self.curve_["leakage_dominates"], "fraction"].tolist()
        if flagged:
            warnings.warn(
                f"At kept fractions {flagged} a model trained on the keep pattern alone "
                "predicts the class about as well as the masked data do; DiffROAR there "
                "measures the mask, not the kept features (see curve_['leakage_top'], "
                "curve_['leakage_bottom']).",
                UserWarning,
                stacklevel=4,  # _collect, fit, scikit-learn's fit wrapper, the caller
            )

    def _curve(self, results):
        rows = []
        for fraction, group in results.groupby("fraction", sort=True):
            by_side = {
                side: {split: part["accuracy"].to_numpy() for split, part in group[group["keep"] == side].groupby("split")}
                for side in SIDES
            }
            differences = _pairwise_differences(by_side["top"], by_side["bottom"])
            low, high = _confidence_interval(differences, self.confidence)
            top, bottom = group[group["keep"] == "top"], group[group["keep"] == "bottom"]
            row = {
                "fraction": fraction,
                "accuracy_top": top["accuracy"].mean(),
                "accuracy_bottom": bottom["accuracy"].mean(),
                "diffroar": float(differences.mean()),
                "ci_low": low,
                "ci_high": high,
                "n_pairs": differences.shape[0],
                "leakage_top": top["leakage_accuracy"].mean(),
                "leakage_bottom": bottom["leakage_accuracy"].mean(),
            }
            if "signal_fraction" in group:
                row["signal_fraction_top"] = top["signal_fraction"].mean()
            rows.append(row)
        curve = pd.DataFrame(rows)
        curve.insert(9, "leakage_dominates", _leakage_flags(curve, self.chance_).to_numpy())
        return curve

    # -- scoring -----------------------------------------------------------------
    def score(self, X: ArrayLike, y: ArrayLike, signal_mask: ArrayLike | None = None) -> float:
        """Mean DiffROAR over the fractions on new rows, masked by their own attributions.

        The retrained models of ``fit`` are tested on ``X`` masked as in
        ``fit``: each split's explained model ranks the features and its
        masker fills them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        signal_mask : array-like of bool, shape (n_samples, n_features), default=None
            Needed by ``attribution="oracle"``.

        Returns
        -------
        score : float
            In [−1, 1]; larger means the attribution ranks the discriminative
            features higher.
        """
        return float(self.score_curve(X, y, signal_mask=signal_mask)["diffroar"].mean())

    def score_curve(
        self,
        X: ArrayLike,
        y: ArrayLike,
        signal_mask: ArrayLike | None = None,
    ) -> pd.DataFrame:
        """Accuracy with the top and the bottom features, and DiffROAR, per fraction, on new rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        signal_mask : array-like of bool, shape (n_samples, n_features), default=None

        Returns
        -------
        curve : pandas.DataFrame
            Columns ``fraction``, ``accuracy_top``, ``accuracy_bottom``, ``diffroar``.
        """
        check_is_fitted(self)
        X, y = validate_data(self, X, y, reset=False, dtype=[np.float64, np.float32])
        scores = self._split_attributions(X, y, signal_mask)
        accuracy = {}
        for (split, fraction, side), masker in self.maskers_.items():
            X_masked = masker.transform(X, attributions=scores[split])
            models = self.retrained_[(split, fraction, side)]
            accuracy.setdefault((fraction, side), []).extend(float(np.mean(model.predict(X_masked) == y)) for model in models)
        rows = [
            {
                "fraction": fraction,
                "accuracy_top": np.mean(accuracy[(fraction, "top")]),
                "accuracy_bottom": np.mean(accuracy[(fraction, "bottom")]),
            }
            for fraction in sorted({fraction for fraction, _ in accuracy})
        ]
        curve = pd.DataFrame(rows)
        curve["diffroar"] = curve["accuracy_top"] - curve["accuracy_bottom"]
        return curve

    def _split_attributions(self, X, y, signal_mask):
        """The attributions of every split's explained model for the rows of validated ``X``.

        One seed (from ``random_state``) for every call, so that the random
        and SmoothGrad attributions of ``score`` and ``transform`` agree.
        """
        signal_mask = self._checked_signal_mask(signal_mask, X.shape)
        seed = _torch.draw_seeds(self.random_state)
        return [
            compute_attribution(self.attribution, explained, X, y, signal_mask=signal_mask, random_state=seed)
            for explained in self.estimators_
        ]

    def transform(
        self,
        X: ArrayLike,
        signal_mask: ArrayLike | None = None,
    ) -> np.ndarray | torch.Tensor:
        """The explained model's attributions for every row: what DiffROAR ranks the features by.

        The scores of ``attribution`` (larger = more important) from the
        explained model of ``fit``, for its predicted class; with several
        ``cv`` splits, the mean over the splits' models (with one split, the
        default, that model's own). ``score`` masks every row by these same
        scores (each split by its model's) before testing the retrained
        models; :class:`AttributionMasker` does the masking step alone.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        signal_mask : array-like of bool, shape (n_samples, n_features), default=None
            Needed by ``attribution="oracle"`` (whose scores it is).

        Returns
        -------
        attributions : ndarray or torch.Tensor of shape (n_samples, n_features), float64
            Columns named as the input's by ``get_feature_names_out``; a
            tensor on the estimator's device for a tensor ``X``.
        """
        check_is_fitted(self)
        as_tensor = _torch.is_tensor(X)
        X = validate_data(self, _torch.as_numpy(X) if as_tensor else X, reset=False, dtype=[np.float64, np.float32])
        scores = np.mean(self._split_attributions(X, None, signal_mask), axis=0)
        return torch.as_tensor(scores, device=_torch.resolve_device(self.device)) if as_tensor else scores

    def fit_transform(
        self,
        X: ArrayLike,
        y: ArrayLike,
        signal_mask: ArrayLike | None = None,
    ) -> np.ndarray:
        """``fit(X, y, signal_mask)`` then ``transform(X, signal_mask)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        signal_mask : array-like of bool, shape (n_samples, n_features), default=None

        Returns
        -------
        attributions : ndarray of shape (n_samples, n_features)
        """
        return self.fit(X, y, signal_mask=signal_mask).transform(X, signal_mask=signal_mask)

    # -- plotting ------------------------------------------------------------------
    def plot(self, ax: Axes | None = None, *, label: str | None = None, **kwargs: Any) -> Axes:
        """Draw DiffROAR against the kept fraction, with its confidence band.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Draw into it (several curves can share one); a new figure
            otherwise.
        label : str, default=None
            Legend entry; defaults to the attribution's name.
        **kwargs
            Passed to ``Axes.plot``.

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt

        check_is_fitted(self)
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        if label is None:
            label = self.attribution if isinstance(self.attribution, str) else getattr(self.attribution, "__name__", "attribution")
        curve = self.curve_
        (line,) = ax.plot(curve["fraction"], curve["diffroar"], marker="o", label=label, **kwargs)
        if curve["ci_low"].notna().any():
            ax.fill_between(curve["fraction"], curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.2)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("fraction of features kept (k)")
        ax.set_ylabel("DiffROAR = acc(top k) − acc(bottom k)")
        ax.legend()
        return ax

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        tags.non_deterministic = _torch.device_type(self.device) != "cpu"
        return tags
