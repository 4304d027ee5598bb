"""Shifted copies of a test set: the covariate-shifted and far-OOD inputs of selective-prediction benchmarks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_array, check_random_state


def permute_features(
    X: ArrayLike,
    *,
    random_state: int | np.random.RandomState | None = None,
) -> np.ndarray:
    """Far-out-of-distribution copy of ``X``: each row's features in its own random order.

    The values of a row stay the same, so simple statistics (mean, norm)
    match the originals, while the structure a model learned is gone; the
    SDM papers use the same construction with shuffled words (which would
    not work for mean-pooled sentence embeddings: a mean ignores word order).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X_permuted : ndarray of shape (n_samples, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.datasets import permute_features
    >>> X = np.arange(6.0).reshape(2, 3)
    >>> np.sort(permute_features(X, random_state=0), axis=1)
    array([[0., 1., 2.],
           [3., 4., 5.]])
    """
    X = check_array(X)
    rng = check_random_state(random_state)
    order = np.argsort(rng.random_sample(X.shape), axis=1)
    return np.take_along_axis(X, order, axis=1)


def truncate_words(texts: Sequence[str], *, fraction: float = 0.5) -> Sequence[str]:
    """Covariate-shifted copy of ``texts``: only the first ``fraction`` of each text's words.

    Parameters
    ----------
    texts : sequence of str
    fraction : float in (0, 1], default=0.5

    Returns
    -------
    truncated : list of str

    Examples
    --------
    >>> from sklearn_interp.datasets import truncate_words
    >>> truncate_words(["open the file now"])
    ['open the']
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    return [" ".join(words[: max(1, int(np.ceil(fraction * len(words))))]) for words in (str(t).split() for t in texts)]


def translate_images(
    X: ArrayLike,
    image_shape: tuple[int, ...],
    *,
    shift: tuple[int, ...] = (0, 1),
) -> np.ndarray:
    """Covariate-shifted copy of flattened images: moved by whole pixels, zero-filled.

    Parameters
    ----------
    X : array-like of shape (n_samples, height * width)
    image_shape : tuple of int
        ``(height, width)``.
    shift : tuple of int, default=(0, 1)
        Pixels down and right (negative: up and left).

    Returns
    -------
    X_shifted : ndarray of shape (n_samples, height * width)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.datasets import translate_images
    >>> translate_images(np.arange(4.0).reshape(1, 4), (2, 2))
    array([[0., 0., 0., 2.]])
    """
    X = check_array(X)
    height, width = image_shape
    if X.shape[1] != height * width:
        raise ValueError(f"X has {X.shape[1]} features, not height × width = {height * width}.")
    images = X.reshape(-1, height, width)
    moved = np.zeros_like(images)
    down, right = shift
    source = (slice(max(0, -down), height - max(0, down)), slice(max(0, -right), width - max(0, right)))
    target = (slice(max(0, down), height - max(0, -down)), slice(max(0, right), width - max(0, -right)))
    moved[:, target[0], target[1]] = images[:, source[0], source[1]]
    return moved.reshape(X.shape[0], -1)
