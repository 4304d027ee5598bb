"""Synthetic activations built from a known hierarchy of features."""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch, check_random_state


def make_hierarchical_features(
    n_samples: int = 5000,
    *,
    n_features: int = 64,
    n_parents: int = 8,
    n_children: int = 3,
    parent_child_cosine: float = 0.6,
    n_active_parents: int = 2,
    child_probability: float = 0.8,
    noise: float = 0.01,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Sparse sums of parent features and their correlated children.

    Each parent ``P_i`` has ``n_children`` children
    ``C_ij = c·P_i + √(1 − c²)·U_ij`` (``c = parent_child_cosine``), where
    the parents and the ``U_ij`` are orthonormal. A child is correlated with
    its parent and with its siblings (cosine ``c²``), and becomes orthogonal
    to them once the parent direction is explained away: the conditionally
    orthogonal features of Costa et al. (2025), which one-shot sparse
    encoders confuse. Every row activates ``n_active_parents`` parents with
    coefficients in [1, 2) and, with probability ``child_probability``
    each, one child of every active parent, also with a coefficient in
    [1, 2); Gaussian noise of standard deviation ``noise`` is added to every
    feature.

    Parameters
    ----------
    n_samples : int, default=5000
    n_features : int, default=64
        Ambient dimension; at least ``n_parents · (1 + n_children)``.
    n_parents : int, default=8
    n_children : int, default=3
        Children per parent.
    parent_child_cosine : float in [0, 1), default=0.6
    n_active_parents : int, default=2
    child_probability : float in [0, 1], default=0.8
    noise : float, default=0.01
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : Bunch
        ``data``: ndarray (n_samples, n_features); ``dictionary``: ndarray
        (n_atoms, n_features), unit rows, parents first then the children
        of parent 0, 1, ...; ``codes``: ndarray (n_samples, n_atoms), the
        planted coefficients (``data ≈ codes @ dictionary``);
        ``parent_of``: int array (n_atoms,), each atom's parent (a parent
        is its own); ``is_parent``: bool array (n_atoms,).

    References
    ----------
    .. [1] V. Costa, T. Fel, E. S. Lubana, B. Tolooshams, D. Ba, "From Flat
       to Hierarchical: Extracting Sparse Representations with Matching
       Pursuit", NeurIPS 2025, arXiv:2506.03093.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_hierarchical_features
    >>> data = make_hierarchical_features(100, random_state=0)
    >>> data.data.shape, data.dictionary.shape
    ((100, 64), (32, 64))
    >>> round(float(data.dictionary[0] @ data.dictionary[8]), 2)  # parent 0 and its first child
    0.6
    """
    n_atoms = n_parents * (1 + n_children)
    if n_features < n_atoms:
        raise ValueError(
            f"n_features={n_features} is smaller than n_parents * (1 + n_children) = {n_atoms}; "
            "the parents and child directions need that many orthogonal dimensions."
        )
    if not 0 <= parent_child_cosine < 1:
        raise ValueError(f"parent_child_cosine must be in [0, 1), got {parent_child_cosine!r}.")
    if not 1 <= n_active_parents <= n_parents:
        raise ValueError(f"n_active_parents must be in [1, n_parents={n_parents}], got {n_active_parents!r}.")
    if not 0 <= child_probability <= 1:
        raise ValueError(f"child_probability must be in [0, 1], got {child_probability!r}.")
    rng = check_random_state(random_state)
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, n_atoms)))
    parents = basis[:, :n_parents].T
    own = basis[:, n_parents:].T  # U_ij, row i * n_children + j
    parent_of = np.concatenate([np.arange(n_parents), np.repeat(np.arange(n_parents), n_children)])
    children = parent_child_cosine * parents[parent_of[n_parents:]] + np.sqrt(1 - parent_child_cosine**2) * own
    dictionary = np.vstack([parents, children])

    codes = np.zeros((n_samples, n_atoms))
    rows = np.arange(n_samples)[:, None]
    active = np.argsort(rng.random_sample((n_samples, n_parents)), axis=1)[:, :n_active_parents]
    child = n_parents + active * n_children + rng.randint(n_children, size=active.shape)
    has_child = rng.random_sample(active.shape) < child_probability
    codes[rows, np.where(has_child, child, active)] = rng.uniform(1, 2, size=active.shape)
    X = codes @ dictionary + noise * rng.standard_normal((n_samples, n_features))
    return Bunch(
        data=X,
        dictionary=dictionary,
        codes=codes,
        parent_of=parent_of,
        is_parent=np.arange(n_atoms) < n_parents,
    )
