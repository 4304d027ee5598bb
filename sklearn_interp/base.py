"""Machinery shared by every estimator of sklearn_interp.

:class:`TorchEstimatorMixin` holds what each estimator would otherwise repeat:
the constraints of the common parameters (``device``, ``dtype``,
``random_state``, ``verbose``), input validation that accepts NumPy, pandas
and torch tensors alike, the conversion of outputs back to the caller's
kind, device caches that never reach a pickle, and tags.
"""

from __future__ import annotations

import math
import weakref
from numbers import Integral

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    validate_data,
)

from . import _torch

# Device tensors derived from fitted attributes, per estimator; entries go
# when their estimator is garbage-collected.
_DEVICE_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _check_tensor_values(X, *, ensure_min_samples):
    # The rules check_array applies to arrays, written for tensors so that a
    # CUDA tensor is never copied to the host to be checked.
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D tensor of shape (n_samples, n_features), got a "
            f"tensor with {X.ndim} dimension(s) and shape {tuple(X.shape)}."
        )
    if X.is_complex():
        raise TypeError(f"Expected a real-valued tensor, got dtype {X.dtype}.")
    if X.shape[0] < ensure_min_samples:
        raise ValueError(
            f"Found a tensor with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) "
            f"while a minimum of {ensure_min_samples} is required."
        )
    if X.shape[1] < 1:
        raise ValueError(
            f"Found a tensor with 0 feature(s) (shape={tuple(X.shape)}) "
            "while a minimum of 1 is required."
        )
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")


def _final_step(estimator, X):
    """The last step of a Pipeline (``estimator`` itself otherwise) and ``X`` as that step sees it."""
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps[:-1]:
            if step is not None and step != "passthrough":
                X = step.transform(X)
        estimator = estimator.steps[-1][1]
    return estimator, X


def _top_rows(codes, n):
    """Indices of the ``n`` rows with the largest code in each column.

    Parameters
    ----------
    codes : ndarray of shape (n_samples, n_components)
    n : int
        Rows per column (clipped to ``n_samples``).

    Returns
    -------
    indices : ndarray of shape (n_components, min(n, n_samples))
        Strongest first; ties keep the earlier row first.
    """
    if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    n = min(n, codes.shape[0])
    order = np.argsort(-codes.T, axis=1, kind="stable")
    return order[:, :n]


def _total_sum_of_squares(X, batch_size):
    """``‖X − mean(X)‖²_F`` with per-feature means, in float64 and batches.

    Two passes (means, then centred squares) keep memory bounded by
    ``batch_size`` and avoid the cancellation of ``Σx² − n·x̄²``.
    """
    slices = _torch.batch_slices(X.shape[0], batch_size)
    mean = sum(torch.sum(X[rows], dim=0, dtype=torch.float64) for rows in slices) / X.shape[0]
    return sum(float(torch.sum((X[rows].to(torch.float64) - mean) ** 2)) for rows in slices)


def _r2(residual_ss, total_ss):
    """``1 − residual_ss / total_ss``, with the constant-data cases defined."""
    if total_ss == 0.0:
        return 1.0 if residual_ss == 0.0 else -math.inf
    return 1.0 - residual_ss / total_ss


class TorchEstimatorMixin:
    """Mixin for estimators computed in torch.

    Estimators list it first among their bases, then scikit-learn's mixins
    and ``BaseEstimator``. They define ``device``, ``dtype``, ``random_state``
    and ``verbose`` parameters and merge :attr:`_torch_parameter_constraints`
    into their own ``_parameter_constraints``.

    Fitted attributes are NumPy arrays; tensors derived from them for a
    device live in a cache outside the estimator's ``__dict__``, so they are
    never pickled and a model fitted on a GPU loads on a machine without one.
    """

    _torch_parameter_constraints: dict = {
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # -- device and dtype -------------------------------------------------
    def _torch_device(self):
        """The resolved device (``ValueError`` for one that is not here)."""
        return _torch.resolve_device(self.device)

    def _torch_dtype(self, X=None):
        return _torch.resolve_dtype(self.dtype, X)

    # -- inputs and outputs ----------------------------------------------
    def _validate_tensor(self, X, *, reset, ensure_min_samples=1, dtype=None, allow_nd=False):
        """Validate ``X`` as scikit-learn would and return it as a tensor.

        Parameters
        ----------
        X : array-like, pandas DataFrame or torch.Tensor of shape (n_samples, n_features)
        reset : bool
            ``True`` in ``fit`` (records ``n_features_in_`` and
            ``feature_names_in_``), ``False`` afterwards (checks them).
        ensure_min_samples : int, default=1
        dtype : torch.dtype, default=None
            Defaults to the estimator's ``dtype`` parameter resolved against
            ``X``.
        allow_nd : bool, default=False
            Accept more than two dimensions (images); ``n_features_in_`` is
            then ``X.shape[1]``, as scikit-learn counts it.

        Returns
        -------
        X_tensor : torch.Tensor on the estimator's device
        as_tensor : bool
            Whether the caller gave a tensor (and so expects tensors back).
        """
        device = self._torch_device()
        if dtype is None:
            dtype = self._torch_dtype(X)
        _torch.check_device_dtype(device, dtype)
        if _torch.is_tensor(X):
            self._check_tensor(X, reset=reset, ensure_min_samples=ensure_min_samples, allow_nd=allow_nd)
            return _torch.to_tensor(X, device, dtype), True
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_min_samples=ensure_min_samples,
            allow_nd=allow_nd,
        )
        return _torch.to_tensor(X, device, dtype), False

    def _validate_other(self, X, *, n_columns, what):
        """Validate a 2D input that is not shaped like the training data.

        For inputs such as codes given to ``inverse_transform``: the same
        checks as :meth:`_validate_tensor` (rank, finiteness, dtype), but the
        column count is ``n_columns`` instead of ``n_features_in_``.

        Returns
        -------
        X_tensor : torch.Tensor on the estimator's device
        as_tensor : bool
            Whether the caller gave a tensor.
        """
        as_tensor = _torch.is_tensor(X)
        if as_tensor:
            _check_tensor_values(X, ensure_min_samples=1)
        else:
            X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != n_columns:
            raise ValueError(f"{what} must have shape (n_samples, {n_columns}), got {tuple(X.shape)}.")
        device, dtype = self._torch_device(), self._torch_dtype(X)
        _torch.check_device_dtype(device, dtype)
        return _torch.to_tensor(X, device, dtype), as_tensor

    def _check_tensor(self, X, *, reset, ensure_min_samples, allow_nd=False):
        # An n-d tensor gets the 2D checks on its rows flattened.
        _check_tensor_values(X.flatten(1) if allow_nd and X.ndim > 2 else X, ensure_min_samples=ensure_min_samples)
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)

    # -- device caches -----------------------------------------------------
    def _device_cache(self):
        """This estimator's private cache of device tensors.

        Kept outside ``__dict__`` (so ``transform`` leaves the estimator's
        state unchanged, as scikit-learn requires) and therefore never
        pickled: a model fitted on a GPU loads on a machine without one.
        """
        return _DEVICE_CACHES.setdefault(self, {})

    def _on_device(self, name, device, dtype):
        """The fitted NumPy attribute ``name`` as a cached device tensor."""
        cache = self._device_cache()
        key = (name, str(device), dtype)
        array = getattr(self, name)
        cached = cache.get(key)
        # Keyed on the array's identity too: a refit replaces the attribute
        # and must not reuse a stale copy.
        if cached is None or cached[0] is not array:
            cached = (array, _torch.to_tensor(array, device, dtype))
            cache[key] = cached
        return cached[1]

    def _clear_device_cache(self):
        _DEVICE_CACHES.pop(self, None)

    # -- tags ----------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = (
                ["float64", "float32"] if self.dtype is None else [self.dtype]
            )
        # Results are reproducible on a given device; CUDA kernels may not be
        # bitwise deterministic, which the common checks cannot tell apart.
        tags.non_deterministic = _torch.device_type(self.device) != "cpu"
        return tags


class TorchClassifierMixin:
    """``decision_function``, ``predict`` and ``score`` from a ``_logits(X)`` method.

    For classifiers whose decision is the argmax of torch logits; they
    define ``_logits(X) -> (logits tensor, as_tensor)``, which validates
    ``X``, and list this mixin before :class:`TorchEstimatorMixin`.
    """

    def decision_function(self, X):
        """Logits, or for two classes the logit of the second minus the first.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
        """
        logits, as_tensor = self._logits(X)
        if logits.shape[1] == 2:
            logits = logits[:, 1] - logits[:, 0]
        return _torch.to_output(logits, as_tensor)

    def predict(self, X):
        """The class with the largest logit.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        logits, _ = self._logits(X)
        return self.classes_[_torch.to_numpy(logits.argmax(dim=1))]

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        accuracy : float
        """
        return super().score(X, y, sample_weight=sample_weight)
