"""Attribution methods: which input features a classifier's prediction rests on.

Every attribution is a callable ``(estimator, X, y=None) -> scores`` with
``scores`` of shape ``(n_samples, n_features)``, larger meaning more
important. The gradient methods differentiate the estimator's ``module_``
(a torch module mapping inputs to logits, as
:class:`~sklearn_interp.neural_network.TorchMLPClassifier`, skorch nets and
:class:`~sklearn_interp.neural_network.TorchModuleClassifier` expose),
batch by batch on the module's own device.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator

from .. import _torch

_BATCH_SIZE = 256


def differentiable_module(estimator):
    """The torch module behind a fitted estimator, for gradient attributions.

    Parameters
    ----------
    estimator : fitted estimator
        Exposes ``module_``, a ``torch.nn.Module`` from inputs of shape
        ``(n, n_features)`` to logits; a ``FrozenEstimator`` around such an
        estimator works too.

    Returns
    -------
    module : torch.nn.Module

    Raises
    ------
    TypeError
        If the estimator has no such module.
    """
    inner = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    module = getattr(inner, "module_", None)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"Gradient attributions need a differentiable torch model, but "
            f"{type(inner).__name__} has no fitted `module_` (a torch.nn.Module "
            "mapping inputs to logits). Use TorchMLPClassifier, a skorch net, "
            "TorchModuleClassifier around your own module, or a model-free "
            "attribution ('random', 'oracle' or a callable)."
        )
    return module


def _class_index(estimator, module, X_t, y, target):
    """Which logit to differentiate for every row: the predicted or the true class."""
    if target == "predicted":
        with torch.no_grad():
            return module(X_t).argmax(dim=1)
    if y is None:
        raise ValueError("target='true' needs y, the labels of the rows to explain.")
    classes = np.asarray(getattr(estimator, "classes_"))
    index = np.searchsorted(classes, np.asarray(y))
    if np.any(index >= classes.shape[0]) or np.any(classes[np.minimum(index, classes.shape[0] - 1)] != np.asarray(y)):
        raise ValueError("y has labels the estimator was not fitted on.")
    return torch.from_numpy(index).to(X_t.device)


def _batched_gradients(estimator, X, y, target, perturb):
    """Weighted sums of ∂ logit / ∂ x over the inputs ``perturb`` makes of each batch.

    ``perturb(X_batch, rows)`` returns a list of ``(inputs, weight)`` pairs,
    the weight a number or a tensor like ``X_batch``; the gradient of the
    chosen logit at each input is summed with its weight (one pair with
    weight 1 gives the plain input gradient).
    """
    module = differentiable_module(estimator)
    parameter = next(module.parameters())
    X_t = _torch.to_tensor(X, parameter.device, parameter.dtype)
    was_training = module.training
    module.eval()
    scores = []
    for rows in _torch.batch_slices(X_t.shape[0], _BATCH_SIZE):
        X_batch = X_t[rows]
        target_index = _class_index(estimator, module, X_batch, None if y is None else np.asarray(y)[rows], target)
        total = torch.zeros_like(X_batch)
        for inputs, weight in perturb(X_batch, rows):
            inputs = inputs.detach().requires_grad_(True)
            logits = module(inputs)
            selected = logits.gather(1, target_index[:, None]).sum()
            (gradient,) = torch.autograd.grad(selected, inputs)
            total += weight * gradient
        scores.append(total.detach())
    module.train(was_training)
    return torch.cat(scores)


def input_gradient(
    estimator: BaseEstimator,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    target: Literal["predicted", "true"] = "predicted",
    absolute: bool = True,
) -> np.ndarray:
    """Input gradients: ``|∂ logit_c / ∂ x|`` for every feature.

    The attribution Shah et al. (2021) evaluate, with ``c`` the predicted
    class (or the true one with ``target="true"``).

    Parameters
    ----------
    estimator : fitted estimator with a ``module_``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), default=None
        Needed only for ``target="true"``.
    target : {"predicted", "true"}, default="predicted"
    absolute : bool, default=True
        Rank by the gradient's magnitude (the paper's choice) or its signed value.

    Returns
    -------
    scores : ndarray of shape (n_samples, n_features)

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_interp.evaluation import input_gradient
    >>> from sklearn_interp.neural_network import TorchModuleClassifier
    >>> linear = torch.nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]))
    ...     _ = linear.bias.zero_()  # torch draws it at random; the prediction must not depend on that
    >>> clf = TorchModuleClassifier(linear, classes=[0, 1], device="cpu").fit(np.zeros((1, 3)))
    >>> input_gradient(clf, np.array([[1.0, 0.0, 0.0]]))  # class 0 is predicted
    array([[1., 2., 0.]], dtype=float32)
    """
    scores = _batched_gradients(estimator, X, y, target, lambda X_batch, rows: [(X_batch, 1.0)])
    return _torch.to_numpy(scores.abs() if absolute else scores)


def smoothgrad(
    estimator: BaseEstimator,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    n_samples: int = 25,
    noise: float = 0.15,
    target: Literal["predicted", "true"] = "predicted",
    random_state: int | np.random.RandomState | None = None,
) -> np.ndarray:
    """SmoothGrad: input gradients averaged over Gaussian perturbations of the input.

    The noise's standard deviation is ``noise`` times each row's value range
    (Smilkov et al., 2017); the magnitude of the mean gradient is returned.

    Parameters
    ----------
    estimator : fitted estimator with a ``module_``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), default=None
    n_samples : int, default=25
        Perturbed copies per row.
    noise : float, default=0.15
    target : {"predicted", "true"}, default="predicted"
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    scores : ndarray of shape (n_samples, n_features)
    """
    module = differentiable_module(estimator)
    generator = _torch.make_generator(random_state)

    def perturb(X_batch, rows):
        spread = noise * (X_batch.amax(dim=1, keepdim=True) - X_batch.amin(dim=1, keepdim=True))
        def noise_like():
            return _torch.randn(X_batch.shape, generator, device=X_batch.device, dtype=X_batch.dtype)

        return [(X_batch + spread * noise_like(), 1.0 / n_samples) for _ in range(n_samples)]

    return _torch.to_numpy(_batched_gradients(estimator, X, y, target, perturb).abs())


def integrated_gradients(
    estimator: BaseEstimator,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    n_steps: int = 32,
    baseline: float | ArrayLike = 0.0,
    target: Literal["predicted", "true"] = "predicted",
) -> np.ndarray:
    """Integrated gradients: ``(x − x₀) ⊙ ∫ ∂ logit_c(x₀ + α(x − x₀)) dα`` (magnitude).

    The path integral from the baseline ``x₀`` is a midpoint Riemann sum of
    ``n_steps`` terms (Sundararajan et al., 2017).

    Parameters
    ----------
    estimator : fitted estimator with a ``module_``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), default=None
    n_steps : int, default=32
    baseline : float or array-like of shape (n_features,), default=0.0
    target : {"predicted", "true"}, default="predicted"

    Returns
    -------
    scores : ndarray of shape (n_samples, n_features)
    """
    module = differentiable_module(estimator)
    parameter = next(module.parameters())
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float64), (np.shape(X)[1],))
    origin = _torch.to_tensor(baseline, parameter.device, parameter.dtype)
    alphas = (torch.arange(n_steps, dtype=torch.float64) + 0.5) / n_steps

    def path(X_batch, rows):
        # Each step's gradient weighted by (x − x₀) / n_steps sums to the integral.
        step = (X_batch - origin) / n_steps
        return [(origin + float(alpha) * (X_batch - origin), step) for alpha in alphas]

    return _torch.to_numpy(_batched_gradients(estimator, X, y, target, path).abs())


def random_attribution(X, random_state):
    """Independent uniform scores: a ranking of the features drawn at random per row."""
    generator = np.random.default_rng(random_state)
    return generator.random(np.shape(X))


GRADIENT_ATTRIBUTIONS = {
    "input_gradient": input_gradient,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
}
MODEL_FREE_ATTRIBUTIONS = {"random", "oracle"}


def compute_attribution(attribution, estimator, X, y=None, *, signal_mask=None, random_state=None):
    """Scores of ``attribution`` for the rows of ``X``, validated.

    Parameters
    ----------
    attribution : str or callable
        A key of ``GRADIENT_ATTRIBUTIONS``, ``"random"``, ``"oracle"`` (the
        given ``signal_mask``) or a callable ``(estimator, X, y) -> scores``.
    estimator : fitted estimator
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
    signal_mask : ndarray of shape (n_samples, n_features) or None
    random_state : int or None
        Seeds ``"random"`` and ``"smoothgrad"``.

    Returns
    -------
    scores : ndarray of shape (n_samples, n_features), float64
    """
    if attribution == "random":
        scores = random_attribution(X, random_state)
    elif attribution == "oracle":
        if signal_mask is None:
            raise ValueError(
                "attribution='oracle' ranks the features of the signal mask first; "
                "pass signal_mask (for instance make_block_digits().signal_mask)."
            )
        scores = np.asarray(signal_mask, dtype=np.float64)
    elif attribution == "smoothgrad":
        scores = smoothgrad(estimator, X, y, random_state=random_state)
    elif isinstance(attribution, str):
        scores = GRADIENT_ATTRIBUTIONS[attribution](estimator, X, y)
    else:
        scores = attribution(estimator, X, y)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != np.shape(X):
        raise ValueError(
            f"The attribution gave scores of shape {scores.shape}; it must give one "
            f"score per feature of every row, shape {np.shape(X)}."
        )
    if not np.isfinite(scores).all():
        raise ValueError("The attribution gave NaN or infinite scores.")
    return scores

