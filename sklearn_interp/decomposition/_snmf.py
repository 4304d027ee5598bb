"""Semi-nonnegative matrix factorisation of MLP activations.

``X ≈ G Fᵀ`` with non-negative codes ``G`` (n_samples × k) and mixed-sign,
sparse features ``F`` (n_features × k), after Shafran, Geiger and Geva
(2025), whose features are sparse groups of co-activated neurons, on the
algorithm of Ding, Li and Jordan (2010).

The algorithm lives in small functions on tensors; :class:`SNMFDecomposer`
is a thin layer of validation and state over them.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin, _r2, _top_rows, _total_sum_of_squares
from ..io._pretrained import SAELensFolderMixin

# ---------------------------------------------------------------------------
# The algorithm, on tensors. X is (n, d), G is (n, k) >= 0, F is (d, k).
# ---------------------------------------------------------------------------


def _n_kept_neurons(sparsity, n_features):
    """How many entries each feature keeps under winner-take-all sparsity."""
    if sparsity is None:
        return n_features
    return max(1, min(n_features, math.ceil(sparsity * n_features)))


def _relative_ridge(gram, ridge):
    """A ridge on ``gram`` proportional to its mean diagonal.

    Relative to the scale of the codes so that fitting ``c·X`` gives ``c·F``
    exactly; the tiny floor keeps an all-zero Gram matrix solvable.
    """
    k = gram.shape[0]
    scale = torch.diagonal(gram).sum() / k
    return ridge * torch.clamp(scale, min=torch.finfo(gram.dtype).tiny)


def _solve_features(XtG, GtG, ridge):
    """Least-squares features ``F = XᵀG (GᵀG + λI)⁻¹`` for fixed codes.

    Solved through a Cholesky factorisation (never an explicit inverse);
    a Gram matrix too ill-conditioned for it falls back to least squares.
    """
    k = GtG.shape[0]
    system = GtG + _relative_ridge(GtG, ridge) * torch.eye(k, dtype=GtG.dtype, device=GtG.device)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(XtG.T, factor).T
    return torch.linalg.lstsq(system, XtG.T).solution.T


def _winner_take_all(F, n_keep):
    """Keep the ``n_keep`` largest-magnitude entries of every column of ``F``.

    Exactly ``n_keep`` survive per column (ties are broken by position, so
    a column never keeps more), the rest are set to zero in place.
    """
    n_features = F.shape[0]
    if n_keep >= n_features:
        return F
    kept = torch.topk(F.abs(), n_keep, dim=0, sorted=False).indices
    mask = torch.zeros_like(F, dtype=torch.bool).scatter_(0, kept, True)
    return F.masked_fill_(~mask, 0.0)


def _refine_on_support(F, XtG, GtG, n_sweeps):
    """Exact coordinate-descent sweeps over feature columns, support kept fixed.

    Winner-take-all zeroes entries of the least-squares features, which
    leaves the kept ones no longer optimal. Column ``j`` restricted to its
    support has the closed-form minimiser
    ``f_j ← f_j + (XᵀG e_j − F GᵀG e_j) / (GᵀG)_jj`` on the kept rows, so
    each sweep lowers the loss without adding a non-zero.
    """
    support = F != 0
    for _ in range(n_sweeps):
        for j in range(F.shape[1]):
            curvature = GtG[j, j]
            if curvature <= 0:
                continue
            step = (XtG[:, j] - F @ GtG[:, j]) / curvature
            F[:, j] = torch.where(support[:, j], F[:, j] + step, F[:, j])
    return F


def _normalise_codes(G, F):
    """Give every code column unit L2 norm, moving the scale into ``F``.

    ``G Fᵀ`` is unchanged. All-zero (dead) columns are left alone.
    """
    norms = torch.linalg.vector_norm(G, dim=0)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    G.div_(norms)
    F.mul_(norms)


def _multiplicative_codes_step(G, XF, FtF, eps):
    """One multiplicative update of the codes for fixed features (Ding et al.).

    ``G ← G ⊙ sqrt((P⁺ + G Q⁻) / (P⁻ + G Q⁺ + ε))`` with ``P = XF`` and
    ``Q = FᵀF``; it never increases the loss and keeps ``G ≥ 0``. ``ε`` is
    relative to the mean diagonal of ``Q`` so the update is scale-free.
    """
    guard = eps * torch.clamp(torch.diagonal(FtF).mean(), min=torch.finfo(FtF.dtype).tiny)
    numerator = XF.clamp(min=0) + G @ (-FtF).clamp(min=0)
    denominator = (-XF).clamp(min=0) + G @ FtF.clamp(min=0) + guard
    return G.mul_(torch.sqrt(numerator / denominator))


def _coordinate_codes_step(G, XF, FtF):
    """One exact coordinate-descent sweep over the code columns (HALS).

    Each column is set to the minimiser of the loss over that column with
    the others fixed, ``g_j ← max(0, g_j + (p_j − G q_j) / q_jj)``, so the
    loss never increases. Unlike the multiplicative rule it can revive a
    code that reached zero, and converges in far fewer sweeps.
    """
    for j in range(G.shape[1]):
        curvature = FtF[j, j]
        if curvature <= 0:
            continue
        gradient = XF[:, j] - G @ FtF[:, j]
        G[:, j] = torch.clamp(G[:, j] + gradient / curvature, min=0)
    return G


def _codes_step(G, XF, FtF, solver, eps):
    if solver == "cd":
        return _coordinate_codes_step(G, XF, FtF)
    return _multiplicative_codes_step(G, XF, FtF, eps)


def _squared_loss(sq_norm_X, G, XF, GtG, FtF):
    """``‖X − G Fᵀ‖²_F`` by the trace identity, never forming ``G Fᵀ``.

    ``‖X‖² − 2⟨G, XF⟩ + ⟨GᵀG, FᵀF⟩``; rounding can take an exact fit a
    hair below zero, hence the clamp.
    """
    loss = sq_norm_X - 2.0 * torch.sum(G * XF) + torch.sum(GtG * FtF)
    return torch.clamp(loss, min=0.0)


def _row_losses(row_sq_norms, G, XF, FtF):
    """Per-row squared reconstruction error, again without forming ``G Fᵀ``."""
    return row_sq_norms - 2.0 * torch.sum(G * XF, dim=1) + torch.sum((G @ FtF) * G, dim=1)


def _reseed_dead_codes(G, XF, FtF, row_sq_norms, generator):
    """Restart code columns that are entirely zero.

    A dead column contributes nothing to the reconstruction, so it is given
    the worst-reconstructed row (one per dead column, all distinct); the
    next features step then fits it, which cannot raise the loss. The small
    positive noise lets the multiplicative rule, for which zeros are
    absorbing, grow the column beyond that row.
    """
    dead = torch.nonzero(G.amax(dim=0) <= 0).flatten()
    if dead.numel() == 0:
        return
    errors = _row_losses(row_sq_norms, G, XF, FtF)
    worst = torch.topk(errors, min(dead.numel(), errors.numel())).indices
    noise = 1e-3 * _torch.rand((G.shape[0], dead.numel()), generator, device=G.device, dtype=G.dtype)
    G[:, dead] = noise
    G[worst, dead[: worst.numel()]] = 1.0


def _gram_eigen(X, n_components):
    """Top singular triplets of ``X`` through the eigenproblem of its smaller Gram matrix.

    Exact and deterministic (unlike a randomised SVD, whose result depends
    on the global random state), and cheap when one side of ``X`` is small.
    """
    # Work on the side with fewer columns; swap the singular vectors back after.
    transposed = X.shape[1] > X.shape[0]
    work = (X.T if transposed else X).to(torch.float64)
    eigvals, V = torch.linalg.eigh(work.T @ work)
    order = torch.argsort(eigvals, descending=True)[:n_components]
    S = torch.sqrt(eigvals[order].clamp(min=0))
    V = V[:, order]
    U = (work @ V) / torch.where(S > 0, S, torch.ones_like(S))
    if transposed:
        U, V = V, U
    return U.to(X.dtype), S.to(X.dtype), V.to(X.dtype)


def svd_bound_r2(X, rank):
    """R² of the exact rank-``rank`` truncated SVD of the uncentred ``X``.

    The Eckart–Young upper bound on the R² of any rank-``rank``
    factorisation, SNMF's included, with the same per-feature centring as
    :meth:`SNMFDecomposer.score`. Computed exactly from the eigenvalues of
    ``XᵀX`` in float64: a randomised SVD under-estimates it on flat spectra.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rank : int

    Returns
    -------
    r2 : float
    """
    X64 = np.asarray(X, dtype=np.float64)
    eigenvalues = np.linalg.eigvalsh(X64.T @ X64)[::-1]
    total = np.sum((X64 - X64.mean(axis=0)) ** 2)
    return float(1.0 - (eigenvalues.sum() - eigenvalues[:rank].sum()) / total)


def _kmeans_assignments(X, n_clusters, generator, n_iter=15, batch_size=4096):
    """Lloyd's k-means, distances computed in batches; returns labels.

    Starts from distinct random rows; an empty cluster is restarted at a
    random row.
    """
    n_samples = X.shape[0]
    start = _torch.randperm(n_samples, generator, device=X.device)[:n_clusters]
    centroids = X[start].clone()
    labels = torch.empty(n_samples, dtype=torch.long, device=X.device)
    for _ in range(n_iter):
        centroid_sq = torch.sum(centroids * centroids, dim=1)
        for rows in _torch.batch_slices(n_samples, batch_size):
            # ‖x − c‖² up to the row constant ‖x‖², which argmin ignores.
            labels[rows] = torch.argmin(centroid_sq - 2.0 * X[rows] @ centroids.T, dim=1)
        counts = torch.bincount(labels, minlength=n_clusters).to(X.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, labels, X)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(1)
        if bool(empty.any()):
            refill = _torch.randint(n_samples, (int(empty.sum()),), generator, device=X.device)
            centroids[empty] = X[refill]
    return labels


def _initial_codes(X, n_components, init, generator, batch_size):
    """Initial non-negative codes ``G0`` (the first features step derives ``F``).

    * ``"random"``: ``U[0, 1)``, floored at 1e-6 (zeros would be absorbing
      for the multiplicative rule).
    * ``"svd"``: ``max(U√S, 1e-6)`` of the exact rank-k SVD, each singular
      pair's sign chosen so that the kept positive part is the larger.
    * ``"kmeans"``: cluster indicators plus 0.2, as Ding et al. advise.
    """
    n_samples = X.shape[0]
    options = {"device": X.device, "dtype": X.dtype}
    if init == "random":
        G = _torch.rand((n_samples, n_components), generator, **options)
        return G.clamp_(min=1e-6)
    if init == "svd":
        U, S, _ = _gram_eigen(X, n_components)
        G = U * torch.sqrt(S)
        signs = torch.where(G.clamp(min=0).sum(0) >= (-G).clamp(min=0).sum(0), 1.0, -1.0)
        G = G * signs.to(G.dtype)
        if G.shape[1] < n_components:  # rank-deficient X: pad with random codes
            pad = _torch.rand((n_samples, n_components - G.shape[1]), generator, **options)
            G = torch.cat([G, pad], dim=1)
        return G.clamp_(min=1e-6)
    labels = _kmeans_assignments(X, n_components, generator, batch_size=batch_size)
    G = torch.full((n_samples, n_components), 0.2, **options)
    G[torch.arange(n_samples, device=X.device), labels] += 1.0
    return G


def _fit_snmf(
    X,
    G,
    *,
    n_keep,
    solver,
    max_iter,
    tol,
    patience,
    restore_best,
    ridge,
    eps,
    generator,
    support_sweeps=3,
    verbose=0,
):
    """Alternate exact features steps and codes steps; track the best iterate.

    Each iteration: restart dead codes, solve the features by least squares,
    sparsify them (winner-take-all; with ``solver="cd"`` the kept entries
    are then re-fitted on their support), normalise the codes, update the codes
    (one multiplicative step or one coordinate-descent sweep) and record the
    loss. Winner-take-all makes the loss non-monotone, so the best pair is
    kept; the fit stops once the best loss has not improved by
    ``tol · ‖X‖²`` for ``patience`` iterations.

    Returns
    -------
    result : dict with ``G``, ``F``, ``loss_curve`` (list of float),
        ``best_iter``, ``n_iter`` and ``converged``.
    """
    sq_norm_X = torch.sum(X * X)
    row_sq_norms = torch.sum(X * X, dim=1)
    threshold = tol * float(sq_norm_X)
    loss_curve = []
    best = (math.inf, None, None, -1)
    stale = 0
    XF = FtF = None
    converged = False
    iterations = _torch.progress(range(max_iter), verbose=verbose, desc="SNMF", total=max_iter)
    for iteration in iterations:
        if XF is not None:
            _reseed_dead_codes(G, XF, FtF, row_sq_norms, generator)
        GtG = G.T @ G
        XtG = X.T @ G
        F = _solve_features(XtG, GtG, ridge)
        if n_keep < X.shape[1]:
            _winner_take_all(F, n_keep)
            if solver == "cd":
                _refine_on_support(F, XtG, GtG, n_sweeps=support_sweeps)
        _normalise_codes(G, F)
        XF = X @ F
        FtF = F.T @ F
        _codes_step(G, XF, FtF, solver, eps)
        GtG = G.T @ G
        loss = float(_squared_loss(sq_norm_X, G, XF, GtG, FtF))
        loss_curve.append(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(
                "SNMF diverged (non-finite loss); try dtype='float64' or a larger ridge."
            )
        if loss < best[0] - threshold:
            stale = 0
        else:
            stale += 1
        if loss < best[0]:
            best = (loss, G.clone() if restore_best else None, F.clone() if restore_best else None, iteration)
        if stale >= patience:
            converged = True
            break
    if restore_best and best[1] is not None:
        G, F = best[1], best[2]
    return {
        "G": G,
        "F": F,
        "loss_curve": loss_curve,
        "best_iter": best[3],
        "n_iter": len(loss_curve),
        "converged": converged,
    }


def _solve_codes(X, F, *, solver, max_iter, tol, ridge, eps):
    """Non-negative codes of the rows of ``X`` for fixed features ``F``.

    A convex non-negative least-squares problem per row, solved from the
    clipped unconstrained least-squares codes. Every row stops on its own
    relative change, so a row's codes do not depend on the other rows in
    the batch (``transform`` is row-separable).
    """
    FtF = F.T @ F
    XF = X @ F
    # The unconstrained least-squares codes solve the same normal equations
    # as the features step, with the roles of X and Xᵀ exchanged.
    G0 = _solve_features(XF, FtF, ridge)
    # The multiplicative rule needs a strictly positive start.
    G = G0.clamp(min=1e-6 if solver == "mu" else 0.0)
    active = torch.arange(X.shape[0], device=X.device)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        G_active = G[active]
        before = G_active.clone()
        _codes_step(G_active, XF[active], FtF, solver, eps)
        G[active] = G_active
        change = torch.linalg.vector_norm(G_active - before, dim=1)
        scale = torch.linalg.vector_norm(G_active, dim=1)
        active = active[change > tol * torch.clamp(scale, min=torch.finfo(G.dtype).tiny)]
    return G


# ---------------------------------------------------------------------------
# The estimator.
# ---------------------------------------------------------------------------


class SNMFDecomposer(
    SAELensFolderMixin, TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Semi-nonnegative factorisation of activations into sparse neuron groups.

    Factorises activations ``X`` (tokens × neurons, any sign) as
    ``X ≈ G @ components_`` with non-negative codes ``G`` (how strongly each
    token expresses each feature) and mixed-sign features ``components_``
    that each use at most ``ceil(sparsity · n_features)`` neurons, as in
    Shafran, Geiger and Geva (2025). Each feature is a direction in neuron
    space that can be used for steering; its top-coded tokens describe it.

    Read more in the :ref:`User Guide <snmf>`.

    Parameters
    ----------
    n_components : int, default=100
        Number of features ``k``.

    sparsity : float in (0, 1] or None, default=0.01
        Fraction of neurons each feature keeps (winner-take-all after every
        features step). ``None`` or ``1.0`` gives plain semi-NMF, whose loss
        never increases.

    solver : {"cd", "mu"}, default="cd"
        ``"mu"`` is the paper's algorithm: Ding, Li and Jordan's
        multiplicative rule for the codes. ``"cd"`` updates the codes by
        exact coordinate descent over their columns (HALS), which reaches
        the same fit in far fewer iterations, and after winner-take-all
        re-fits the kept entries of every feature by three coordinate
        sweeps on its support, which the paper leaves sub-optimal.

    init : {"random", "svd", "kmeans"}, default="random"
        Initial codes: uniform random (the paper's), the positive part of
        the exact rank-k SVD, or k-means cluster indicators.

    max_iter : int, default=2000
        Maximum number of iterations of ``fit``.

    tol : float, default=1e-4
        Relative tolerance: an iteration improves when it lowers the best
        loss by more than ``tol · ‖X‖²_F``. Relative, so stopping does not
        depend on the scale of the activations.

    patience : int, default=50
        Stop after this many consecutive iterations without improvement.

    restore_best : bool, default=True
        Return the best iterate rather than the last one (with sparsity the
        loss is not monotone).

    ridge : float, default=1e-6
        Ridge of the features solve, relative to the mean diagonal of
        ``GᵀG``.

    eps : float, default=1e-6
        Denominator guard of the multiplicative rule, relative to the mean
        diagonal of ``FᵀF``.

    transform_max_iter : int, default=200
        Maximum iterations of the codes solve in ``transform``.

    transform_tol : float, default=1e-5
        Relative change of a row's codes under which ``transform`` stops
        updating that row.

    batch_size : int or None, default=4096
        Rows per batch in ``transform``, ``score`` and ``partial_fit``
        statistics; bounds their memory. ``None`` uses one batch.

    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    dtype : {"float32", "float64"} or None, default="float32"
        Floating type of the computation; ``None`` follows the input.

    random_state : int, RandomState instance or None, default=None
        Seeds the initial codes and the restarts of dead codes.

    verbose : int, default=0
        A progress bar over the iterations when ``>= 1``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The features ``Fᵀ``; row ``i`` has at most
        ``ceil(sparsity · n_features)`` non-zeros.

    training_codes_ : ndarray of shape (n_samples, n_components)
        Non-negative codes of the training rows (what ``fit_transform``
        returns), used to find each feature's activating inputs.

    n_components_ : int
        Number of features.

    reconstruction_err_ : float
        ``‖X − G Fᵀ‖_F`` of the returned pair.

    loss_curve_ : ndarray of shape (n_iterations,)
        Squared Frobenius loss after every iteration.

    n_iter_ : int
        Iterations run.

    best_iter_ : int
        Index in ``loss_curve_`` of the returned iterate.

    n_samples_seen_ : int
        Rows that contributed to ``sxg_`` and ``sgg_``.

    sxg_ : ndarray of shape (n_features, n_components)
        Running ``XᵀG`` over all rows seen (``partial_fit`` statistics).

    sgg_ : ndarray of shape (n_components, n_components)
        Running ``GᵀG`` over all rows seen.

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (n_features,)
        Names of features seen during ``fit``, when ``X`` has string
        column names.

    See Also
    --------
    sklearn.decomposition.NMF : Factorisation with non-negative data and
        both factors non-negative.
    sklearn.decomposition.DictionaryLearning : Sparse codes with an L1
        penalty.

    References
    ----------
    .. [1] O. Shafran, A. Geiger, M. Geva, "Decomposing MLP Activations into
       Interpretable Features via Semi-Nonnegative Matrix Factorization",
       arXiv:2506.10920, 2025.
    .. [2] C. Ding, T. Li, M. I. Jordan, "Convex and Semi-Nonnegative Matrix
       Factorizations", IEEE TPAMI 32(1), 2010.
    .. [3] A. Cichocki, A.-H. Phan, "Fast local algorithms for large scale
       nonnegative matrix and tensor factorizations", IEICE Trans. 2009
       (the HALS coordinate updates of ``solver="cd"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import SNMFDecomposer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 3) @ rng.randn(3, 40)          # mixed-sign data of rank 3
    >>> snmf = SNMFDecomposer(n_components=3, sparsity=None, random_state=0)
    >>> codes = snmf.fit_transform(X)
    >>> codes.shape, bool((codes >= 0).all())
    ((200, 3), True)
    >>> round(snmf.score(X), 3)
    1.0
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "sparsity": [Interval(Real, 0, 1, closed="right"), None],
        "solver": [StrOptions({"cd", "mu"})],
        "init": [StrOptions({"random", "svd", "kmeans"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "restore_best": ["boolean"],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "eps": [Interval(Real, 0, None, closed="neither")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        n_components: int = 100,
        *,
        sparsity: float | None = 0.01,
        solver: Literal["cd", "mu"] = "cd",
        init: Literal["random", "svd", "kmeans"] = "random",
        max_iter: int = 2000,
        tol: float = 1e-4,
        patience: int = 50,
        restore_best: bool = True,
        ridge: float = 1e-6,
        eps: float = 1e-6,
        transform_max_iter: int = 200,
        transform_tol: float = 1e-5,
        batch_size: int | None = 4096,
        device: str = "auto",
        dtype: Literal["float32", "float64"] | None = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.sparsity = sparsity
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.patience = patience
        self.restore_best = restore_best
        self.ridge = ridge
        self.eps = eps
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | torch.Tensor, y: object = None) -> SNMFDecomposer:
        """Factorise ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations, any sign; needs at least ``n_components`` rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : SNMFDecomposer
            The fitted decomposer.
        """
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(
        self,
        X: ArrayLike | torch.Tensor,
        y: object = None,
    ) -> np.ndarray | torch.Tensor:
        """Factorise ``X`` and return its codes.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations, any sign.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n_components)
            Non-negative codes of the training rows (``training_codes_``);
            a tensor on the estimator's device when ``X`` is a tensor.
        """
        G, as_tensor = self._fit(X)
        return _torch.to_output(G, as_tensor)

    def _fit(self, X):
        X_t, as_tensor = self._validate_and_check_rows(X, reset=True)
        self._clear_device_cache()
        generator = _torch.make_generator(self.random_state)
        with torch.no_grad():
            G0 = _initial_codes(X_t, self.n_components, self.init, generator, self.batch_size)
            result = _fit_snmf(
                X_t,
                G0,
                n_keep=_n_kept_neurons(self.sparsity, X_t.shape[1]),
                solver=self.solver,
                max_iter=self.max_iter,
                tol=self.tol,
                patience=self.patience,
                restore_best=self.restore_best,
                ridge=self.ridge,
                eps=self.eps,
                generator=generator,
                verbose=self.verbose,
            )
            G, F = result["G"], result["F"]
            self._set_statistics(X_t.T @ G, G.T @ G, X_t.shape[0])
        self.components_ = _torch.to_numpy(F.T)
        self.training_codes_ = _torch.to_numpy(G)
        self.n_components_ = self.n_components
        self.loss_curve_ = np.asarray(result["loss_curve"])
        self.n_iter_ = result["n_iter"]
        self.best_iter_ = result["best_iter"]
        self.reconstruction_err_ = float(np.sqrt(self.loss_curve_[self.best_iter_ if self.restore_best else -1]))
        if not result["converged"]:
            warnings.warn(
                f"SNMFDecomposer reached max_iter={self.max_iter} before the loss went "
                f"patience={self.patience} iterations without improving by tol; raise "
                "max_iter (or tol) for a converged fit.",
                ConvergenceWarning,
            )
        return G, as_tensor

    def _validate_and_check_rows(self, X, *, reset):
        X_t, as_tensor = self._validate_tensor(X, reset=reset)
        if X_t.shape[0] < self.n_components:
            raise ValueError(
                f"n_samples={X_t.shape[0]} is smaller than n_components={self.n_components}: "
                "SNMF needs at least as many samples as components."
            )
        return X_t, as_tensor

    def _set_statistics(self, sxg, sgg, n_samples):
        self.sxg_ = _torch.to_numpy(sxg)
        self.sgg_ = _torch.to_numpy(sgg)
        self.n_samples_seen_ = int(n_samples)

    def partial_fit(self, X: ArrayLike | torch.Tensor, y: object = None) -> SNMFDecomposer:
        """Update the features with one batch of a stream.

        The first call fits the batch as ``fit`` does (it needs at least
        ``n_components`` rows). Every later call computes the batch's codes
        for the current features, adds ``XᵀG`` and ``GᵀG`` to the running
        sufficient statistics ``sxg_`` and ``sgg_``, and re-solves the
        features from them, so activations larger than memory can be
        decomposed batch by batch.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            One batch of activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : SNMFDecomposer
            The updated decomposer.
        """
        if not hasattr(self, "components_"):
            self._validate_params()
            self._fit(X)
            # Codes of the first batch alone would mislead top_activating():
            # a stream has no training codes.
            del self.training_codes_
            return self
        X_t, _ = self._validate_tensor(X, reset=False)
        device, dtype = X_t.device, X_t.dtype
        with torch.no_grad():
            sxg = _torch.to_tensor(self.sxg_, device, dtype)
            sgg = _torch.to_tensor(self.sgg_, device, dtype)
            for rows, G in self._batched_codes(X_t):
                sxg += X_t[rows].T @ G
                sgg += G.T @ G
            F = _solve_features(sxg, sgg, self.ridge)
            _winner_take_all(F, _n_kept_neurons(self.sparsity, X_t.shape[1]))
            self._set_statistics(sxg, sgg, self.n_samples_seen_ + X_t.shape[0])
        self.components_ = _torch.to_numpy(F.T)
        return self

    # -- using the factorisation --------------------------------------------
    def _batched_codes(self, X_t, columns=None):
        """Yield ``(rows, codes)`` for consecutive batches of ``X_t``.

        With ``columns``, the codes are fitted to those columns of ``X_t``
        only (the features restricted to them), as bi-cross-validation needs.
        """
        F = self._on_device("components_", X_t.device, X_t.dtype).T
        if columns is not None:
            F = F[columns]
        slices = _torch.batch_slices(X_t.shape[0], self.batch_size)
        for rows in _torch.progress(slices, verbose=self.verbose, desc="SNMF codes"):
            G = _solve_codes(
                X_t[rows] if columns is None else X_t[rows][:, columns],
                F,
                solver=self.solver,
                max_iter=self.transform_max_iter,
                tol=self.transform_tol,
                ridge=self.ridge,
                eps=self.eps,
            )
            yield rows, G

    def transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Non-negative codes of new rows for the fitted features.

        Solves the non-negative least-squares problem of every row with
        ``components_`` fixed (the reference implementation has no
        ``transform``). Row-separable: a row's codes do not depend on the
        other rows.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n_components)
            Non-negative codes; a tensor on the estimator's device when
            ``X`` is a tensor.
        """
        check_is_fitted(self)
        X_t, as_tensor = self._validate_tensor(X, reset=False)
        codes = torch.empty(X_t.shape[0], self.n_components_, dtype=X_t.dtype, device=X_t.device)
        with torch.no_grad():
            for rows, G in self._batched_codes(X_t):
                codes[rows] = G
        return _torch.to_output(codes, as_tensor)

    def inverse_transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map codes back to activation space: ``X @ components_``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_components)
            Codes.

        Returns
        -------
        X_original : ndarray or torch.Tensor of shape (n_samples, n_features)
            Reconstructed activations.
        """
        check_is_fitted(self)
        codes, as_tensor = self._validate_other(X, n_columns=self.n_components_, what="Codes")
        components = self._on_device("components_", codes.device, codes.dtype)
        return _torch.to_output(codes @ components, as_tensor)

    def score(self, X: ArrayLike | torch.Tensor, y: object = None) -> float:
        """Coefficient of determination of the reconstruction of ``X``.

        ``R² = 1 − ‖X − G Fᵀ‖² / ‖X − mean(X)‖²`` with ``G = transform(X)``
        and per-feature centring in the denominator only (the model itself
        is not centred). Computed in batches.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        r2 : float
            At most 1; higher is better.
        """
        check_is_fitted(self)
        X_t, _ = self._validate_tensor(X, reset=False)
        components = self._on_device("components_", X_t.device, X_t.dtype)
        residual_ss = 0.0
        with torch.no_grad():
            for rows, G in self._batched_codes(X_t):
                residual_ss += float(torch.sum((X_t[rows] - G @ components) ** 2, dtype=torch.float64))
            total_ss = _total_sum_of_squares(X_t, self.batch_size)
        return _r2(residual_ss, total_ss)

    def _visible_codes(self, X_t, visible):
        """Codes of the rows of ``X_t`` fitted to the ``visible`` columns only.

        The non-negative least-squares problem of :meth:`transform` with the
        features restricted to those columns: bi-cross-validation then
        scores how well ``codes @ components_`` predicts the other columns.
        """
        with torch.no_grad():
            return torch.cat([G for _, G in self._batched_codes(X_t, columns=visible)])

    # -- interpretation ------------------------------------------------------
    def feature_directions(self, normalize: bool = True) -> np.ndarray:
        """Neuron-space direction of every feature (steering vectors).

        Parameters
        ----------
        normalize : bool, default=True
            Scale every direction to unit L2 norm.

        Returns
        -------
        directions : ndarray of shape (n_components, n_features)
        """
        check_is_fitted(self)
        directions = self.components_.copy()
        if normalize:
            norms = np.linalg.norm(directions, axis=1, keepdims=True)
            directions /= np.where(norms > 0, norms, 1.0)
        return directions

    def top_activating(self, X: ArrayLike | torch.Tensor | None = None, n: int = 25) -> np.ndarray:
        """Rows that express each feature most strongly.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features), default=None
            Rows to rank; ``None`` ranks the training rows by
            ``training_codes_``.
        n : int, default=25
            Rows per feature.

        Returns
        -------
        indices : ndarray of shape (n_components, min(n, n_samples))
            Row indices, strongest first.
        """
        check_is_fitted(self)
        if X is None:
            if not hasattr(self, "training_codes_"):
                raise ValueError("This decomposer has no training codes; pass X.")
            codes = self.training_codes_
        else:
            codes = self.transform(X)
            if _torch.is_tensor(codes):
                codes = _torch.to_numpy(codes)
        return _top_rows(codes, n)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = False
        return tags
