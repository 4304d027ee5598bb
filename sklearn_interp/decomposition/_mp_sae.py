"""Sparse autoencoders with a matching-pursuit (or TopK) encoder.

A dictionary of unit-norm atoms ``D`` (n_components × n_features) and a
pre-bias ``b`` reconstruct ``x ≈ b + zᵀD`` from sparse non-negative codes
``z``. :class:`MatchingPursuitSAE` (Costa et al., 2025) computes ``z`` by
``k`` steps of matching pursuit: pick the atom most correlated with the
residual, add its correlation to its code, subtract it from the residual.
Each residual is orthogonal to the atom just picked, so later steps can use
atoms that are correlated with earlier ones — the hierarchical features a
one-shot TopK encoder (:class:`TopKSAE`) cannot separate.

Training follows the encoder's path without differentiating through the
choice of atoms: the atoms are picked under ``torch.no_grad()`` (by updating
the correlations with rows of the atoms' Gram matrix when that is cheaper
than recomputing them) and the values are recomputed from the gathered
atoms, so autograd stores ``k · batch · n_features`` numbers, not
``k · batch · n_components``. Encoding recomputes every correlation from
the residual, so its invariants hold to rounding.

The algorithm lives in small functions on tensors; the estimators are a
thin layer of validation and state over them, and skorch runs the training
loop (:mod:`sklearn_interp._training`).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._metadata_requests import UNUSED
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler
from torch.optim.lr_scheduler import LambdaLR

from .. import _torch
from .._training import epoch_losses, make_net
from ..base import TorchEstimatorMixin, _r2, _top_rows, _total_sum_of_squares
from ..io._pretrained import SAELensFolderMixin

if TYPE_CHECKING:
    import skorch

# The geometric median that initialises the bias is a statistic of the data,
# not a fit: a sample of this many rows pins it down.
_BIAS_SAMPLE = 16384

# ---------------------------------------------------------------------------
# The algorithm, on tensors. Atoms are rows: D is (n_components, n_features).
# A path is (indices, values), both (n_samples, n_steps); index -1 marks a
# step that added nothing (value 0).
# ---------------------------------------------------------------------------


def _project_atoms(atoms, normalize):
    """Rescale every atom onto the unit sphere or into the unit ball, in place."""
    norms = torch.linalg.vector_norm(atoms, dim=1, keepdim=True)
    if normalize == "sphere":
        atoms.div_(norms.clamp_min(torch.finfo(atoms.dtype).tiny))
    else:
        atoms.div_(norms.clamp_min(1.0))
    return atoms


def _geometric_median(X, *, max_iter=200, tol=1e-7):
    """The point minimising the sum of Euclidean distances to the rows of ``X``.

    Weiszfeld's fixed-point iteration from the mean. A row that coincides
    with the current estimate would get an infinite weight; distances are
    floored at a tiny fraction of the data's scale instead, which only
    matters when the median is a data point.
    """
    median = X.mean(dim=0)
    scale = float(torch.linalg.vector_norm(X - median, dim=1).mean())
    if scale == 0.0:
        return median
    floor = scale * torch.finfo(X.dtype).eps
    for _ in range(max_iter):
        weights = 1.0 / torch.linalg.vector_norm(X - median, dim=1).clamp_min(floor)
        updated = (weights @ X) / weights.sum()
        shift = float(torch.linalg.vector_norm(updated - median))
        median = updated
        if shift <= tol * scale:
            break
    return median


def _initial_bias(X, bias_init, generator):
    """The pre-bias before training: a data statistic, or zeros."""
    if bias_init == "zeros":
        return X.new_zeros(X.shape[1])
    if bias_init == "mean":
        return X.mean(dim=0)
    if X.shape[0] > _BIAS_SAMPLE:
        rows = _torch.randperm(X.shape[0], generator, device=X.device)[:_BIAS_SAMPLE]
        X = X[rows]
    return _geometric_median(X)


def _initial_atoms(X_centered, n_components, init, generator):
    """Unit-norm atoms: Gaussian directions, data rows or given arrays."""
    n_samples, n_features = X_centered.shape
    device, dtype = X_centered.device, X_centered.dtype
    gaussian = _torch.randn((n_components, n_features), generator, device=device).to(dtype)
    if isinstance(init, str) and init == "gaussian":
        atoms = gaussian
    elif isinstance(init, str):  # "data": random rows, Gaussian where rows run out or are 0
        order = _torch.randperm(n_samples, generator, device=device)
        rows = X_centered[order[:n_components]]
        atoms = gaussian.clone()
        atoms[: rows.shape[0]] = rows
        zero = torch.linalg.vector_norm(atoms, dim=1) == 0
        atoms[zero] = gaussian[zero]
    else:
        atoms = _torch.to_tensor(init, device, dtype).clone()
        if tuple(atoms.shape) != (n_components, n_features):
            raise ValueError(
                f"init must have shape (n_components, n_features) = ({n_components}, {n_features}), "
                f"got {tuple(atoms.shape)}."
            )
        if not bool(torch.isfinite(atoms).all()):
            raise ValueError("init contains NaN or infinity.")
        if bool((torch.linalg.vector_norm(atoms, dim=1) == 0).any()):
            raise ValueError("init has an all-zero atom, which has no direction.")
    return _project_atoms(atoms, "sphere")


def _pursuit_path(
    X_centered,
    selection_atoms,
    atoms,
    n_steps,
    *,
    nonnegative=True,
    residual_threshold=None,
    atom_mask=None,
):
    """``n_steps`` steps of matching pursuit on every row.

    Parameters
    ----------
    X_centered : Tensor of shape (n_samples, n_features)
        Rows minus the pre-bias.
    selection_atoms : Tensor of shape (n_components, n_features)
        Atoms whose correlations pick (``atoms`` itself when tied).
    atoms : Tensor of shape (n_components, n_features)
        Unit decoder atoms subtracted from the residual.
    n_steps : int
    nonnegative : bool, default=True
        Pick ``argmax_j ⟨r, w_j⟩`` and add its positive part (the paper's
        ReLU pursuit); ``False`` is classical matching pursuit, which picks
        ``argmax_j |⟨r, w_j⟩|`` and adds the signed correlation.
    residual_threshold : float or None, default=None
        A row whose residual norm is at most this stops (adaptive sparsity).
    atom_mask : bool Tensor of shape (n_components,) or None
        Atoms that may be picked (atom dropout during training).

    Returns
    -------
    indices : int64 Tensor of shape (n_samples, n_steps)
        Atom picked at every step; -1 where the step added nothing.
    values : Tensor of shape (n_samples, n_steps)
        What each step added to its atom's code.
    residual : Tensor of shape (n_samples, n_features)
        ``X_centered`` minus the reconstruction.
    """
    residual = X_centered.clone()
    n_samples = residual.shape[0]
    indices = torch.full((n_samples, n_steps), -1, dtype=torch.int64, device=residual.device)
    values = residual.new_zeros((n_samples, n_steps))
    active = None
    if residual_threshold is not None:
        active = torch.linalg.vector_norm(residual, dim=1) > residual_threshold
    for step in range(n_steps):
        correlations = residual @ selection_atoms.T
        if nonnegative:
            if atom_mask is not None:
                correlations.masked_fill_(~atom_mask, -torch.inf)
            value, best = correlations.max(dim=1)
            value = value.clamp_min(0.0)
        else:
            strength = correlations.abs()
            if atom_mask is not None:
                strength.masked_fill_(~atom_mask, -torch.inf)
            best = strength.argmax(dim=1)
            value = correlations.gather(1, best[:, None])[:, 0]
        if active is not None:
            value = value * active
        residual.addcmul_(value[:, None], atoms[best], value=-1.0)
        indices[:, step] = torch.where(value != 0, best, -1)
        values[:, step] = value
        if active is not None:
            active &= torch.linalg.vector_norm(residual, dim=1) > residual_threshold
            if not bool(active.any()):
                break
    return indices, values, residual


def _pursuit_indices_from_gram(X_centered, selection_atoms, atoms, n_steps, *, nonnegative=True, atom_mask=None):
    """The atoms :func:`_pursuit_path` picks, from one Gram matrix.

    Subtracting ``v·d_j`` from the residual subtracts ``v·(W d_jᵀ)`` from its
    correlations with the selection atoms ``W``, so after one product
    ``X_centered Wᵀ`` every step updates the correlations with a row of
    the ``(n_components, n_components)`` matrix ``D Wᵀ`` instead of
    multiplying the residual by ``Wᵀ`` again. Cheaper when
    ``n_components <= n_steps · n_samples`` (the Gram matrix is then no
    larger than the correlations a pursuit computes), as in training
    batches. The updated correlations drift from recomputed ones by
    rounding only, so picks can differ from :func:`_pursuit_path` only
    where two correlations tie to that precision; training replays the
    values from the picked atoms anyway.

    Returns
    -------
    indices : int64 Tensor of shape (n_samples, n_steps)
        -1 where the step added nothing.
    """
    correlations = X_centered @ selection_atoms.T
    # Row j: how subtracting atom j moves every correlation (rows gather contiguously).
    gram = atoms @ selection_atoms.T
    n_samples = X_centered.shape[0]
    indices = torch.full((n_samples, n_steps), -1, dtype=torch.int64, device=X_centered.device)
    masked = None if atom_mask is None else ~atom_mask
    for step in range(n_steps):
        strength = correlations if nonnegative else correlations.abs()
        if masked is not None:
            strength = strength.masked_fill(masked, -torch.inf)
        best = strength.argmax(dim=1)
        value = correlations.gather(1, best[:, None])[:, 0]
        if nonnegative:
            value = value.clamp_min(0.0)
        correlations.addcmul_(value[:, None], gram[best], value=-1.0)
        indices[:, step] = torch.where(value != 0, best, -1)
    return indices


def _gather_atoms(atoms, indices):
    """``atoms[indices]`` with a deterministic backward.

    The backward of advanced indexing accumulates with parallel atomic adds
    on a multi-threaded CPU, so the same seed gave slightly different atoms
    from run to run; ``index_select``'s backward adds in a fixed order.
    """
    return atoms.index_select(0, indices.reshape(-1)).view(*indices.shape, atoms.shape[1])


def _pursuit_residual(X_centered, selection_atoms, atoms, indices, *, nonnegative=True):
    """Residual of matching pursuit along a given path, differentiably.

    Replays the pursuit with the atoms of ``indices`` gathered once, so the
    autograd graph holds ``(n_samples, n_steps, n_features)`` numbers and
    gradients reach the atoms and the bias through the values.
    """
    taken = indices >= 0
    picked = indices.clamp_min(0)
    # unbind, not slicing: the backward of unbind is one stack, while every
    # slice's backward would write a zero tensor of the whole gather.
    picked_selection = _gather_atoms(selection_atoms, picked).unbind(dim=1)
    picked_atoms = picked_selection if selection_atoms is atoms else _gather_atoms(atoms, picked).unbind(dim=1)
    residual = X_centered
    for step, (selection_atom, atom) in enumerate(zip(picked_selection, picked_atoms)):
        value = torch.linalg.vecdot(residual, selection_atom)
        if nonnegative:
            value = value.clamp_min(0.0)
        value = value * taken[:, step]
        residual = residual - value[:, None] * atom
    return residual


def _topk_path(X_centered, selection_atoms, atoms, n_steps, *, atom_mask=None):
    """TopK encoder: the ``n_steps`` largest positive correlations with the input.

    Same signature and path format as :func:`_pursuit_path`; all atoms are
    scored once, against the input, so nothing is explained away.
    """
    correlations = X_centered @ selection_atoms.T
    if atom_mask is not None:
        correlations.masked_fill_(~atom_mask, -torch.inf)
    values, indices = correlations.topk(n_steps, dim=1)
    values = values.clamp_min(0.0)
    indices = torch.where(values > 0, indices, -1)
    residual = X_centered - torch.einsum("ns,nsd->nd", values, _gather_atoms(atoms, indices.clamp_min(0)))
    return indices, values, residual


def _topk_residual(X_centered, selection_atoms, atoms, indices):
    """Residual of the TopK encoder on a given support, differentiably."""
    picked = indices.clamp_min(0)
    values = torch.einsum("nd,nsd->ns", X_centered, _gather_atoms(selection_atoms, picked)).clamp_min(0.0)
    values = values * (indices >= 0)
    return X_centered - torch.einsum("ns,nsd->nd", values, _gather_atoms(atoms, picked))


def _codes_from_path(indices, values, n_components):
    """Dense codes: every step's value added to its atom's column."""
    codes = values.new_zeros((indices.shape[0], n_components))
    # Steps marked -1 carry value 0, so adding them to column 0 is harmless.
    return codes.scatter_add_(1, indices.clamp_min(0), values)


def _revival_bonus(residual, selection_atoms, indices):
    """Mean positive correlation of the final residuals with the unused atoms.

    Subtracted from the loss (times ``revive_dead``), it pulls the atoms that
    no row of the batch picked towards the directions left unexplained.
    """
    unused = torch.ones(selection_atoms.shape[0], dtype=torch.bool, device=indices.device)
    unused[indices[indices >= 0]] = False
    if not bool(unused.any()):
        return residual.new_zeros(())
    return torch.relu(residual.detach() @ selection_atoms[unused].T).mean()


_ENCODERS = {"matching_pursuit": _pursuit_path, "topk": _topk_path}


# ---------------------------------------------------------------------------
# The trained module, its loss and the callbacks of its training loop.
# ---------------------------------------------------------------------------


class _SparseAutoencoderModule(torch.nn.Module):
    """Atoms, optional untied selection atoms and the pre-bias, as parameters.

    ``forward`` returns ``(residual, indices)``: the reconstruction error of
    every row (differentiable) and the atoms its encoder picked.
    """

    def __init__(self, atoms, bias, *, selection_atoms, fit_bias, encoder, n_steps, nonnegative):
        super().__init__()
        self.atoms = torch.nn.Parameter(atoms)
        self.untied_selection = None if selection_atoms is None else torch.nn.Parameter(selection_atoms)
        self.bias = torch.nn.Parameter(bias, requires_grad=fit_bias)
        self.encoder = encoder
        self.n_steps = n_steps
        self.nonnegative = nonnegative
        self.atom_mask = None  # set per batch by _AtomDropout

    @property
    def selection_atoms(self):
        return self.atoms if self.untied_selection is None else self.untied_selection

    def forward(self, X):
        X_centered = X - self.bias
        selection, atoms = self.selection_atoms, self.atoms
        with torch.no_grad():
            if self.encoder == "topk":
                indices = _topk_path(X_centered, selection, atoms, self.n_steps, atom_mask=self.atom_mask)[0]
            else:
                options = {"nonnegative": self.nonnegative, "atom_mask": self.atom_mask}
                if atoms.shape[0] <= self.n_steps * X.shape[0]:
                    indices = _pursuit_indices_from_gram(X_centered, selection, atoms, self.n_steps, **options)
                else:
                    indices = _pursuit_path(X_centered, selection, atoms, self.n_steps, **options)[0]
        if self.encoder == "topk":
            return _topk_residual(X_centered, selection, atoms, indices), indices
        return _pursuit_residual(X_centered, selection, atoms, indices, nonnegative=self.nonnegative), indices


class _ReconstructionLoss(torch.nn.Module):
    """Mean squared residual norm per row, minus the dead-atom revival bonus."""

    def __init__(self, revive_dead=0.0):
        super().__init__()
        self.revive_dead = revive_dead

    def forward(self, residual, indices, selection_atoms, *, training):
        loss = residual.square().sum(dim=1).mean()
        if training and self.revive_dead > 0:
            loss = loss - self.revive_dead * _revival_bonus(residual, selection_atoms, indices)
        return loss


class _AutoencoderNet(NeuralNet):
    """skorch net whose target is its input: the loss reads only the residual."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        residual, indices = y_pred
        return self.criterion_(residual, indices, self.module_.selection_atoms, training=training)


class _LinearWarmup:
    """Step-size factor ``min(1, (step + 1) / n_steps)``: a class, so that the fitted net pickles."""

    def __init__(self, n_steps):
        self.n_steps = n_steps

    def __call__(self, step):
        return min(1.0, (step + 1) / self.n_steps)


class _ProjectAtoms(Callback):
    """Put the decoder atoms back on the sphere (or in the ball) after every step."""

    def __init__(self, normalize="sphere"):
        self.normalize = normalize

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            with torch.no_grad():
                _project_atoms(net.module_.atoms, self.normalize)


class _AtomDropout(Callback):
    """Hide a random fraction of the atoms from selection, batch by batch.

    Only during the first ``n_epochs`` epochs of the net's life (they count
    across ``partial_fit`` calls), as the paper's training recipe does.
    """

    def __init__(self, rate=0.0, n_epochs=1, seed=0):
        self.rate = rate
        self.n_epochs = n_epochs
        self.seed = seed

    def initialize(self):
        self.rng_ = np.random.default_rng(self.seed)
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        module = net.module_
        module.atom_mask = None
        if training and len(net.history) <= self.n_epochs:
            keep = self.rng_.random(module.atoms.shape[0]) >= self.rate
            if not keep.any():
                keep[self.rng_.integers(keep.size)] = True
            module.atom_mask = torch.from_numpy(keep).to(module.atoms.device)

    def on_train_end(self, net, **kwargs):
        net.module_.atom_mask = None


class _AtomUsage(Callback):
    """How often each atom was picked during the current epoch."""

    def on_epoch_begin(self, net, **kwargs):
        atoms = net.module_.atoms
        self.counts_ = torch.zeros(atoms.shape[0], dtype=torch.int64, device=atoms.device)

    def on_batch_end(self, net, training=False, y_pred=None, **kwargs):
        if training:
            indices = y_pred[1]
            self.counts_ += torch.bincount(indices[indices >= 0], minlength=self.counts_.shape[0])


# ---------------------------------------------------------------------------
# Estimators
# ---------------------------------------------------------------------------


class _BaseSparseAutoencoder(
    SAELensFolderMixin, TorchEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Training, encoding and decoding shared by the sparse autoencoders.

    Subclasses set ``_encoder`` (a key of ``_ENCODERS``) and may add
    encoder parameters (``_encoder_options``).
    """

    _encoder = None

    # The keyword options of transform and score choose how to encode; they
    # are not per-sample metadata for a meta-estimator to route.
    __metadata_request__transform = {"k": UNUSED}
    __metadata_request__score = {"k": UNUSED}

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "tied": ["boolean"],
        "fit_bias": ["boolean"],
        "bias_init": [StrOptions({"geometric_median", "mean", "zeros"})],
        "normalize": [StrOptions({"sphere", "ball"})],
        "atom_dropout": [Interval(Real, 0, 1, closed="left")],
        "dropout_epochs": [Interval(Integral, 0, None, closed="left")],
        "revive_dead": [Interval(Real, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "lr_warmup_steps": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
        "k_inference": [Interval(Integral, 1, None, closed="left"), None],
        "init": [StrOptions({"gaussian", "data"}), "array-like"],
        "callbacks": [list, None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        n_components=1024,
        k=16,
        *,
        tied=True,
        fit_bias=True,
        bias_init="geometric_median",
        normalize="sphere",
        atom_dropout=0.0,
        dropout_epochs=1,
        revive_dead=0.0,
        learning_rate=1e-3,
        lr_warmup_steps=0,
        batch_size=256,
        max_epochs=10,
        tol=None,
        grad_clip=1.0,
        k_inference=None,
        init="gaussian",
        device="auto",
        dtype=None,
        random_state=None,
        verbose=0,
        callbacks=None,
    ):
        self.n_components = n_components
        self.k = k
        self.tied = tied
        self.fit_bias = fit_bias
        self.bias_init = bias_init
        self.normalize = normalize
        self.atom_dropout = atom_dropout
        self.dropout_epochs = dropout_epochs
        self.revive_dead = revive_dead
        self.learning_rate = learning_rate
        self.lr_warmup_steps = lr_warmup_steps
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.grad_clip = grad_clip
        self.k_inference = k_inference
        self.init = init
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _encoder_options(self):
        """Keyword arguments of the encoder beyond the atoms and the step count."""
        return {}

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the atoms and the bias with ``max_epochs`` epochs of Adam.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted autoencoder.
        """
        X_t, _ = self._validate_tensor(X, reset=True)
        self._start(X_t)
        self._train(X_t, self.max_epochs)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One epoch over ``X`` (in mini-batches), continuing the training.

        The first call initialises the bias and the atoms from ``X``; later
        calls keep the optimiser's state, so a stream of activation chunks
        too large for memory trains the model chunk by chunk.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            One chunk of activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated autoencoder.
        """
        first_call = not hasattr(self, "net_")
        X_t, _ = self._validate_tensor(X, reset=first_call)
        if first_call:
            self._start(X_t)
        self._train(X_t, 1)
        return self

    def _check_n_steps(self, n_steps, name):
        if n_steps > self.n_components:
            raise ValueError(
                f"{name}={n_steps} exceeds n_components={self.n_components}: an encoder step "
                "beyond the number of atoms cannot select a new one. Lower it or add atoms."
            )

    def _start(self, X_t):
        """Fresh bias, atoms, module and skorch net for ``X_t``."""
        self._check_n_steps(self.k, "k")
        if self.k_inference is not None:
            self._check_n_steps(self.k_inference, "k_inference")
        self._clear_device_cache()
        seeds = _torch.draw_seeds(self.random_state, size=3)
        generator = _torch.make_generator(int(seeds[0]))
        with torch.no_grad():
            bias = _initial_bias(X_t, self.bias_init if self.fit_bias else "zeros", generator)
            atoms = _initial_atoms(X_t - bias, self.n_components, self.init, generator)
        module = _SparseAutoencoderModule(
            atoms,
            bias,
            selection_atoms=None if self.tied else atoms.clone(),
            fit_bias=self.fit_bias,
            encoder=self._encoder,
            n_steps=self.k,
            nonnegative=self._encoder_options().get("nonnegative", True),
        )
        callbacks = [("project_atoms", _ProjectAtoms(self.normalize)), ("atom_usage", _AtomUsage())]
        if self.atom_dropout > 0 and self.dropout_epochs > 0:
            callbacks.append(("atom_dropout", _AtomDropout(self.atom_dropout, self.dropout_epochs, int(seeds[2]))))
        if self.lr_warmup_steps:
            warmup = LRScheduler(policy=LambdaLR, lr_lambda=_LinearWarmup(self.lr_warmup_steps), step_every="batch")
            callbacks.append(("lr_warmup", warmup))
        self.net_ = make_net(
            _AutoencoderNet,
            module,
            _ReconstructionLoss(self.revive_dead),
            device=X_t.device,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=int(seeds[1]),
            tol=self.tol,
            grad_clip=self.grad_clip,
            verbose=self.verbose,
            user_callbacks=self.callbacks,
            callbacks=callbacks,
        )

    def _train(self, X_t, n_epochs):
        """Run ``n_epochs`` epochs of the net and copy its state into attributes."""
        module = self.net_.module_
        self._check_n_steps(self.k, "k")
        module.n_steps = self.k
        self.net_.partial_fit(X_t.to(module.atoms.dtype), epochs=n_epochs)
        self._clear_device_cache()
        # Copies, not views: further training must not change fitted arrays.
        self.components_ = _torch.to_numpy(module.atoms.detach().clone())
        self.encoder_components_ = (
            self.components_ if self.tied else _torch.to_numpy(module.selection_atoms.detach().clone())
        )
        self.bias_ = _torch.to_numpy(module.bias.detach().clone())
        self.n_components_ = self.components_.shape[0]
        self.loss_curve_ = epoch_losses(self.net_)
        self.n_iter_ = len(self.loss_curve_)
        self.n_steps_ = int(sum(self.net_.history[:, "train_batch_count"]))
        self.atom_usage_ = _torch.to_numpy(dict(self.net_.callbacks_)["atom_usage"].counts_.clone())
        self.dead_atoms_ = self.atom_usage_ == 0

    # -- encoding --------------------------------------------------------------
    def _resolve_steps(self, k):
        if k is None:
            k = self.k if self.k_inference is None else self.k_inference
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if k > self.n_components_:
            raise ValueError(f"k={k} exceeds n_components_={self.n_components_}.")
        return int(k)

    def _encoded_batches(self, X_t, k, columns=None, **options):
        """Yield ``(rows, indices, values, residual)`` batch by batch.

        With ``columns``, the rows are encoded from those columns only
        (bi-cross-validation's encoder): every atom is cut to them and
        rescaled to unit norm (its selection atom by the same factor), the
        encoder runs unchanged on those columns of ``X − bias_``, and the
        values are divided back by the factors, so that ``codes @
        components_ + bias_`` reconstructs every column. For matching pursuit
        this is the pursuit over the restricted, renormalised dictionary; for
        TopK, whose correlations over half the columns are about half the
        full ones, the rescaling keeps the codes on the full encoder's scale.
        The residual is that of the given columns.
        """
        n_steps = self._resolve_steps(k)
        device, dtype = X_t.device, X_t.dtype
        atoms = self._on_device("components_", device, dtype)
        selection = self._on_device("encoder_components_", device, dtype)
        bias = self._on_device("bias_", device, dtype)
        scale = None
        if columns is not None:
            atoms, selection, bias = atoms[:, columns], selection[:, columns], bias[columns]
            # An atom with no weight on these columns can explain nothing there.
            norms = torch.linalg.vector_norm(atoms, dim=1)
            scale = torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(norms))
            atoms, selection = atoms * scale[:, None], selection * scale[:, None]
            if options.get("residual_threshold") is not None:
                # A residual norm over a share of the columns is about √share of the full one.
                options["residual_threshold"] *= math.sqrt(len(columns) / X_t.shape[1])
        encode = _ENCODERS[self._encoder]
        slices = _torch.batch_slices(X_t.shape[0], self.batch_size)
        with torch.no_grad():
            for rows in _torch.progress(slices, verbose=self.verbose, desc="encoding"):
                X_rows = X_t[rows] if columns is None else X_t[rows][:, columns]
                indices, values, residual = encode(X_rows - bias, selection, atoms, n_steps, **options)
                if scale is not None:
                    # Steps marked -1 carry value 0, so reading atom 0's factor for them is harmless.
                    values = values * scale[indices.clamp_min(0)]
                yield rows, indices, values, residual

    def _visible_codes(self, X_t, visible, k=None):
        """Codes of the rows of ``X_t`` encoded from the ``visible`` columns only (see :meth:`_encoded_batches`)."""
        codes = X_t.new_zeros((X_t.shape[0], self.n_components_))
        for rows, indices, values, _ in self._encoded_batches(X_t, k, columns=visible, **self._encoder_options()):
            codes[rows] = _codes_from_path(indices, values, self.n_components_)
        return codes

    def _validated_rows(self, X):
        check_is_fitted(self)
        return self._validate_tensor(X, reset=False)

    def _encode(self, X, k, **options):
        """Codes, and whether the caller gave a tensor."""
        X_t, as_tensor = self._validated_rows(X)
        codes = X_t.new_zeros((X_t.shape[0], self.n_components_))
        for rows, indices, values, _ in self._encoded_batches(X_t, k, **options):
            codes[rows] = _codes_from_path(indices, values, self.n_components_)
        return codes, as_tensor

    def _encode_path(self, X, k, **options):
        X_t, as_tensor = self._validated_rows(X)
        n_steps = self._resolve_steps(k)
        indices = torch.empty((X_t.shape[0], n_steps), dtype=torch.int64, device=X_t.device)
        values = X_t.new_empty((X_t.shape[0], n_steps))
        for rows, batch_indices, batch_values, _ in self._encoded_batches(X_t, n_steps, **options):
            indices[rows], values[rows] = batch_indices, batch_values
        return _torch.to_output(indices, as_tensor), _torch.to_output(values, as_tensor)

    def inverse_transform(self, X):
        """Map codes back to activations: ``X @ components_ + bias_``.

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
        atoms = self._on_device("components_", codes.device, codes.dtype)
        bias = self._on_device("bias_", codes.device, codes.dtype)
        return _torch.to_output(torch.addmm(bias, codes, atoms), as_tensor)

    def _score(self, X, k, **options):
        X_t, _ = self._validated_rows(X)
        residual_ss = 0.0
        for *_, residual in self._encoded_batches(X_t, k, **options):
            residual_ss += float(torch.sum(residual.square(), dtype=torch.float64))
        return _r2(residual_ss, _total_sum_of_squares(X_t, self.batch_size))

    def top_activating(self, X, n=25):
        """Rows of ``X`` that use each atom most strongly.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Rows to rank (for instance token activations).
        n : int, default=25
            Rows per atom.

        Returns
        -------
        indices : ndarray of shape (n_components, min(n, n_samples))
            Row indices, strongest code first.
        """
        codes, _ = self._encode(X, None, **self._encoder_options())
        return _top_rows(_torch.to_numpy(codes), n)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]


_SHARED_PARAMETERS_DOC = """
    n_components : int, default=1024
        Number of atoms ``p`` (usually more than ``n_features``).

    k : int, default=16
        Encoder steps during training: at most ``k`` atoms per row. Also
        the default at inference (see ``k_inference``).

    tied : bool, default=True
        Select atoms with the decoder atoms themselves. ``False`` learns
        separate selection atoms (``encoder_components_``), initialised as
        a copy of the decoder atoms and not re-normalised.

    fit_bias : bool, default=True
        Learn a pre-bias ``b`` subtracted before encoding and added back
        after decoding; ``False`` fixes it at zero.

    bias_init : {"geometric_median", "mean", "zeros"}, default="geometric_median"
        Initial bias: the geometric median of (a sample of up to 16 384
        rows of) the training data, their mean, or zeros.

    normalize : {"sphere", "ball"}, default="sphere"
        After every optimiser step, rescale each decoder atom to unit norm
        ("sphere") or to norm at most 1 ("ball").

    atom_dropout : float in [0, 1), default=0.0
        Fraction of atoms hidden from selection in every training batch ...

    dropout_epochs : int, default=1
        ... during the first ``dropout_epochs`` epochs.

    revive_dead : float, default=0.0
        Weight of a bonus, subtracted from the loss, equal to the mean
        positive correlation of the final residuals with the atoms that no
        row of the batch picked; pulls unused atoms towards what is left
        unexplained. 0 disables it.

    learning_rate : float, default=1e-3
        Adam's step size.

    lr_warmup_steps : int, default=0
        Raise the step size linearly from ``learning_rate / lr_warmup_steps``
        to ``learning_rate`` over the first ``lr_warmup_steps`` optimiser
        steps, as SAE training recipes do (SAELens, sparsify); 0 starts at
        ``learning_rate``.

    batch_size : int, default=256
        Rows per training batch, and per encoding batch (bounds the memory
        of ``transform`` and ``score``).

    max_epochs : int, default=10
        Epochs of ``fit``.

    tol : float or None, default=None
        Stop ``fit`` early when an epoch's loss fails to improve on the
        best so far by this relative amount; ``None`` runs every epoch.

    grad_clip : float or None, default=1.0
        Clip the gradient norm at this value; ``None`` does not clip.

    k_inference : int or None, default=None
        Default encoder steps in ``transform``, ``transform_path`` and
        ``score``; ``None`` uses ``k``.

    init : {"gaussian", "data"} or array-like of shape (n_components, n_features), default="gaussian"
        Initial atoms, normalised: Gaussian directions, random centred
        training rows, or the given array.

    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    dtype : {"float32", "float64"} or None, default=None
        Floating type of the computation; ``None`` follows the input
        (float64 stays float64, anything else becomes float32).

    random_state : int, RandomState instance or None, default=None
        Seeds the initial bias sample, the atoms, the batch order and the
        atom dropout.

    verbose : int, default=0
        A progress bar over the batches of every epoch (and of encoding)
        when ``>= 1``.

    callbacks : list of skorch Callback or (name, Callback) pairs, default=None
        Further skorch callbacks, run during training after the library's
        own: a :class:`~sklearn_interp.manifold.LocalIDTracker`,
        ``skorch.callbacks.EpochScoring``, ``LRScheduler``, ..."""

_ATTRIBUTES_DOC = """
    components_ : ndarray of shape (n_components, n_features)
        Decoder atoms, unit rows (norm at most 1 with ``normalize="ball"``).

    encoder_components_ : ndarray of shape (n_components, n_features)
        Selection atoms; the same array as ``components_`` when tied.

    bias_ : ndarray of shape (n_features,)
        Pre-bias ``b`` (zeros when ``fit_bias=False``).

    n_components_ : int
        Number of atoms.

    n_iter_ : int
        Epochs run, over all ``fit`` / ``partial_fit`` calls since the last
        ``fit``.

    n_steps_ : int
        Optimiser steps run.

    loss_curve_ : ndarray of shape (n_epochs,)
        Mean training loss per epoch: ``‖x − x̂‖²`` per row, averaged
        (minus the revival bonus when ``revive_dead > 0``).

    atom_usage_ : ndarray of shape (n_components,)
        How often each atom was picked during the last epoch.

    dead_atoms_ : ndarray of shape (n_components,), dtype=bool
        Atoms never picked during the last epoch.

    net_ : skorch.NeuralNet
        The net that trained the model: its ``history`` and optimiser
        state (``partial_fit`` continues from it).

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (n_features,)
        Names of features seen during ``fit``, when ``X`` has string
        column names."""


def _with_shared_doc(cls):
    cls.__doc__ = cls.__doc__.replace("    %(shared_parameters)s", _SHARED_PARAMETERS_DOC.strip("\n")).replace(
        "    %(attributes)s", _ATTRIBUTES_DOC.strip("\n")
    )
    return cls


@_with_shared_doc
class MatchingPursuitSAE(_BaseSparseAutoencoder):
    """Sparse autoencoder whose encoder is ``k`` steps of matching pursuit.

    Reconstructs activations as ``x ≈ b + zᵀD`` with unit-norm atoms ``D``
    (``components_``), a pre-bias ``b`` and non-negative codes ``z`` found
    greedily: ``k`` times, pick the atom most correlated with the residual,
    add that correlation to its code and subtract it from the residual
    (Costa et al., 2025). Every residual is orthogonal to the atom just
    picked, so later steps explain what earlier atoms left — a hierarchy of
    features that a TopK encoder, which scores all atoms against the input
    at once, cannot represent. The number of steps can change after
    training (adaptive sparsity).

    Read more in the :ref:`User Guide <mp_sae>`.

    Parameters
    ----------
    %(shared_parameters)s

    nonnegative : bool, default=True
        ReLU pursuit (the paper's): pick the largest correlation and add
        its positive part, so codes are non-negative. ``False`` is
        classical matching pursuit: pick the largest absolute correlation
        and add it with its sign.

    residual_threshold : float or None, default=None
        Default for ``transform``: a row stops once its residual norm is at
        most this (fewer atoms for rows that are already explained).

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    TopKSAE : The one-step TopK encoder trained the same way.
    sklearn.decomposition.SparseCoder : Orthogonal matching pursuit (and
        other solvers) on a fixed dictionary.
    sklearn.linear_model.OrthogonalMatchingPursuit : OMP regression.

    References
    ----------
    .. [1] V. Costa, T. Fel, E. S. Lubana, B. Tolooshams, D. Ba, "From Flat
       to Hierarchical: Extracting Sparse Representations with Matching
       Pursuit", NeurIPS 2025, arXiv:2506.03093.
    .. [2] S. G. Mallat, Z. Zhang, "Matching pursuits with time-frequency
       dictionaries", IEEE Trans. Signal Processing 41(12), 1993.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import MatchingPursuitSAE
    >>> rng = np.random.RandomState(0)
    >>> atoms = rng.randn(32, 16)
    >>> atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    >>> codes = rng.exponential(size=(2000, 32)) * (rng.rand(2000, 32) < 0.1)
    >>> X = codes @ atoms + 3.0                     # sparse mixtures plus an offset
    >>> sae = MatchingPursuitSAE(n_components=32, k=4, max_epochs=20, random_state=0)
    >>> Z = sae.fit_transform(X)
    >>> Z.shape, bool((Z >= 0).all()), int((Z > 0).sum(axis=1).max()) <= 4
    ((2000, 32), True, True)
    >>> sae.score(X, k=8) > sae.score(X, k=4) > sae.score(X, k=1)
    True
    """

    _encoder = "matching_pursuit"

    __metadata_request__transform = {"k": UNUSED, "residual_threshold": UNUSED}

    _parameter_constraints: dict = {
        **_BaseSparseAutoencoder._parameter_constraints,
        "nonnegative": ["boolean"],
        "residual_threshold": [Interval(Real, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        n_components: int = 1024,
        k: int = 16,
        *,
        tied: bool = True,
        fit_bias: bool = True,
        bias_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median",
        nonnegative: bool = True,
        normalize: Literal["sphere", "ball"] = "sphere",
        atom_dropout: float = 0.0,
        dropout_epochs: int = 1,
        revive_dead: float = 0.0,
        learning_rate: float = 1e-3,
        lr_warmup_steps: int = 0,
        batch_size: int = 256,
        max_epochs: int = 10,
        tol: float | None = None,
        grad_clip: float | None = 1.0,
        k_inference: int | None = None,
        residual_threshold: float | None = None,
        init: Literal["gaussian", "data"] | ArrayLike = "gaussian",
        device: str = "auto",
        dtype: Literal["float32", "float64"] | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[skorch.callbacks.Callback | tuple[str, skorch.callbacks.Callback]] | None = None,
    ) -> None:
        super().__init__(
            n_components,
            k,
            tied=tied,
            fit_bias=fit_bias,
            bias_init=bias_init,
            normalize=normalize,
            atom_dropout=atom_dropout,
            dropout_epochs=dropout_epochs,
            revive_dead=revive_dead,
            learning_rate=learning_rate,
            lr_warmup_steps=lr_warmup_steps,
            batch_size=batch_size,
            max_epochs=max_epochs,
            tol=tol,
            grad_clip=grad_clip,
            k_inference=k_inference,
            init=init,
            device=device,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
        )
        self.nonnegative = nonnegative
        self.residual_threshold = residual_threshold

    def _encoder_options(self, residual_threshold=None):
        if residual_threshold is None:
            residual_threshold = self.residual_threshold
        elif not isinstance(residual_threshold, Real) or not residual_threshold >= 0:
            raise ValueError(f"residual_threshold must be a non-negative number, got {residual_threshold!r}.")
        return {"nonnegative": self.nonnegative, "residual_threshold": residual_threshold}

    def transform(
        self,
        X: ArrayLike | torch.Tensor,
        *,
        k: int | None = None,
        residual_threshold: float | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Codes of ``X``: ``k`` steps of matching pursuit per row.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        k : int or None, default=None
            Steps (at most ``n_components``); ``None`` uses ``k_inference``,
            else ``k``. More steps than in training keep lowering the
            residual.
        residual_threshold : float or None, default=None
            Stop a row once its residual norm is at most this; ``None``
            uses the parameter of the same name.

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n_components)
            At most ``k`` non-zeros per row (an atom picked twice adds up),
            non-negative when ``nonnegative``; a tensor on the estimator's
            device when ``X`` is a tensor.
        """
        codes, as_tensor = self._encode(X, k, **self._encoder_options(residual_threshold))
        return _torch.to_output(codes, as_tensor)

    def transform_path(
        self,
        X: ArrayLike | torch.Tensor,
        *,
        k: int | None = None,
        residual_threshold: float | None = None,
    ) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        """The atoms picked at every step, in order: the pursuit's hierarchy.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        k : int or None, default=None
            Steps, as in :meth:`transform`.
        residual_threshold : float or None, default=None
            As in :meth:`transform`.

        Returns
        -------
        indices : ndarray or torch.Tensor of shape (n_samples, k), dtype int64
            Atom picked at each step; -1 where the step added nothing (all
            correlations non-positive, or the row had stopped).
        values : ndarray or torch.Tensor of shape (n_samples, k)
            What each step added to its atom's code;
            ``transform(X)[i, j]`` is the sum of ``values[i]`` where
            ``indices[i] == j``.
        """
        return self._encode_path(X, k, **self._encoder_options(residual_threshold))

    def score(
        self,
        X: ArrayLike | torch.Tensor,
        y: object = None,
        *,
        k: int | None = None,
    ) -> float:
        """Coefficient of determination of the reconstruction of ``X``.

        ``R² = 1 − ‖X − X̂‖² / ‖X − mean(X)‖²`` with per-feature means (the
        variance-weighted R² of scikit-learn, not the scalar-mean baseline
        of some SAE libraries), ``X̂`` the ``k``-step reconstruction.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.
        k : int or None, default=None
            Steps, as in :meth:`transform`.

        Returns
        -------
        r2 : float
            At most 1; higher is better.
        """
        return self._score(X, k, **self._encoder_options())


@_with_shared_doc
class TopKSAE(_BaseSparseAutoencoder):
    """Sparse autoencoder with a TopK encoder, trained like :class:`MatchingPursuitSAE`.

    Codes are the ``k`` largest positive correlations of ``x − b`` with the
    selection atoms, all computed at once against the input (Gao et al.,
    2024); decoding is ``b + zᵀD``. The baseline against which matching
    pursuit is measured: same atoms, bias, loss and training loop, one
    encoder step instead of ``k``.

    Read more in the :ref:`User Guide <mp_sae>`.

    Parameters
    ----------
    %(shared_parameters)s

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    MatchingPursuitSAE : The same autoencoder with a matching-pursuit
        encoder.

    References
    ----------
    .. [1] L. Gao, T. Dupré la Tour, H. Tillman, G. Goh, R. Troll, A.
       Radford, I. Sutskever, J. Leike, J. Wu, "Scaling and evaluating
       sparse autoencoders", arXiv:2406.04093, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.decomposition import TopKSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.exponential(size=(500, 32)) @ rng.randn(32, 16)
    >>> sae = TopKSAE(n_components=32, k=4, max_epochs=5, random_state=0).fit(X)
    >>> Z = sae.transform(X)
    >>> bool((Z >= 0).all()), int((Z > 0).sum(axis=1).max()) <= 4
    (True, True)
    """

    _encoder = "topk"

    def transform(
        self,
        X: ArrayLike | torch.Tensor,
        *,
        k: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Codes of ``X``: the ``k`` largest positive correlations per row.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        k : int or None, default=None
            Atoms per row (at most ``n_components``); ``None`` uses
            ``k_inference``, else ``k``.

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n_components)
            Non-negative, at most ``k`` non-zeros per row.
        """
        codes, as_tensor = self._encode(X, k)
        return _torch.to_output(codes, as_tensor)

    def score(
        self,
        X: ArrayLike | torch.Tensor,
        y: object = None,
        *,
        k: int | None = None,
    ) -> float:
        """Coefficient of determination of the reconstruction of ``X``.

        As :meth:`MatchingPursuitSAE.score`: per-feature centring.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.
        k : int or None, default=None
            Atoms per row, as in :meth:`transform`.

        Returns
        -------
        r2 : float
            At most 1; higher is better.
        """
        return self._score(X, k)
