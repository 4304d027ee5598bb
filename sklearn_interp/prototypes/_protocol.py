"""What a part-prototype model offers the evaluators, and an adapter for foreign torch models."""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import _fit_context
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..neural_network._mlp import TorchModuleClassifier


@runtime_checkable
class PrototypeActivationModel(Protocol):
    """A fitted classifier whose class scores come from prototype activation maps.

    :class:`~sklearn_interp.evaluation.ConsistencyScorer` and the part
    scorers accept any object with these members.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototype_class_ : ndarray of shape (n_prototypes,)
        Index into ``classes_`` of the class each prototype belongs to, -1
        for a prototype shared by all classes.
    """

    classes_: np.ndarray
    prototype_class_: np.ndarray

    def prototype_activation_maps(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Activation maps of shape (n_images, n_prototypes, h, w), larger = more activated.

        They must be the similarity whose spatial maximum drives the class
        score, on a grid over the same input frame as the part keypoints.
        """


class _PrototypeModelMixin:
    """What the part-prototype classifiers share: image inputs and batched maps.

    Inputs are (n, C, H, W) arrays, or flat rows with ``image_shape``. Flat
    rows without ``image_shape`` are read as ``n_features`` channels of a
    1 × 1 image, so the estimators also work on plain feature vectors (each
    row is one cell), which is what scikit-learn's checks feed them.
    Subclasses define ``module_`` and may override ``_maps_of``.
    """

    def _validate_images(self, X, *, reset, dtype=None):
        X, as_tensor = self._validate_tensor(X, reset=reset, dtype=dtype, allow_nd=True)
        if X.ndim not in (2, 4):
            raise ValueError(
                f"Expected images of shape (n, C, H, W) or flat rows (n, n_features); got shape {tuple(X.shape)}."
            )
        if X.ndim == 2:
            shape = (X.shape[1], 1, 1) if self.image_shape is None else tuple(self.image_shape)
            if int(np.prod(shape)) != X.shape[1]:
                raise ValueError(f"image_shape={self.image_shape} has {int(np.prod(shape))} values, but rows of X have {X.shape[1]}.")
            X = X.reshape(X.shape[0], *shape)
        elif self.image_shape is not None and tuple(X.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"Images have shape {tuple(X.shape[1:])}, but image_shape is {tuple(self.image_shape)}.")
        if reset:
            self.image_shape_ = tuple(int(v) for v in X.shape[1:])
        elif tuple(X.shape[1:]) != self.image_shape_:
            raise ValueError(f"Images have shape {tuple(X.shape[1:])}, but the model was fitted on {self.image_shape_}.")
        return X, as_tensor

    def _validate_input(self, X, *, reset, dtype=None):
        return self._validate_images(X, reset=reset, dtype=dtype)

    def _maps_of(self, X_t):
        return self.module_.prototype_activation_maps(X_t)

    def prototype_activation_maps(self, X):
        """The prototypes' activation maps, larger = more activated.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)

        Returns
        -------
        maps : ndarray of shape (n_samples, n_prototypes, h, w)
            A tensor on the estimator's device when ``X`` is a tensor.
        """
        check_is_fitted(self)
        X_t, as_tensor = self._validate_images(X, reset=False, dtype=self._module_dtype())
        return _torch.to_output(self._in_batches(self._maps_of, X_t), as_tensor)


def _check_image_shape(image_shape):
    if image_shape is not None and (
        len(image_shape) != 3 or not all(isinstance(v, Integral) and v >= 1 for v in image_shape)
    ):
        raise ValueError(f"image_shape must be (channels, height, width) of positive ints, got {image_shape!r}.")


class TorchPrototypeAdapter(_PrototypeModelMixin, TorchModuleClassifier):
    """A part-prototype torch network trained elsewhere, as a fitted classifier with maps.

    ``fit`` trains nothing: it records the classes and the prototypes'
    classes and checks the module's outputs, so that the evaluators of
    :mod:`sklearn_interp.evaluation` can score a ProtoPNet, TesNet or any
    other prototype network built outside this library.

    Parameters
    ----------
    module : torch.nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes).
    classes : array-like of shape (n_classes,)
        The label of each logit.
    prototype_class : array-like of int of shape (n_prototypes,)
        Index into ``classes`` of each prototype's class, -1 if shared.
    maps_fn : callable or None, default=None
        ``maps_fn(module, X) -> (n, n_prototypes, h, w)`` tensor, the
        similarity whose spatial max drives the logits (for a classic
        ProtoPNet, ``log((d + 1) / (d + 1e-4))`` of its distance maps).
        ``None`` calls ``module.prototype_activation_maps(X)``.
    image_shape : tuple of int or None, default=None
        ``(C, H, W)``; flat rows of X are reshaped to it.
    batch_size : int, default=64
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float32"

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototype_class_ : ndarray of shape (n_prototypes,)
    module_ : torch.nn.Module
    image_shape_ : tuple of int
    n_features_in_ : int

    See Also
    --------
    PartPrototypeClassifier : A part-prototype network trained here.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_interp.prototypes import TorchPrototypeAdapter
    >>> class Tiny(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
    ...     def prototype_activation_maps(self, X):
    ...         return self.conv(X)
    ...     def forward(self, X):
    ...         return self.prototype_activation_maps(X).amax(dim=(2, 3))[:, :2]
    >>> model = TorchPrototypeAdapter(Tiny(), classes=[0, 1], prototype_class=[0, 1, -1, -1], device="cpu")
    >>> model.fit(np.zeros((1, 3, 16, 16))).prototype_activation_maps(np.zeros((2, 3, 16, 16))).shape
    (2, 4, 4, 4)
    """

    _parameter_constraints: dict = {
        **TorchModuleClassifier._parameter_constraints,
        "prototype_class": ["array-like"],
        "maps_fn": [callable, None],
        "image_shape": [tuple, None],
    }
    _parameter_constraints.pop("input_shape")

    def __init__(
        self,
        module: torch.nn.Module,
        classes: ArrayLike,
        prototype_class: ArrayLike,
        *,
        maps_fn: Callable[..., Any] | None = None,
        image_shape: tuple[int, ...] | None = None,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float32",
    ) -> None:
        self.module = module
        self.classes = classes
        self.prototype_class = prototype_class
        self.maps_fn = maps_fn
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> TorchPrototypeAdapter:
        """Record classes and prototype classes; check the module on ``X[:1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            When given, its labels must be among ``classes``.

        Returns
        -------
        self : object
        """
        _check_image_shape(self.image_shape)
        X_t, _ = self._validate_images(X, reset=True)
        self._record_classes(y)
        prototype_class = np.asarray(self.prototype_class)
        if prototype_class.ndim != 1 or not np.issubdtype(prototype_class.dtype, np.integer):
            raise ValueError("prototype_class must be a 1-D array of class indices (-1 for shared prototypes).")
        if prototype_class.size and (prototype_class.min() < -1 or prototype_class.max() >= len(self.classes_)):
            raise ValueError(
                f"prototype_class must hold indices in [-1, {len(self.classes_) - 1}], "
                f"got {np.unique(prototype_class).tolist()}."
            )
        self.prototype_class_ = prototype_class.astype(np.int64)
        self.module_ = self._placed_module(X_t)
        self._check_logits(X_t)
        with torch.no_grad():
            maps = self._maps_of(X_t[:1])
        if maps.ndim != 4 or maps.shape[1] != len(self.prototype_class_):
            raise ValueError(
                f"The maps have shape {tuple(maps.shape)}; expected (n, {len(self.prototype_class_)}, h, w), "
                "one map per entry of prototype_class."
            )
        return self

    def _maps_of(self, X_t):
        if self.maps_fn is not None:
            return self.maps_fn(self.module_, X_t)
        if not hasattr(self.module_, "prototype_activation_maps"):
            raise TypeError("The module has no prototype_activation_maps method; pass maps_fn.")
        return super()._maps_of(X_t)
