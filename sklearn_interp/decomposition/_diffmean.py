"""Difference-in-means directions: the supervised steering baseline.

For activations labelled by concept, the direction of concept ``c`` is the
mean activation of its rows minus the mean of all other rows, scaled to
unit length. It is the strong supervised baseline of the steering
literature (AxBench's DiffMean; the SNMF paper compares its features with
it), and needs no optimisation: one pass over the rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin


def _class_means(X, labels, n_classes):
    """Mean row of every class, and of the rows outside it, as (n_classes, n_features) tensors."""
    counts = torch.bincount(labels, minlength=n_classes).to(X.dtype)
    sums = X.new_zeros((n_classes, X.shape[1])).index_add_(0, labels, X)
    total = sums.sum(0, keepdim=True)
    inside = sums / counts[:, None]
    outside = (total - sums) / (X.shape[0] - counts)[:, None]
    return inside, outside


def _unit_differences(inside, outside, classes):
    """``inside − outside`` per class scaled to unit length; a clear error for a class with no difference."""
    differences = inside - outside
    norms = torch.linalg.vector_norm(differences, dim=1)
    flat = (norms <= torch.finfo(differences.dtype).eps * torch.linalg.vector_norm(inside, dim=1)).nonzero()
    if len(flat):
        names = ", ".join(repr(classes[int(i)]) for i in flat[:, 0])
        raise ValueError(
            f"The rows of class {names} have the same mean as the other rows: there is no direction to "
            "point along. Give labels whose rows differ."
        )
    return differences / norms[:, None], norms


class DiffMeanDirections(TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """One unit direction per concept: the mean of its rows minus the mean of the others.

    ``components_[c] = (mean(X[y == c]) − mean(X[y != c])) / ‖·‖``. The
    supervised baseline against which unsupervised features (SNMF, sparse
    autoencoders) are compared for steering; pass ``components_`` to
    :func:`~sklearn_interp.intervention.evaluate_steering` or
    :func:`~sklearn_interp.intervention.steer`.

    Read more in the :ref:`User Guide <steering>`.

    Parameters
    ----------
    device : str, default="auto"
        Where the means are computed.
    dtype : {"float32", "float64"} or None, default="float32"
        Working precision; ``None`` follows ``X``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The concept labels, sorted.
    components_ : ndarray of shape (n_classes, n_features)
        Unit direction of every concept, in the order of ``classes_``.
    norms_ : ndarray of shape (n_classes,)
        ``‖mean(X[y == c]) − mean(X[y != c])‖`` before scaling: how far apart
        the concept's rows are from the others.
    class_counts_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Defined when ``X`` has string column names.

    See Also
    --------
    SNMFDecomposer : Unsupervised features whose directions also steer.
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : Directions
        that also whiten by the within-class covariance.

    References
    ----------
    .. [1] Z. Wu et al., "AxBench: Steering LLMs? Even Simple Baselines
       Outperform Sparse Autoencoders", ICML 2025.
    .. [2] O. Shafran, A. Geiger, M. Geva, "Decomposing MLP Activations into
       Interpretable Features via Semi-Nonnegative Matrix Factorization",
       arXiv:2506.10920, 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import DiffMeanDirections
    >>> X = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> diffmean = DiffMeanDirections(dtype="float64", device="cpu").fit(X, ["a", "a", "b", "b"])
    >>> diffmean.components_.round(3)
    array([[ 0.707, -0.707],
           [-0.707,  0.707]])
    >>> diffmean.transform(X).round(3)
    array([[ 0.707, -0.707],
           [ 2.121, -2.121],
           [-0.707,  0.707],
           [-2.121,  2.121]])
    """

    _parameter_constraints: dict = {
        "device": TorchEstimatorMixin._torch_parameter_constraints["device"],
        "dtype": TorchEstimatorMixin._torch_parameter_constraints["dtype"],
    }

    def __init__(
        self,
        *,
        device: str = "auto",
        dtype: Literal["float32", "float64"] | None = "float32",
    ) -> None:
        self.device = device
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | torch.Tensor, y: ArrayLike) -> DiffMeanDirections:
        """Compute the direction of every concept.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations, one row per token or text.
        y : array-like of shape (n_samples,)
            The concept of every row; at least two distinct concepts.

        Returns
        -------
        self : DiffMeanDirections
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "give the concept of every row."
            )
        X_t, _ = self._validate_tensor(X, reset=True, ensure_min_samples=2)
        y = _torch.as_numpy(y)
        if y.ndim != 1 or y.shape[0] != X_t.shape[0]:
            raise ValueError(f"y must have one label per row of X ({X_t.shape[0]}), got shape {y.shape}.")
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"DiffMeanDirections needs at least two concepts to contrast; y has only {self.classes_[0]!r}."
            )
        labels_t = torch.as_tensor(labels, device=X_t.device)
        with torch.no_grad():
            inside, outside = _class_means(X_t, labels_t, len(self.classes_))
            units, norms = _unit_differences(inside, outside, self.classes_)
        self.components_ = _torch.to_numpy(units)
        self.norms_ = _torch.to_numpy(norms)
        self.class_counts_ = np.bincount(labels, minlength=len(self.classes_))
        return self

    def transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Projection of every row on every concept's unit direction: ``X @ components_.T``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        projections : ndarray or torch.Tensor of shape (n_samples, n_classes)
            A tensor on the estimator's device when ``X`` is a tensor.
        """
        check_is_fitted(self)
        X_t, as_tensor = self._validate_tensor(X, reset=False)
        components = self._on_device("components_", X_t.device, X_t.dtype)
        return _torch.to_output(X_t @ components.T, as_tensor)

    def feature_directions(self, normalize: bool = True) -> np.ndarray:
        """The unit direction of every concept (``components_``), as SNMF and the SAEs give theirs.

        Parameters
        ----------
        normalize : bool, default=True
            Ignored: the directions are unit length already; present so that
            every decomposition answers the same call.

        Returns
        -------
        directions : ndarray of shape (n_classes, n_features)
        """
        check_is_fitted(self)
        return self.components_.copy()

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
