"""Steer, splice and ablate: context managers that edit one site of a language model."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator

from .. import _torch
from ._hooks import edit_site, site_width

if TYPE_CHECKING:
    import transformers


def _vectors(values, *, width, name, device, dtype):
    """``values`` as a (width,) or (rows, width) tensor on ``device``, with a clear error for a wrong width."""
    tensor = _torch.to_tensor(values, device, dtype)
    if tensor.ndim not in (1, 2) or tensor.shape[-1] != width:
        raise ValueError(
            f"{name} must have shape ({width},) or (n_rows, {width}) for this site, got {tuple(tensor.shape)}."
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return tensor


def _per_row(tensor, activation, name):
    """Broadcast a (width,) or (rows, width) tensor over an activation of shape (rows, positions, width)."""
    if tensor.ndim == 1:
        return tensor
    if tensor.shape[0] != activation.shape[0]:
        raise ValueError(f"{name} has {tensor.shape[0]} rows for a batch of {activation.shape[0]}.")
    return tensor[:, None, :]


def _model_device_dtype(model):
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@contextlib.contextmanager
def steer(
    model: transformers.PreTrainedModel,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    direction: ArrayLike | torch.Tensor,
    alpha: float | ArrayLike,
) -> Iterator[None]:
    """Add ``alpha · direction / ‖direction‖`` to the activation at every position.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    layer : int
        The block (0 is the first).
    site : {"mlp", "attn", "residual"}
    direction : array-like or torch.Tensor of shape (width,) or (batch, width)
        One direction for every row of the batch, or one per row.
    alpha : float or array-like of shape (batch,)
        The step along the unit direction; one per row if an array.

    Yields
    ------
    model : the same model, steered until the context ends

    Examples
    --------
    >>> import torch
    >>> from sklearn_interp.intervention import steer
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> model, tokenizer = tiny_causal_lm(random_state=0)
    >>> batch = tokenizer(["the cat sat"], return_tensors="pt")
    >>> with steer(model, layer=1, site="residual", direction=torch.ones(32), alpha=4.0):
    ...     steered = model(**batch).logits
    >>> bool((steered != model(**batch).logits).any())
    True
    """
    device, dtype = _model_device_dtype(model)
    width = site_width(model, layer, site)
    unit = _vectors(direction, width=width, name="direction", device=device, dtype=dtype)
    norms = torch.linalg.vector_norm(unit, dim=-1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("direction has zero length: it points nowhere to steer.")
    unit = unit / norms
    alpha = _torch.to_tensor(np.asarray(alpha, dtype=np.float64), device, dtype)
    if alpha.ndim > 1:
        raise ValueError(f"alpha must be a number or one per row, got shape {tuple(alpha.shape)}.")
    step = unit * (alpha[:, None] if alpha.ndim == 1 else alpha)

    def add(activation):
        return activation + _per_row(step, activation, "direction × alpha").to(activation.dtype)

    with edit_site(model, layer, site, add):
        yield model


def reconstruct(transformer: BaseEstimator, activation: torch.Tensor) -> torch.Tensor:
    """``transformer.inverse_transform(transformer.transform(a))`` row by row, on the activation's device.

    The library's estimators take and give tensors on their device; any other
    estimator (scikit-learn's PCA, say) gets NumPy and its answer is moved back.
    """
    flat = activation.reshape(-1, activation.shape[-1])
    codes = transformer.transform(flat if _accepts_tensors(transformer) else _torch.to_numpy(flat))
    decoded = transformer.inverse_transform(codes)
    decoded = _torch.to_tensor(decoded, activation.device, activation.dtype)
    return decoded.reshape(activation.shape), codes


def _accepts_tensors(transformer):
    from ..base import TorchEstimatorMixin

    steps = getattr(transformer, "steps", None)
    estimators = [step for _, step in steps] if steps else [transformer]
    return all(isinstance(step, TorchEstimatorMixin) for step in estimators)


def check_transformer(transformer, width):
    """A fitted estimator with ``transform`` and ``inverse_transform`` for activations of ``width``."""
    for method in ("transform", "inverse_transform"):
        if not callable(getattr(transformer, method, None)):
            raise TypeError(f"{type(transformer).__name__} has no {method}: splicing needs both.")
    n_features = getattr(transformer, "n_features_in_", None)
    if n_features is not None and n_features != width:
        raise ValueError(
            f"The transformer was fitted on {n_features} features but the site's activations have {width}."
        )


@contextlib.contextmanager
def splice(
    model: transformers.PreTrainedModel,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    transformer: BaseEstimator,
    *,
    add_error: bool = False,
) -> Iterator[None]:
    """Replace the activation by its reconstruction ``inverse_transform(transform(a))``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    layer : int
    site : {"mlp", "attn", "residual"}
    transformer : fitted estimator with ``transform`` and ``inverse_transform``
        SNMF, MP-SAE, TopK, scikit-learn's PCA, or a Pipeline of them.
    add_error : bool, default=False
        Add the reconstruction error back (``a`` is then unchanged up to
        rounding, but gradients and edits of the codes flow through the
        decomposition), as SAE circuit work does.

    Yields
    ------
    model : the same model, spliced until the context ends
    """
    check_transformer(transformer, site_width(model, layer, site))

    def replace(activation):
        decoded, _ = reconstruct(transformer, activation)
        return decoded + (activation - decoded) if add_error else decoded

    with edit_site(model, layer, site, replace):
        yield model


@contextlib.contextmanager
def ablate(
    model: transformers.PreTrainedModel,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    how: Literal["zero", "mean"] = "zero",
    mean: ArrayLike | None = None,
) -> Iterator[None]:
    """Replace the activation by zeros or by a fixed mean activation.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    layer : int
    site : {"mlp", "attn", "residual"}
    how : {"zero", "mean"}, default="zero"
    mean : array-like of shape (width,), default=None
        The activation that ``how="mean"`` puts at every position (for
        instance the mean over a corpus's tokens); required for ``"mean"``.

    Yields
    ------
    model : the same model, ablated until the context ends
    """
    if how not in ("zero", "mean"):
        raise ValueError(f"how must be 'zero' or 'mean', got {how!r}.")
    width = site_width(model, layer, site)
    if how == "mean":
        if mean is None:
            raise ValueError("how='mean' needs mean=, the activation to put at every position.")
        device, dtype = _model_device_dtype(model)
        fill = _vectors(mean, width=width, name="mean", device=device, dtype=dtype)
        if fill.ndim != 1:
            raise ValueError(f"mean must have shape ({width},), got {tuple(fill.shape)}.")

        def replace(activation):
            return fill.to(activation.dtype).expand_as(activation).clone()
    else:

        def replace(activation):
            return torch.zeros_like(activation)

    with edit_site(model, layer, site, replace):
        yield model
