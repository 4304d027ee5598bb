"""Hypothesis strategies for property-testing pipelines built on sklearn_interp.

The library's own tests use these strategies; they are public so that users
can property-test their own pipelines with the same inputs. Requires the
``test`` extra (``pip install "sklearn_interp[test]"``).

Each strategy draws its shape and a seed and builds the data with NumPy, so
examples shrink towards small shapes and stay fast.

Examples
--------
>>> from hypothesis import given, settings
>>> from sklearn_interp.testing import activation_matrices
>>> @settings(max_examples=5, deadline=None)
... @given(activation_matrices(max_samples=20, max_features=8))
... def test_shape(X):
...     assert X.ndim == 2 and X.shape[0] >= 2
>>> test_shape()
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from ._torch import available_devices

__all__ = [
    "REORDERING_RTOL",
    "activation_matrices",
    "assert_allclose_across_batches",
    "attribution_problems",
    "available_devices",
    "calibration_problems",
    "channel_windows",
    "gaussian_clouds",
    "linear_manifolds",
    "prototype_map_problems",
    "ranking_pairs",
    "semi_nonnegative_products",
    "sparse_dictionary_data",
    "tiny_causal_lm",
    "zen_of_python",
]


#: Relative agreement the library promises between results that differ only in
#: the order floating-point sums are taken: another batch composition (row
#: order, subsets, a single row), thread count, BLAS kernel or device. A
#: matrix product of length n summed in another order moves by up to about
#: n·eps of the terms' magnitudes; through the few layers of these models
#: that stays well under 1e-5 in float32 (eps 1.2e-7) and 1e-9 in float64
#: (eps 2.2e-16). Results computed by the same operations on the same
#: numbers are bitwise equal and are compared exactly instead.
REORDERING_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}


def assert_allclose_across_batches(actual, desired, *, dtype=np.float64, err_msg=""):
    """Assert two results agree to what reordered floating-point sums allow.

    ``rtol`` is :data:`REORDERING_RTOL` for ``dtype``, and ``atol`` the same
    fraction of the largest magnitude in ``desired``: an entry near zero that
    comes from cancelling terms carries the rounding of the terms, not of
    itself.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.testing import assert_allclose_across_batches
    >>> a = np.array([1.0, 1e-17, 2.0])
    >>> assert_allclose_across_batches(a + 1e-13, a)
    >>> assert_allclose_across_batches(a + 1e-6, a)
    Traceback (most recent call last):
    ...
    AssertionError: ...
    """
    actual, desired = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    rtol = REORDERING_RTOL[np.dtype(dtype)]
    finite = np.abs(desired[np.isfinite(desired)])
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def _gelu(x):
    # tanh approximation of GELU: mostly small negative values, a long positive tail,
    # as in the MLP activations of BERT- and GPT-style models.
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


@st.composite
def activation_matrices(
    draw,
    *,
    min_samples=2,
    max_samples=40,
    min_features=1,
    max_features=16,
    dtype=np.float64,
    allow_degenerate=True,
):
    """Activation-like matrices: GELU of random projections, mixed sign.

    Parameters
    ----------
    min_samples, max_samples : int
        Bounds on the number of rows (tokens).
    min_features, max_features : int
        Bounds on the number of columns (neurons).
    dtype : numpy dtype, default=np.float64
    allow_degenerate : bool, default=True
        Also draw duplicated rows, all-zero rows and constant columns, which
        real activations contain (repeated tokens, dead neurons).

    Returns
    -------
    strategy : SearchStrategy of ndarray of shape (n_samples, n_features)
        Finite values.
    """
    n_samples = draw(st.integers(min_samples, max_samples))
    n_features = draw(st.integers(min_features, max_features))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
    rng = np.random.default_rng(seed)
    latent_dim = max(1, min(n_features, 4))
    X = _gelu(rng.standard_normal((n_samples, latent_dim)) @ rng.standard_normal((latent_dim, n_features)))
    X = scale * (X + 0.1 * rng.standard_normal(X.shape))
    if allow_degenerate:
        if draw(st.booleans()) and n_samples >= 2:
            X[n_samples // 2] = X[0]  # a repeated token
        if draw(st.booleans()) and n_samples >= 3:
            X[-1] = 0.0  # a row of dead units
        if draw(st.booleans()):
            X[:, 0] = X[0, 0]  # a constant neuron
    return X.astype(dtype)


@st.composite
def semi_nonnegative_products(draw, *, max_samples=30, max_features=12, max_rank=3, dtype=np.float64):
    """Exactly representable data ``X = G Fᵀ`` with ``G ≥ 0`` and mixed-sign ``F``.

    Returns
    -------
    strategy : SearchStrategy of tuple (X, rank)
        ``X`` of shape (n_samples, n_features), and the rank of the
        factorisation that produced it.
    """
    rank = draw(st.integers(1, max_rank))
    n_samples = draw(st.integers(max(rank, 4), max(max_samples, rank + 4)))
    n_features = draw(st.integers(max(rank, 2), max(max_features, rank + 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.1, 1.0, size=(n_samples, rank))
    F = rng.standard_normal((n_features, rank))
    return (G @ F.T).astype(dtype), rank


def _orthonormal_columns(rng, n_rows, n_columns):
    """A random (n_rows, n_columns) matrix with orthonormal columns."""
    Q, R = np.linalg.qr(rng.standard_normal((n_rows, n_columns)))
    return Q * np.sign(np.diag(R))


@st.composite
def linear_manifolds(
    draw,
    *,
    min_dim=1,
    max_dim=3,
    min_samples=600,
    max_samples=800,
    max_features=64,
    latents=("gaussian", "uniform"),
):
    """Points on a random ``d``-dimensional linear subspace, without noise.

    The latent coordinates are Gaussian or uniform on a cube, embedded
    isometrically (orthonormal columns) in ``D ∈ [d + 1, max_features]``
    dimensions and shifted by a random offset.

    Returns
    -------
    strategy : SearchStrategy of tuple (X, d)
        ``X`` of shape (n_samples, D) and the true dimension ``d``.
    """
    dim = draw(st.integers(min_dim, max_dim))
    n_samples = draw(st.integers(min_samples, max_samples))
    n_features = draw(st.integers(dim + 1, max(max_features, dim + 1)))
    latent = draw(st.sampled_from(latents))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if latent == "gaussian":
        Z = rng.standard_normal((n_samples, dim))
    else:
        Z = rng.uniform(-1.0, 1.0, size=(n_samples, dim))
    X = Z @ _orthonormal_columns(rng, n_features, dim).T + rng.standard_normal(n_features)
    return X, dim


@st.composite
def gaussian_clouds(draw, *, min_samples=20, max_samples=200, min_features=2, max_features=10):
    """Full-rank Gaussian point clouds: no two pairwise distances tie.

    For invariance tests, where a tie would let rounding pick a different
    neighbour.

    Returns
    -------
    strategy : SearchStrategy of ndarray of shape (n_samples, n_features)
    """
    n_samples = draw(st.integers(min_samples, max_samples))
    n_features = draw(st.integers(min_features, max_features))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_samples, n_features)) * rng.uniform(0.5, 2.0, size=n_features)


@st.composite
def sparse_dictionary_data(
    draw,
    *,
    max_samples=30,
    max_features=12,
    max_atoms=24,
    max_active=4,
    orthonormal=False,
    dtype=np.float64,
):
    """Rows that are sparse non-negative mixtures of a random unit dictionary.

    The dictionary's atoms are Gaussian directions (orthonormal rows when
    ``orthonormal``, which needs ``n_atoms <= n_features``); every row mixes
    up to ``max_active`` atoms with coefficients in [0.5, 2), adds a little
    noise and a random offset ``bias``. Continuous random data: no two
    correlations tie, so greedy encoders pick the same atoms in any order
    of computation.

    Returns
    -------
    strategy : SearchStrategy of tuple (X, atoms, bias)
        ``X`` of shape (n_samples, n_features), ``atoms`` of shape
        (n_atoms, n_features) with unit rows, ``bias`` of shape
        (n_features,).
    """
    n_features = draw(st.integers(2, max(max_features, 2)))
    max_atoms = min(max_atoms, n_features) if orthonormal else max_atoms
    n_atoms = draw(st.integers(2, max(max_atoms, 2)))
    n_samples = draw(st.integers(1, max_samples))
    n_active = draw(st.integers(1, min(max_active, n_atoms)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if orthonormal:
        atoms = _orthonormal_columns(rng, n_features, n_atoms).T
    else:
        atoms = rng.standard_normal((n_atoms, n_features))
        atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n_samples, n_atoms))
    for row in codes:
        row[rng.choice(n_atoms, size=n_active, replace=False)] = rng.uniform(0.5, 2.0, size=n_active)
    bias = rng.standard_normal(n_features)
    X = codes @ atoms + bias + 0.01 * rng.standard_normal((n_samples, n_features))
    return X.astype(dtype), atoms.astype(dtype), bias.astype(dtype)


@st.composite
def attribution_problems(draw, *, min_samples=2, max_samples=30, min_features=2, max_features=24):
    """Data and attribution scores with no tie inside a row.

    Parameters
    ----------
    min_samples, max_samples : int
    min_features, max_features : int

    Returns
    -------
    strategy : SearchStrategy of (X, scores)
        ``X`` of shape (n_samples, n_features) with values in [0, 1];
        ``scores`` of the same shape, every row a random permutation of
        distinct values, so top- and bottom-``k`` masks are unambiguous.
    """
    n_samples = draw(st.integers(min_samples, max_samples))
    n_features = draw(st.integers(min_features, max_features))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.random((n_samples, n_features))
    scores = np.argsort(rng.random((n_samples, n_features)), axis=1).astype(np.float64)
    return X, scores


@st.composite
def calibration_problems(draw, *, min_classes=2, max_classes=4, min_per_class=3, max_per_class=15, max_features=6):
    """Labelled embeddings and logits for selective-prediction properties.

    Class clusters in a low-dimensional space, some rows mislabelled, and
    logits from a noisy linear map, so that support sets mix correct and
    wrong predictions as real ones do.

    Parameters
    ----------
    min_classes, max_classes : int
    min_per_class, max_per_class : int
    max_features : int

    Returns
    -------
    strategy : SearchStrategy of (X, y, logits)
        ``X`` of shape (n_samples, n_features) in general position (no two
        distances tie), ``y`` of shape (n_samples,) with every class in
        ``0..n_classes-1`` present at least ``min_per_class`` times, and
        ``logits`` of shape (n_samples, n_classes) with no tie in a row.
    """
    n_classes = draw(st.integers(min_classes, max_classes))
    n_features = draw(st.integers(1, max_features))
    counts = [draw(st.integers(min_per_class, max_per_class)) for _ in range(n_classes)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    centres = rng.normal(scale=draw(st.floats(0.5, 4.0)), size=(n_classes, n_features))
    y = np.repeat(np.arange(n_classes), counts)
    X = centres[y] + rng.normal(size=(len(y), n_features))
    flip = rng.random(len(y)) < draw(st.floats(0.0, 0.3))
    y = np.where(flip, rng.integers(0, n_classes, len(y)), y)
    # Every class keeps at least min_per_class rows after the label noise.
    y[: n_classes * min_per_class] = np.repeat(np.arange(n_classes), min_per_class)
    logits = X @ rng.normal(size=(n_features, n_classes)) + rng.normal(scale=0.5, size=(len(y), n_classes))
    logits[np.arange(len(y)), y] += draw(st.floats(0.0, 3.0))
    return X, y, logits


@st.composite
def prototype_map_problems(draw, *, max_images=24, max_classes=3, max_prototypes_per_class=3, max_parts=5):
    """Activation maps, labels and part keypoints for the part-prototype metrics.

    Maps hold small integers and the input side is the grid side times a
    power of two, so bicubic upsampling is exact in float64 (its weights are
    dyadic fractions) and properties such as invariance to ``a·A + b`` hold
    exactly, not up to rounding.

    Parameters
    ----------
    max_images, max_classes, max_prototypes_per_class, max_parts : int

    Returns
    -------
    strategy : SearchStrategy of dict
        ``maps`` (n, P, h, w) float64, ``y`` (n,) class indices, ``part_locs``
        (n, J, 3) with integer pixel keypoints and 0/1 visibility,
        ``prototype_class`` (P,) with prototypes grouped by class, and
        ``input_size`` (H, W).
    """
    n_classes = draw(st.integers(1, max_classes))
    per_class = draw(st.integers(1, max_prototypes_per_class))
    n_images = draw(st.integers(n_classes, max_images))
    n_parts = draw(st.integers(1, max_parts))
    height, width = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    scale = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    prototype_class = np.repeat(np.arange(n_classes), per_class)
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n_images - n_classes)])
    maps = rng.integers(0, draw(st.integers(1, 16)), size=(n_images, len(prototype_class), height, width)).astype(np.float64)
    input_size = (height * scale, width * scale)
    part_locs = np.empty((n_images, n_parts, 3))
    part_locs[..., 0] = rng.integers(0, input_size[1], (n_images, n_parts))
    part_locs[..., 1] = rng.integers(0, input_size[0], (n_images, n_parts))
    part_locs[..., 2] = rng.random((n_images, n_parts)) < draw(st.floats(0.3, 1.0))
    return {"maps": maps, "y": y, "part_locs": part_locs, "prototype_class": prototype_class, "input_size": input_size}


@st.composite
def channel_windows(draw, *, lookback, min_channels=1, max_channels=6, max_windows=8):
    """Lookback windows of a multichannel series, for the forecasters' properties.

    Each channel is a random walk with its own level and scale (so per-window
    normalisation has work to do), and no channel is flat.

    Parameters
    ----------
    lookback : int
    min_channels, max_channels, max_windows : int

    Returns
    -------
    strategy : SearchStrategy of ndarray of shape (n_windows, lookback, n_channels), float64
    """
    n_windows = draw(st.integers(1, max_windows))
    n_channels = draw(st.integers(min_channels, max_channels))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.normal(size=(n_windows, lookback, n_channels))
    levels = rng.uniform(-5, 5, size=(n_windows, 1, n_channels))
    scales = np.exp(rng.uniform(-1, 1, size=(n_windows, 1, n_channels)))
    return levels + scales * np.cumsum(steps, axis=1)


@st.composite
def ranking_pairs(draw, *, max_groups=4, max_group_size=6, words=None, max_words=8):
    """(query, item) text pairs in query groups with graded relevance, for the rankers' properties.

    Texts are random words of a small vocabulary, so query and item share
    words by chance; every group has at least two items and two different
    grades.

    Parameters
    ----------
    max_groups, max_group_size : int
    words : sequence of str, default=None
        The vocabulary (pass a fitted model's words, so that texts are not
        all unknown to it); ``None`` uses ``w0`` … ``w11``.
    max_words : int
        Longest text, in words.

    Returns
    -------
    strategy : SearchStrategy of dict
        ``X`` (DataFrame with ``qid``, ``query``, ``item``) and ``y`` (int
        grades 0..3).
    """
    n_groups = draw(st.integers(1, max_groups))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    vocabulary = [f"w{j}" for j in range(12)] if words is None else list(words)

    def text():
        return " ".join(vocabulary[j] for j in rng.integers(len(vocabulary), size=rng.integers(1, max_words + 1)))

    rows, grades = [], []
    for qid in range(n_groups):
        size = int(rng.integers(2, max_group_size + 1))
        query = text()
        group_grades = rng.integers(0, 4, size=size)
        group_grades[:2] = rng.permutation([0, int(rng.integers(1, 4))])
        rows += [(qid, query, text()) for _ in range(size)]
        grades += group_grades.tolist()
    return {"X": pd.DataFrame(rows, columns=["qid", "query", "item"]), "y": np.asarray(grades)}


def zen_of_python():
    """The 19 lines of the Zen of Python (``import this``): real English that ships with Python.

    Examples
    --------
    >>> from sklearn_interp.testing import zen_of_python
    >>> zen_of_python()[0]
    'Beautiful is better than ugly.'
    """
    import codecs
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return [line for line in codecs.decode(this.s, "rot13").splitlines()[2:] if line]


def tiny_causal_lm(*, n_layers=3, width=32, mlp_width=64, n_heads=4, init_std=0.3, random_state=0):
    """A tiny randomly initialised Llama causal LM and a word-level tokenizer, built offline.

    It has SmolLM2's architecture (:class:`transformers.LlamaForCausalLM`,
    gated MLP, grouped-query attention) at a size that makes property tests
    of hooks and metrics run in milliseconds, on any device. The vocabulary
    is the words of :func:`zen_of_python` with ``<unk>``, ``<pad>`` and
    ``<eos>``; weights are N(0, init_std²) drawn from a CPU generator seeded by
    ``random_state`` (norms at one), so a seed gives the same model anywhere.

    Returns
    -------
    model : transformers.LlamaForCausalLM
        On the CPU, in eval mode, float32.
    tokenizer : transformers.PreTrainedTokenizerFast
        Pads on the right with ``<pad>``.

    Examples
    --------
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> model, tokenizer = tiny_causal_lm(random_state=0)
    >>> model.config.num_hidden_layers, model.config.hidden_size
    (3, 32)
    >>> tokenizer(["Beautiful is better than ugly."])["input_ids"][0]
    [...]
    """
    import re

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from . import _torch

    words = sorted({word for line in zen_of_python() for word in re.findall(r"\w+|[^\w\s]", line.lower())})
    vocabulary = {token: index for index, token in enumerate(["<unk>", "<pad>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    backend.normalizer = __import__("tokenizers").normalizers.Lowercase()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>", padding_side="right"
    )
    config = LlamaConfig(
        vocab_size=len(vocabulary), hidden_size=width, intermediate_size=mlp_width, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=max(1, n_heads // 2), max_position_embeddings=256,
        pad_token_id=vocabulary["<pad>"], eos_token_id=vocabulary["<eos>"], bos_token_id=None,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # construction draws from the global generator; leave it as it was
        model = LlamaForCausalLM(config)
    generator = _torch.make_generator(random_state)
    for name, parameter in sorted(model.named_parameters()):
        if not name.endswith("norm.weight"):
            _torch.normal_(parameter, generator, 0.0, init_std)
    return model.eval(), tokenizer
