"""Consistency and stability of part-prototype models (Huang et al., ICCV 2023).

A part-prototype network explains a decision by where each prototype's
activation map peaks. Huang et al. judge those explanations with object-part
keypoints: a prototype is *consistent* when, across the images of its class,
the box around its peak covers one part in at least a fraction ``threshold``
of the images where that part is visible; it is *stable* on an image when
small input noise leaves the set of parts its box covers unchanged.

The procedure follows the authors' evaluation code: the h × w map is
upsampled to the input size by bicubic interpolation, its first maximum in
row-major order is the centre of a square box of half-size ``half_size``
clipped to the image, and a visible keypoint is hit when it lies inside the
box, both ends included. Everything runs in torch, vectorised over images
and prototypes and batched over images.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, MetaEstimatorMixin, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_n_features, check_is_fitted, column_or_1d

from .. import _torch
from ..base import _final_step
from ..prototypes._protocol import PrototypeActivationModel

# ImageNet's per-channel standard deviation: the reference adds its noise to
# images normalised by it, so noise of σ there is σ·std in pixel units.
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- the model-free procedure ---------------------------------------------------
def _as_float_tensor(values, device):
    """A float tensor on ``device``: float64 for arrays, a tensor's own float dtype."""
    if _torch.is_tensor(values) and values.is_floating_point():
        return _torch.to_tensor(values, device, values.dtype)
    return _torch.to_tensor(values, device, torch.float64)


def _check_maps(maps, device=None):
    if device is None:
        device = maps.device if _torch.is_tensor(maps) else torch.device("cpu")
    maps = _as_float_tensor(maps, device)
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape (n_images, n_prototypes, height, width), got shape {tuple(maps.shape)}.")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinity.")
    return maps


def _check_part_locs(part_locs, n_images, device):
    """``part_locs`` as a float64 tensor (n, J, 3) with a 0/1 visibility column."""
    part_locs = _as_float_tensor(part_locs, device).to(torch.float64)
    if part_locs.ndim != 3 or part_locs.shape[2] != 3 or part_locs.shape[0] != n_images:
        raise ValueError(
            f"part_locs must have shape (n_images={n_images}, n_parts, 3) holding (x, y, visible); "
            f"got shape {tuple(part_locs.shape)}."
        )
    visible = part_locs[..., 2]
    if not bool(((visible == 0) | (visible == 1)).all()):
        raise ValueError("The visibility column part_locs[..., 2] must hold only 0 and 1.")
    if not bool(torch.isfinite(part_locs[..., :2][visible == 1]).all()):
        raise ValueError("part_locs has NaN or infinite coordinates for a part marked visible.")
    return part_locs


def _check_input_size(input_size):
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}.")
    return height, width


def box_half_sizes(half_size: int | float, input_size: tuple[int, int]) -> int:
    """Half-size of the box in pixels along rows and columns.

    Parameters
    ----------
    half_size : int or float
        An int is pixels; a float in (0, 1) is a fraction of the side
        (the reference's 36 px on a 224 px input is ``36 / 224``).
    input_size : (int, int)
        Height and width of the model input.

    Returns
    -------
    half_rows, half_cols : int

    Examples
    --------
    >>> from sklearn_interp.evaluation import box_half_sizes
    >>> box_half_sizes(36 / 224, (224, 224)), box_half_sizes(36 / 224, (64, 64)), box_half_sizes(5, (64, 64))
    ((36, 36), (10, 10), (5, 5))
    """
    height, width = _check_input_size(input_size)
    if isinstance(half_size, Integral) and not isinstance(half_size, bool):
        if half_size < 0:
            raise ValueError(f"half_size must be >= 0 pixels, got {half_size}.")
        return int(half_size), int(half_size)
    if isinstance(half_size, Real) and 0 < half_size < 1:
        return int(round(half_size * height)), int(round(half_size * width))
    raise ValueError(
        f"half_size must be an int (pixels) or a float in (0, 1) (a fraction of the input side), got {half_size!r}."
    )


def activated_centres(
    maps: ArrayLike | torch.Tensor,
    input_size: tuple[int, int],
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """Where each upsampled activation map peaks.

    Each map is upsampled to ``input_size`` by bicubic interpolation (torch's
    ``align_corners=False``, the equivalent of OpenCV's ``INTER_CUBIC``); the
    peak is the first maximum in row-major order (top-most, then left-most),
    so a flat map peaks at the top-left corner.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (n_images, n_prototypes, h, w)
    input_size : (int, int)
    batch_size : int, default=64
        Images upsampled at once; memory grows with it.

    Returns
    -------
    rows, cols : torch.Tensor of shape (n_images, n_prototypes), int64
        On the device of ``maps`` (CPU for arrays).
    """
    maps = _check_maps(maps)
    height, width = _check_input_size(input_size)
    n_images, n_prototypes = maps.shape[:2]
    flat_peaks = torch.empty((n_images, n_prototypes), dtype=torch.int64, device=maps.device)
    for rows in _torch.batch_slices(n_images, batch_size):
        batch = maps[rows]
        if batch.shape[-2:] != (height, width):
            batch = torch.nn.functional.interpolate(batch, size=(height, width), mode="bicubic", align_corners=False)
        # argmax returns the first maximal index of the flattened map: row-major order.
        flat_peaks[rows] = batch.flatten(2).argmax(dim=2)
    return flat_peaks // width, flat_peaks % width


def _hits_from_centres(rows, cols, part_locs, input_size, half_size):
    """Boolean (n, P, J): visible part j of image i inside prototype p's box."""
    height, width = _check_input_size(input_size)
    half_rows, half_cols = box_half_sizes(half_size, input_size)
    top = (rows - half_rows).clamp(min=0).unsqueeze(2)
    bottom = (rows + half_rows).clamp(max=height).unsqueeze(2)
    left = (cols - half_cols).clamp(min=0).unsqueeze(2)
    right = (cols + half_cols).clamp(max=width).unsqueeze(2)
    x = part_locs[:, None, :, 0]
    y = part_locs[:, None, :, 1]
    visible = part_locs[:, None, :, 2] == 1
    # NaN coordinates of invisible parts compare False, and visible masks them anyway.
    return visible & (top <= y) & (y <= bottom) & (left <= x) & (x <= right)


def part_hits(
    maps: ArrayLike | torch.Tensor,
    part_locs: ArrayLike,
    input_size: tuple[int, int],
    half_size: int | float = 36 / 224,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Which visible parts each prototype's activated box covers, per image.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (n_images, n_prototypes, h, w)
        Activation maps, larger = more activated.
    part_locs : array-like of shape (n_images, n_parts, 3)
        ``(x, y, visible)`` per part in input pixels (x the column); ``x`` and
        ``y`` of invisible parts are ignored (NaN allowed).
    input_size : (int, int)
        Height and width of the input the keypoints refer to.
    half_size : int or float, default=36/224
        Pixels (int) or a fraction of the input side (float in (0, 1)).
    batch_size : int, default=64

    Returns
    -------
    hits : ndarray of shape (n_images, n_prototypes, n_parts), bool
        A tensor on the maps' device when ``maps`` is a tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.evaluation import part_hits
    >>> maps = np.zeros((1, 1, 4, 4)); maps[0, 0, 0, 0] = 1
    >>> part_locs = np.array([[[5.0, 5.0, 1], [60.0, 60.0, 1]]])
    >>> part_hits(maps, part_locs, (64, 64), half_size=10)
    array([[[ True, False]]])
    """
    as_tensor = _torch.is_tensor(maps)
    maps = _check_maps(maps)
    part_locs = _check_part_locs(part_locs, maps.shape[0], maps.device)
    rows, cols = activated_centres(maps, input_size, batch_size=batch_size)
    return _torch.to_output(_hits_from_centres(rows, cols, part_locs, input_size, half_size), as_tensor)


def _membership(y, prototype_class, shared_prototypes):
    """(n, P) float: image i counts for prototype p (its class, or all images if shared)."""
    member = y[:, None] == prototype_class[None, :]
    shared = prototype_class < 0
    if shared_prototypes == "all_images":
        member = member | shared[None, :]
    return member.to(torch.float64), shared


def _host_vector(values):
    return column_or_1d(_torch.as_numpy(values))


def _check_labels(y, prototype_class, n_images, device):
    y = _torch.to_tensor(_host_vector(y), device, torch.int64)
    prototype_class = _torch.to_tensor(_host_vector(prototype_class), device, torch.int64)
    if y.shape[0] != n_images:
        raise ValueError(f"y has {y.shape[0]} labels for {n_images} images.")
    return y, prototype_class


def _part_frequencies(hits, member, visible):
    """f[p, j] = hits of part j over its visible images, among p's images (0/0 → 0)."""
    counts = torch.einsum("np,npj->pj", member, hits.to(torch.float64))
    denominators = member.T @ visible
    # The reference's zero-denominator rule: 0 / 0 is read as 0 / 1.
    return counts / torch.where(denominators == 0, torch.ones_like(denominators), denominators)


def _stable_fractions(hits, hits_noisy, member):
    """Share of each prototype's images whose hit vector the noise left unchanged."""
    same = (hits == hits_noisy).all(dim=2).to(torch.float64)
    n_images = member.sum(dim=0)
    fractions = (member * same).sum(dim=0) / n_images.clamp(min=1)
    return torch.where(n_images > 0, fractions, torch.full_like(fractions, float("nan")))


def _used_prototypes(member, shared, shared_prototypes):
    """Prototypes that enter the mean: all, less shared ones when told to exclude them."""
    used = ~shared if shared_prototypes == "exclude" else torch.ones_like(shared)
    empty = used & (member.sum(dim=0) == 0)
    if bool(empty.any()):
        warnings.warn(
            f"{int(empty.sum())} prototype(s) have no image of their class in this set; they count as "
            "inconsistent (the reference's 0/0 rule) and are left out of the stability mean.",
            UserWarning,
            stacklevel=4,
        )
    if not bool(used.any()):
        raise ValueError("No prototype is scored: every prototype is shared and shared_prototypes='exclude'.")
    return used


def _check_threshold(threshold):
    if not isinstance(threshold, Real) or isinstance(threshold, bool) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}.")


def _consistency_from_hits(hits, y, part_locs, prototype_class, threshold, shared_prototypes):
    member, shared = _membership(y, prototype_class, shared_prototypes)
    used = _used_prototypes(member, shared, shared_prototypes)
    frequencies = _part_frequencies(hits, member, part_locs[..., 2])
    consistent = frequencies.max(dim=1).values >= threshold
    return float(consistent[used].to(torch.float64).mean())


def _stability_from_hits(hits, hits_noisy, y, prototype_class, shared_prototypes):
    member, shared = _membership(y, prototype_class, shared_prototypes)
    used = _used_prototypes(member, shared, shared_prototypes)
    fractions = _stable_fractions(hits, hits_noisy, member)[used]
    if bool(torch.isnan(fractions).all()):
        raise ValueError("No scored prototype has an image of its class in this set.")
    return float(fractions.nanmean())


def consistency_score(
    maps: ArrayLike | torch.Tensor,
    y: ArrayLike,
    part_locs: ArrayLike,
    prototype_class: ArrayLike,
    *,
    input_size: tuple[int, int],
    half_size: int | float = 36 / 224,
    threshold: float = 0.8,
    shared_prototypes: Literal["all_images", "exclude"] = "all_images",
    batch_size: int = 64,
) -> float:
    """Share of prototypes that land on one object part across their class's images.

    For prototype p of class c and part j, f[p, j] is the number of images
    of class c where p's box covers part j over the number where part j is
    visible (0 when it is never visible); p is consistent when
    ``max_j f[p, j] >= threshold``. The score is the unweighted mean over
    prototypes.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (n_images, n_prototypes, h, w)
    y : array-like of shape (n_images,)
        Class index of each image, in the numbering of ``prototype_class``.
    part_locs : array-like of shape (n_images, n_parts, 3)
        ``(x, y, visible)`` in input pixels.
    prototype_class : array-like of shape (n_prototypes,)
        Owning class index of each prototype; -1 marks a shared prototype.
    input_size : (int, int)
    half_size : int or float, default=36/224
    threshold : float in (0, 1], default=0.8
    shared_prototypes : {"all_images", "exclude"}, default="all_images"
        Shared prototypes are scored over all images, or left out.
    batch_size : int, default=64

    Returns
    -------
    score : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.evaluation import consistency_score
    >>> maps = np.zeros((2, 1, 4, 4)); maps[:, 0, 0, 0] = 1
    >>> part_locs = np.array([[[5.0, 5.0, 1]], [[6.0, 4.0, 1]]])
    >>> consistency_score(maps, [0, 0], part_locs, [0], input_size=(64, 64), half_size=10)
    1.0
    """
    _check_threshold(threshold)
    maps = _check_maps(maps)
    part_locs = _check_part_locs(part_locs, maps.shape[0], maps.device)
    y, prototype_class = _check_labels(y, prototype_class, maps.shape[0], maps.device)
    rows, cols = activated_centres(maps, input_size, batch_size=batch_size)
    hits = _hits_from_centres(rows, cols, part_locs, input_size, half_size)
    return _consistency_from_hits(hits, y, part_locs, prototype_class, threshold, shared_prototypes)


def stability_score(
    maps: ArrayLike | torch.Tensor,
    maps_noisy: ArrayLike | torch.Tensor,
    y: ArrayLike,
    part_locs: ArrayLike,
    prototype_class: ArrayLike,
    *,
    input_size: tuple[int, int],
    half_size: int | float = 36 / 224,
    shared_prototypes: Literal["all_images", "exclude"] = "all_images",
    batch_size: int = 64,
) -> float:
    """Share of (prototype, image) pairs whose covered parts survive input noise.

    Image i is stable for prototype p when the parts p's box covers are
    exactly the same on the clean and the perturbed image (covering none on
    both counts as stable). A prototype's stability is the share of its
    class's images that are stable; the score is the mean over prototypes.

    Parameters
    ----------
    maps : array-like or torch.Tensor of shape (n_images, n_prototypes, h, w)
        Maps of the clean images.
    maps_noisy : array-like or torch.Tensor of the same shape
        Maps of the perturbed images.
    y, part_locs, prototype_class, input_size, half_size, shared_prototypes, batch_size
        As in :func:`consistency_score`.

    Returns
    -------
    score : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.evaluation import stability_score
    >>> maps = np.random.default_rng(0).random((3, 2, 4, 4))
    >>> part_locs = np.full((3, 1, 3), 8.0); part_locs[..., 2] = 1
    >>> stability_score(maps, maps, [0, 1, 1], part_locs, [0, 1], input_size=(16, 16))
    1.0
    """
    maps = _check_maps(maps)
    maps_noisy = _check_maps(maps_noisy, maps.device)
    if maps_noisy.shape != maps.shape:
        raise ValueError(f"maps_noisy has shape {tuple(maps_noisy.shape)} but maps has {tuple(maps.shape)}.")
    part_locs = _check_part_locs(part_locs, maps.shape[0], maps.device)
    y, prototype_class = _check_labels(y, prototype_class, maps.shape[0], maps.device)
    hits = _hits_from_centres(*activated_centres(maps, input_size, batch_size=batch_size), part_locs, input_size, half_size)
    hits_noisy = _hits_from_centres(
        *activated_centres(maps_noisy, input_size, batch_size=batch_size), part_locs, input_size, half_size
    )
    return _stability_from_hits(hits, hits_noisy, y, prototype_class, shared_prototypes)


def _part_table(hits, hits_noisy, y, part_locs, prototype_class, *, threshold, shared_prototypes, part_names, class_names):
    member, _ = _membership(y, prototype_class, shared_prototypes)
    frequencies = _torch.to_numpy(_part_frequencies(hits, member, part_locs[..., 2]))
    n_parts = frequencies.shape[1]
    part_names = [f"part_{j}" for j in range(n_parts)] if part_names is None else list(part_names)
    if len(part_names) != n_parts:
        raise ValueError(f"part_names has {len(part_names)} names for {n_parts} parts.")
    owner = _torch.to_numpy(prototype_class)
    best = frequencies.argmax(axis=1)
    table = pd.DataFrame(
        {
            "prototype": np.arange(len(owner)),
            "class": [None if c < 0 else (class_names[c] if class_names is not None else c) for c in owner],
            "n_images": _torch.to_numpy(member.sum(dim=0)).astype(int),
            "best_part": best,
            "best_part_name": [part_names[j] for j in best],
            "best_part_freq": frequencies.max(axis=1),
            "consistent": frequencies.max(axis=1) >= threshold,
        }
    )
    if hits_noisy is not None:
        stable = [_stable_fractions(hits, noisy, member) for noisy in hits_noisy]
        table["stable_frac"] = _torch.to_numpy(torch.stack(stable).mean(dim=0))
    for j, name in enumerate(part_names):
        table[f"freq_{name}"] = frequencies[:, j]
    return table


def prototype_part_table(
    maps: ArrayLike | torch.Tensor,
    y: ArrayLike,
    part_locs: ArrayLike,
    prototype_class: ArrayLike,
    *,
    input_size: tuple[int, int],
    half_size: int | float = 36 / 224,
    threshold: float = 0.8,
    maps_noisy: ArrayLike | torch.Tensor | None = None,
    part_names: Sequence[str] | None = None,
    class_names: Sequence[Any] | None = None,
    shared_prototypes: Literal["all_images", "exclude"] = "all_images",
    batch_size: int = 64,
) -> pd.DataFrame:
    """Per-prototype table: the part each prototype lands on, how often, and its stability.

    Parameters
    ----------
    maps, y, part_locs, prototype_class, input_size, half_size, threshold
        As in :func:`consistency_score`.
    maps_noisy : array-like or torch.Tensor, default=None
        Maps of perturbed images; adds the ``stable_frac`` column.
    part_names : sequence of str, default=None
        Names of the parts; ``part_0``, ``part_1``, ... by default.
    class_names : sequence, default=None
        Label of each class index, for the ``class`` column.
    shared_prototypes : {"all_images", "exclude"}, default="all_images"
    batch_size : int, default=64

    Returns
    -------
    table : pandas.DataFrame
        One row per prototype: ``prototype``, ``class`` (None if shared),
        ``n_images``, ``best_part``, ``best_part_name``, ``best_part_freq``,
        ``consistent``, ``stable_frac`` (with ``maps_noisy``) and a
        ``freq_<part>`` column per part.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.evaluation import prototype_part_table
    >>> maps = np.zeros((2, 1, 4, 4)); maps[:, 0, 3, 3] = 1
    >>> part_locs = np.array([[[5.0, 5.0, 1], [60.0, 60.0, 1]]] * 2)
    >>> table = prototype_part_table(maps, [0, 0], part_locs, [0], input_size=(64, 64),
    ...                              half_size=10, part_names=["beak", "tail"])
    >>> table[["best_part_name", "best_part_freq", "consistent"]]
      best_part_name  best_part_freq  consistent
    0           tail             1.0        True
    """
    _check_threshold(threshold)
    maps = _check_maps(maps)
    part_locs = _check_part_locs(part_locs, maps.shape[0], maps.device)
    y, prototype_class = _check_labels(y, prototype_class, maps.shape[0], maps.device)
    hits = _hits_from_centres(*activated_centres(maps, input_size, batch_size=batch_size), part_locs, input_size, half_size)
    hits_noisy = None
    if maps_noisy is not None:
        maps_noisy = _check_maps(maps_noisy, maps.device)
        hits_noisy = [
            _hits_from_centres(*activated_centres(maps_noisy, input_size, batch_size=batch_size), part_locs, input_size, half_size)
        ]
    return _part_table(
        hits,
        hits_noisy,
        y,
        part_locs,
        prototype_class,
        threshold=threshold,
        shared_prototypes=shared_prototypes,
        part_names=part_names,
        class_names=class_names,
    )


# -- scoring a model --------------------------------------------------------------
def _protocol_model(estimator, X):
    """The prototype model at the end of ``estimator`` and ``X`` as that model sees it."""
    estimator, X = _final_step(estimator, X)
    if not isinstance(estimator, PrototypeActivationModel):
        raise TypeError(
            f"{type(estimator).__name__} does not offer the part-prototype protocol: it needs classes_, "
            "prototype_class_ and prototype_activation_maps(X) (see sklearn_interp.prototypes."
            "PrototypeActivationModel; TorchPrototypeAdapter wraps a torch module)."
        )
    return estimator, X


def _input_size(model, X):
    if getattr(X, "ndim", None) == 4:
        return tuple(int(v) for v in X.shape[-2:])
    image_shape = getattr(model, "image_shape_", None)
    if image_shape is None:
        raise ValueError(
            "The input size the keypoints refer to is unknown: give X as images (n, C, H, W) or use a model "
            "with an image_shape_ attribute."
        )
    return tuple(int(v) for v in image_shape[-2:])


def _class_indices(model, y):
    y = _host_vector(y)
    classes = np.asarray(model.classes_)
    unknown = np.setdiff1d(y, classes)
    if unknown.size:
        raise ValueError(f"y has labels {unknown.tolist()} that are not among the model's classes_.")
    # classes_ of a foreign model need not be sorted, so no searchsorted.
    position = {label: index for index, label in enumerate(classes.tolist())}
    return np.array([position[label] for label in y.tolist()], dtype=np.int64)


def _perturb(X, noise_std, noise_clip, noise_space, generator):
    """``X`` plus elementwise Gaussian noise, clipped, in the units ``noise_space`` names."""
    noise = (noise_std * _torch.randn(X.shape, generator, device=X.device, dtype=X.dtype)).clamp(
        -noise_clip, noise_clip
    )
    if noise_space == "pixel":
        if X.ndim != 4 or X.shape[1] != 3:
            raise ValueError(
                f"noise_space='pixel' needs RGB images of shape (n, 3, H, W), got shape {tuple(X.shape)}; "
                "use noise_space='model_input' to add the noise in the units of X as given."
            )
        noise = noise * torch.tensor(IMAGENET_STD, device=X.device, dtype=X.dtype)[None, :, None, None]
    return X + noise


class _ModelHits:
    """Hit tensors of one model on one evaluation set, clean and perturbed."""

    def __init__(self, estimator, X, y, part_locs, *, half_size, batch_size, device):
        self.model, X_model = _protocol_model(estimator, X)
        if not hasattr(X_model, "shape"):
            X_model = np.asarray(X_model)
        self.device = device
        self.dtype = X_model.dtype if _torch.is_tensor(X_model) else torch.float32
        self.X = _torch.to_tensor(X_model, device, self.dtype) if _torch.is_tensor(X_model) else X_model
        self.input_size = _input_size(self.model, X_model)
        self.part_locs = _check_part_locs(part_locs, X_model.shape[0], device)
        self.y = None  # transform needs no labels
        if y is not None:
            self.y = _torch.to_tensor(_class_indices(self.model, y), device, torch.int64)
            if self.y.shape[0] != X_model.shape[0]:
                raise ValueError(f"y has {self.y.shape[0]} labels for {X_model.shape[0]} images.")
        self.prototype_class = _torch.to_tensor(np.asarray(self.model.prototype_class_), device, torch.int64)
        self.half_size, self.batch_size = half_size, batch_size
        box_half_sizes(half_size, self.input_size)  # fail early on a bad half_size

    def hits(self, perturb=None):
        batches = []
        for rows in _torch.batch_slices(self.X.shape[0], self.batch_size):
            X_batch = self.X[rows]
            if perturb is not None:
                X_batch = perturb(_torch.to_tensor(X_batch, self.device, self.dtype))
            maps = _check_maps(self.model.prototype_activation_maps(X_batch), self.device)
            if maps.shape[1] != self.prototype_class.shape[0]:
                raise ValueError(
                    f"The model gives {maps.shape[1]} maps per image but prototype_class_ has "
                    f"{self.prototype_class.shape[0]} entries."
                )
            centres = activated_centres(maps, self.input_size, batch_size=self.batch_size)
            batches.append(_hits_from_centres(*centres, self.part_locs[rows], self.input_size, self.half_size))
        return torch.cat(batches)

    def noisy_hits(self, *, noise_std, noise_clip, noise_space, n_repeats, random_state):
        generator = _torch.make_generator(random_state)

        def perturb(X_batch):
            return _perturb(X_batch, noise_std, noise_clip, noise_space, generator)

        return [self.hits(perturb) for _ in range(n_repeats)]


class MissingPartLocsError(BaseException):
    """Part keypoints were needed and not given, typically because metadata routing is off.

    Derived from ``BaseException`` on purpose: scikit-learn's searches and
    ``cross_validate`` turn every ``Exception`` raised while scoring into a
    NaN score and a "Scoring failed" warning, so a search run without
    ``sklearn.set_config(enable_metadata_routing=True)`` would report NaN
    for every candidate. Without keypoints no candidate can be scored at
    all, so the error stops the search and names the fix.
    """


def _missing_part_locs(what):
    return MissingPartLocsError(
        f"part_locs (n_images, n_parts, 3) is required to {what}, and none was given. In GridSearchCV, "
        "cross_validate or a Pipeline, turn on metadata routing (sklearn.set_config(enable_metadata_routing=True)) "
        "and pass part_locs=... to fit; called directly, pass it as the fourth argument."
    )


class _PartScorer:
    """A scorer ``(estimator, X, y, part_locs)`` whose part keypoints arrive by metadata routing."""

    def get_metadata_routing(self):
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="part_locs", alias=True)
        return request

    def __call__(self, estimator, X, y_true, part_locs=None):
        if part_locs is None:
            raise _missing_part_locs(f"compute {type(self).__name__}")
        model_hits = _ModelHits(
            estimator,
            X,
            y_true,
            part_locs,
            half_size=self.half_size,
            batch_size=self.batch_size,
            device=_torch.resolve_device(self.device),
        )
        score = self._score(model_hits)
        return 100 * score if self.as_percent else score

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class PartConsistencyScorer(_PartScorer):
    """Scorer of part consistency, for ``GridSearchCV(scoring=...)`` and ``cross_validate``.

    Call it as ``scorer(estimator, X, y, part_locs)``: the estimator (or a
    Pipeline ending in one) must offer the part-prototype protocol. The
    keypoints travel as sample-aligned metadata, so scikit-learn's metadata
    routing must be on. Named after the part (not Quantus' explanation
    ``Consistency`` metric, which measures something else).

    Parameters
    ----------
    half_size : int or float, default=36/224
        Box half-size in pixels (int) or as a fraction of the input side.
    threshold : float in (0, 1], default=0.8
    shared_prototypes : {"all_images", "exclude"}, default="all_images"
    as_percent : bool, default=False
        Report ×100, as the paper does.
    batch_size : int, default=64
    device : str or torch.device, default="auto"
        Where the maps are upsampled.

    See Also
    --------
    ConsistencyScorer : The same score with a per-prototype table and plots.
    consistency_score : The model-free function.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.model_selection import cross_validate
    >>> from sklearn_interp.datasets import make_part_objects
    >>> from sklearn_interp.evaluation import consistency_scorer
    >>> from sklearn_interp.prototypes import PartPrototypeClassifier
    >>> X, y, part_locs = make_part_objects(60, image_size=32, random_state=0)
    >>> clf = PartPrototypeClassifier(channels=(8, 16, 16), prototypes_per_class=2, epochs=1,
    ...                               random_state=0, device="cpu")
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     result = cross_validate(clf, X, y, cv=2, params={"part_locs": part_locs},
    ...                             scoring={"accuracy": "accuracy", "consistency": consistency_scorer})
    >>> result["test_consistency"].shape
    (2,)
    """

    def __init__(
        self,
        *,
        half_size: int | float = 36 / 224,
        threshold: float = 0.8,
        shared_prototypes: Literal["all_images", "exclude"] = "all_images",
        as_percent: bool = False,
        batch_size: int = 64,
        device: str | torch.device = "auto",
    ) -> None:
        self.half_size = half_size
        self.threshold = threshold
        self.shared_prototypes = shared_prototypes
        self.as_percent = as_percent
        self.batch_size = batch_size
        self.device = device

    def _from_hits(self, model_hits, hits):
        _check_threshold(self.threshold)
        return _consistency_from_hits(
            hits, model_hits.y, model_hits.part_locs, model_hits.prototype_class, self.threshold,
            self.shared_prototypes,
        )

    def _score(self, model_hits):
        return self._from_hits(model_hits, model_hits.hits())


class PartStabilityScorer(_PartScorer):
    """Scorer of part stability under input noise, for ``GridSearchCV(scoring=...)``.

    Parameters
    ----------
    half_size : int or float, default=36/224
    noise_std : float, default=0.2
        Standard deviation of the Gaussian noise.
    noise_clip : float, default=0.25
        Each noise value is clipped to ±``noise_clip``.
    noise_space : {"pixel", "model_input"}, default="pixel"
        ``"pixel"``: X holds RGB images in [0, 1] and the noise is drawn in
        ImageNet-normalised units, as the reference adds it (so σ = 0.2 is
        about 0.045 in pixel units); ``"model_input"``: the noise is added
        to X in its own units.
    n_repeats : int, default=1
        Noise draws averaged.
    random_state : int, RandomState instance or None, default=None
    shared_prototypes : {"all_images", "exclude"}, default="all_images"
    as_percent : bool, default=False
    batch_size : int, default=64
    device : str or torch.device, default="auto"

    See Also
    --------
    ConsistencyScorer : Both scores with a per-prototype table and plots.
    stability_score : The model-free function.
    """

    def __init__(
        self,
        *,
        half_size: int | float = 36 / 224,
        noise_std: float = 0.2,
        noise_clip: float = 0.25,
        noise_space: Literal["pixel", "model_input"] = "pixel",
        n_repeats: int = 1,
        random_state: int | np.random.RandomState | None = None,
        shared_prototypes: Literal["all_images", "exclude"] = "all_images",
        as_percent: bool = False,
        batch_size: int = 64,
        device: str | torch.device = "auto",
    ) -> None:
        self.half_size = half_size
        self.noise_std = noise_std
        self.noise_clip = noise_clip
        self.noise_space = noise_space
        self.n_repeats = n_repeats
        self.random_state = random_state
        self.shared_prototypes = shared_prototypes
        self.as_percent = as_percent
        self.batch_size = batch_size
        self.device = device

    def _repeats(self, model_hits, hits):
        """The perturbed hits of every repeat and the stability each gives."""
        noisy = model_hits.noisy_hits(
            noise_std=self.noise_std, noise_clip=self.noise_clip, noise_space=self.noise_space,
            n_repeats=self.n_repeats, random_state=self.random_state,
        )
        stabilities = [
            _stability_from_hits(hits, hits_noisy, model_hits.y, model_hits.prototype_class, self.shared_prototypes)
            for hits_noisy in noisy
        ]
        return noisy, stabilities

    def _score(self, model_hits):
        return float(np.mean(self._repeats(model_hits, model_hits.hits())[1]))


#: Part consistency with the reference's geometry (half-size 36/224, threshold 0.8).
consistency_scorer = PartConsistencyScorer()
#: Part stability with the reference's noise (σ 0.2, clip 0.25, ImageNet units), seeded.
stability_scorer = PartStabilityScorer(random_state=0)


def _estimator_has(attribute):
    def check(self):
        return hasattr(self.estimator_ if hasattr(self, "estimator_") else self.estimator, attribute)

    return check


class ConsistencyScorer(TransformerMixin, MetaEstimatorMixin, BaseEstimator):
    """Consistency and stability of a part-prototype model's explanations (Huang et al., 2023).

    Wraps a part-prototype classifier (anything with ``classes_``,
    ``prototype_class_`` and ``prototype_activation_maps``; see
    :class:`~sklearn_interp.prototypes.PrototypeActivationModel`). ``fit``
    fits it (a ``FrozenEstimator`` is taken as it is); ``score`` is the
    part consistency of its prototypes on part-annotated images,
    ``stability_score`` their stability under small input noise, and
    ``evaluate`` the per-prototype table behind both. ``transform`` gives
    the hits behind them, image by image: which visible parts fall in each
    prototype's activated box.

    For each prototype p of class c, the activated box on an image is the
    square of half-size ``half_size`` around the peak of p's bicubically
    upsampled activation map. p is consistent when one part lies in its box
    in at least a share ``threshold`` of the class-c images where that part
    is visible; consistency is the share of consistent prototypes. An image
    is stable for p when Gaussian noise (``noise_std``, clipped at
    ``noise_clip``) leaves the set of parts in the box unchanged; stability
    is the mean over prototypes of the share of stable images. The box
    should be at least one feature cell wide: a perfectly placed prototype
    on a 7 × 7 grid at 224 px scores 0.00, 0.70 and 1.00 with half-sizes of
    8, 18 and 36 px.

    Parameters
    ----------
    estimator : estimator object
        A part-prototype classifier, or a Pipeline ending in one.
    half_size : int or float, default=36/224
        Box half-size in pixels (int) or as a fraction of the input side
        (float in (0, 1)); the default is the reference's 36 px at 224 px.
    threshold : float in (0, 1], default=0.8
    noise_std : float, default=0.2
    noise_clip : float, default=0.25
    noise_space : {"pixel", "model_input"}, default="pixel"
        ``"pixel"``: X holds RGB images in [0, 1] and the noise is drawn in
        ImageNet-normalised units, as the reference adds it;
        ``"model_input"``: in the units of X as given.
    n_repeats : int, default=1
        Noise draws for the stability score (mean reported; the spread in
        ``summary_``).
    shared_prototypes : {"all_images", "exclude"}, default="all_images"
        Prototypes of no class (``prototype_class_ == -1``) are scored over
        all images, or left out.
    part_names : sequence of str or None, default=None
        Names of the parts, for the tables and plots.
    batch_size : int, default=64
        Images per batch when computing and upsampling maps.
    device : str or torch.device, default="auto"
        Where the maps are upsampled and compared.
    random_state : int, RandomState instance or None, default=None
        Seeds the stability noise (the reference's is unseeded).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted model.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
        The wrapped model's, when it has one.
    n_prototypes_ : int
        Prototypes of the wrapped model.
    n_parts_ : int or None
        Parts per image: from ``part_names``, or from the ``part_locs``
        given to ``fit``; ``None`` when neither was given (then
        :meth:`get_feature_names_out` needs them).
    results_ : pandas.DataFrame
        Set by :meth:`evaluate`: one row per prototype (``prototype``,
        ``class``, ``n_images``, ``best_part``, ``best_part_name``,
        ``best_part_freq``, ``consistent``, ``stable_frac`` and
        ``freq_<part>`` per part).
    summary_ : pandas.Series
        Set by :meth:`evaluate`: accuracy, consistency, stability (and its
        standard deviation over repeats) with the geometry and noise they
        were measured at.

    See Also
    --------
    PartConsistencyScorer, PartStabilityScorer : The same scores as ``scoring=`` objects.
    sklearn_interp.prototypes.PartPrototypeClassifier : A part-prototype network to score.

    References
    ----------
    .. [1] Q. Huang, M. Xue, W. Huang, H. Zhang, J. Song, Y. Jing and M. Song,
       "Evaluation and Improvement of Interpretability for Self-Explainable
       Part-Prototype Networks", ICCV 2023.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_part_objects
    >>> from sklearn_interp.evaluation import ConsistencyScorer
    >>> from sklearn_interp.prototypes import PartPrototypeClassifier
    >>> X, y, part_locs = make_part_objects(80, image_size=32, random_state=0)
    >>> clf = PartPrototypeClassifier(channels=(8, 16, 16), prototypes_per_class=2, epochs=2,
    ...                               random_state=0, device="cpu")
    >>> scorer = ConsistencyScorer(clf, random_state=0, device="cpu").fit(X, y)
    >>> 0 <= scorer.score(X, y, part_locs) <= 1
    True
    >>> scorer.evaluate(X, y, part_locs).shape[0]
    16
    """

    _parameter_constraints: dict = {
        "estimator": [object],
        "half_size": [Interval(Integral, 0, None, closed="left"), Interval(Real, 0, 1, closed="neither")],
        "threshold": [Interval(Real, 0, 1, closed="right")],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "noise_clip": [Interval(Real, 0, None, closed="left")],
        "noise_space": [StrOptions({"pixel", "model_input"})],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "shared_prototypes": [StrOptions({"all_images", "exclude"})],
        "part_names": ["array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator: BaseEstimator,
        *,
        half_size: int | float = 36 / 224,
        threshold: float = 0.8,
        noise_std: float = 0.2,
        noise_clip: float = 0.25,
        noise_space: Literal["pixel", "model_input"] = "pixel",
        n_repeats: int = 1,
        shared_prototypes: Literal["all_images", "exclude"] = "all_images",
        part_names: Sequence[str] | None = None,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.estimator = estimator
        self.half_size = half_size
        self.threshold = threshold
        self.noise_std = noise_std
        self.noise_clip = noise_clip
        self.noise_space = noise_space
        self.n_repeats = n_repeats
        self.shared_prototypes = shared_prototypes
        self.part_names = part_names
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        part_locs: ArrayLike | None = None,
        **fit_params: Any,
    ) -> ConsistencyScorer:
        """Fit the wrapped model (a ``FrozenEstimator`` stays as it is).

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3), default=None
            Not used for fitting; accepted so that one routed array can feed
            both ``fit`` and ``score``.
        **fit_params : dict
            Passed to the model's ``fit``.

        Returns
        -------
        self : object
        """
        _torch.resolve_device(self.device)
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        model, _ = _protocol_model(self.estimator_, X[:1] if hasattr(X, "shape") else X)
        self.classes_ = np.asarray(model.classes_)
        self.n_prototypes_ = len(model.prototype_class_)
        self.n_parts_ = None
        if self.part_names is not None:
            self.n_parts_ = len(self.part_names)
        elif part_locs is not None:
            self.n_parts_ = int(np.shape(part_locs)[1])
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def _scorers(self):
        common = {"half_size": self.half_size, "shared_prototypes": self.shared_prototypes,
                  "batch_size": self.batch_size, "device": self.device}
        consistency = PartConsistencyScorer(threshold=self.threshold, **common)
        stability = PartStabilityScorer(
            noise_std=self.noise_std, noise_clip=self.noise_clip, noise_space=self.noise_space,
            n_repeats=self.n_repeats, random_state=self.random_state, **common,
        )
        return consistency, stability

    def _model_hits(self, X, y, part_locs, what="score part prototypes"):
        check_is_fitted(self)
        if hasattr(self, "n_features_in_") and hasattr(X, "shape") and len(X.shape) > 1:
            _check_n_features(self, X, reset=False)
        if part_locs is None:
            raise _missing_part_locs(what)
        return _ModelHits(self.estimator_, X, y, part_locs, half_size=self.half_size, batch_size=self.batch_size,
                          device=_torch.resolve_device(self.device))

    def score(self, X: ArrayLike, y: ArrayLike, part_locs: ArrayLike | None = None) -> float:
        """Part consistency of the fitted model's prototypes on these images.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
            Evaluation images (the paper uses the test split only).
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3)
            ``(x, y, visible)`` in input pixels.

        Returns
        -------
        consistency : float in [0, 1]
        """
        return self._scorers()[0]._score(self._model_hits(X, y, part_locs))

    def stability_score(
        self,
        X: ArrayLike,
        y: ArrayLike,
        part_locs: ArrayLike | None = None,
    ) -> float:
        """Part stability of the fitted model's prototypes under input noise.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3)

        Returns
        -------
        stability : float in [0, 1]
            Mean over ``n_repeats`` noise draws.
        """
        return self._scorers()[1]._score(self._model_hits(X, y, part_locs))

    def evaluate(self, X: ArrayLike, y: ArrayLike, part_locs: ArrayLike) -> pd.DataFrame:
        """Both scores and the per-prototype table; sets ``results_`` and ``summary_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3)

        Returns
        -------
        results : pandas.DataFrame
            ``results_``.
        """
        model_hits = self._model_hits(X, y, part_locs)
        consistency_scorer, stability_scorer = self._scorers()
        hits = model_hits.hits()
        consistency = consistency_scorer._from_hits(model_hits, hits)
        noisy, stabilities = stability_scorer._repeats(model_hits, hits)
        self.results_ = _part_table(
            hits, noisy, model_hits.y, model_hits.part_locs, model_hits.prototype_class, threshold=self.threshold,
            shared_prototypes=self.shared_prototypes, part_names=self.part_names, class_names=self.classes_,
        )
        half_rows, _ = box_half_sizes(self.half_size, model_hits.input_size)
        accuracy = float(np.mean(np.asarray(self.estimator_.predict(X)) == column_or_1d(np.asarray(y))))
        self.summary_ = pd.Series(
            {
                "model": type(model_hits.model).__name__,
                "accuracy": accuracy,
                "consistency": consistency,
                "stability": float(np.mean(stabilities)),
                "stability_std": float(np.std(stabilities)),
                "half_size_px": half_rows,
                "input_size": model_hits.input_size,
                "threshold": self.threshold,
                "noise_std": self.noise_std,
                "noise_clip": self.noise_clip,
                "noise_space": self.noise_space,
                "n_prototypes": int(model_hits.prototype_class.shape[0]),
            }
        )
        return self.results_

    def transform(
        self,
        X: ArrayLike,
        part_locs: ArrayLike | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Which visible parts lie in each prototype's activated box, image by image.

        The hits behind :meth:`score` and :meth:`stability_score`: for image
        ``i``, prototype ``p`` and part ``j``, 1 when part ``j`` is visible
        in image ``i`` and lies in the box of half-size ``half_size`` around
        the peak of ``p``'s upsampled activation map, else 0. The columns
        run prototype-major (column ``p · n_parts + j``; names
        ``prototype{p}_{part}`` from :meth:`get_feature_names_out`). The
        consistency of prototype ``p`` of class ``c`` is then, for the
        class-``c`` images, the largest over parts of (hits of the part) /
        (images where it is visible), at least ``threshold``; ``score`` is
        the share of consistent prototypes (``tests/test_consistency.py``
        recomputes it so).

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        part_locs : array-like of shape (n_samples, n_parts, 3)
            ``(x, y, visible)`` in input pixels; required (in a Pipeline,
            routed with ``set_transform_request(part_locs=True)``).

        Returns
        -------
        hits : ndarray or torch.Tensor of shape (n_samples, n_prototypes * n_parts), float
            A tensor on the scorer's device for a tensor ``X``.
        """
        model_hits = self._model_hits(X, None, part_locs, what="find the parts in each prototype's box")
        if self.n_parts_ is not None and model_hits.part_locs.shape[1] != self.n_parts_:
            raise ValueError(f"part_locs has {model_hits.part_locs.shape[1]} parts per image; fit saw {self.n_parts_}.")
        hits = model_hits.hits()
        flat = hits.reshape(hits.shape[0], -1).to(model_hits.dtype)
        return _torch.to_output(flat, _torch.is_tensor(X))

    def fit_transform(
        self,
        X: ArrayLike,
        y: ArrayLike,
        part_locs: ArrayLike | None = None,
        **fit_params: Any,
    ) -> np.ndarray:
        """``fit(X, y, part_locs, **fit_params)``, then :meth:`transform` of the same images.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3)
        **fit_params : dict
            Passed to the model's ``fit``.

        Returns
        -------
        hits : ndarray of shape (n_samples, n_prototypes * n_parts)
        """
        return self.fit(X, y, part_locs=part_locs, **fit_params).transform(X, part_locs=part_locs)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Names of :meth:`transform`'s columns: ``prototype{p}_{part}``, prototype-major.

        Parameters
        ----------
        input_features : Ignored
            The input is images.

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (n_prototypes * n_parts,)
        """
        check_is_fitted(self)
        if self.n_parts_ is None:
            raise ValueError(
                "The number of parts is unknown: give part_names to the constructor or part_locs to fit."
            )
        names = [f"part_{j}" for j in range(self.n_parts_)] if self.part_names is None else list(self.part_names)
        return np.asarray([f"prototype{p}_{name}" for p in range(self.n_prototypes_) for name in names], dtype=object)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """The wrapped model's predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """The wrapped model's class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W) or (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    def plot(
        self,
        X: ArrayLike,
        y: ArrayLike,
        part_locs: ArrayLike | None = None,
        *,
        n_prototypes: int = 4,
        n_images: int = 4,
        prototypes: Sequence[int] | None = None,
        axes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Grid of prototypes (rows) with their activated boxes on images of their class.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W)
            RGB (or grey) images in [0, 1].
        y : array-like of shape (n_samples,)
        part_locs : array-like of shape (n_samples, n_parts, 3), default=None
            Drawn as dots: filled when inside the box, hollow otherwise.
        n_prototypes : int, default=4
            Rows, one prototype each (of different classes where possible);
            ignored when ``prototypes`` is given.
        n_images : int, default=4
            Columns: the first images of the prototype's class.
        prototypes : sequence of int, default=None
            Which prototypes to show.
        axes : ndarray of matplotlib Axes of shape (rows, n_images), default=None

        Returns
        -------
        axes : ndarray of matplotlib Axes
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        check_is_fitted(self)
        model, X_model = _protocol_model(self.estimator_, X)
        images = _torch.as_numpy(X)
        if images.ndim != 4:
            raise ValueError(f"plot needs images of shape (n, C, H, W), got shape {images.shape}.")
        y_index = _class_indices(model, y)
        owner = np.asarray(model.prototype_class_)
        if prototypes is None:
            # The first prototype of each class, then the second of each, and so on.
            rank_in_class = np.array([np.count_nonzero(owner[:p] == owner[p]) for p in range(len(owner))])
            prototypes = np.lexsort((owner, rank_in_class))[:n_prototypes]
        prototypes = [int(p) for p in prototypes]
        if axes is None:
            _, axes = plt.subplots(len(prototypes), n_images, figsize=(1.6 * n_images, 1.6 * len(prototypes)),
                                   squeeze=False)
        height, width = images.shape[-2:]
        half_rows, half_cols = box_half_sizes(self.half_size, (height, width))
        for row, p in zip(axes, prototypes):
            shown = np.flatnonzero(y_index == owner[p])[:n_images] if owner[p] >= 0 else np.arange(n_images)
            maps = model.prototype_activation_maps(X_model[shown] if not _torch.is_tensor(X_model) else X_model[shown])
            maps = _check_maps(maps)[:, [p]]
            rows, cols = activated_centres(maps, (height, width))
            for ax, i, r, c in zip(row, shown, rows[:, 0].tolist(), cols[:, 0].tolist()):
                picture = images[i].transpose(1, 2, 0)
                ax.imshow(picture[..., 0] if picture.shape[2] == 1 else np.clip(picture, 0, 1), cmap="gray")
                top, left = max(0, r - half_rows), max(0, c - half_cols)
                bottom, right = min(height, r + half_rows), min(width, c + half_cols)
                ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, color="yellow", lw=1.5))
                if part_locs is not None:
                    locs = np.asarray(part_locs)[i]
                    for x_part, y_part, visible in locs:
                        if visible:
                            inside = top <= y_part <= bottom and left <= x_part <= right
                            ax.plot(x_part, y_part, "o", ms=3, mec="white", mfc="white" if inside else "none")
            for ax in row:
                # Boxes reach the clipped edge at width (not width - 1): keep the image's frame.
                ax.set_xlim(-0.5, width - 0.5)
                ax.set_ylim(height - 0.5, -0.5)
                ax.set_xticks([])
                ax.set_yticks([])
            label = self.classes_[owner[p]] if owner[p] >= 0 else "shared"
            row[0].set_ylabel(f"p{p} ({label})", fontsize=8)
        return axes

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = _torch.device_type(self.device) != "cpu"
        return tags
