"""Gradient-descent training on skorch, set up once for every estimator.

Estimators that learn by gradient descent keep their algorithm in a
``torch.nn.Module`` and hand the loop to a skorch ``NeuralNet`` built by
:func:`make_net`: Adam, mini-batches that are reshuffled every epoch from a
seed, gradient-norm clipping, early stopping on the training loss, a
progress bar with ``verbose``, and any callbacks the method adds (for
instance a projection after every optimiser step).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, GradientNormClipping, ProgressBar
from skorch.utils import noop

from . import _torch


class ShuffledBatches:
    """skorch iterator over row batches of the tensors in a skorch ``Dataset``.

    It stands in for a ``DataLoader``: a batch is one gather from the tensor
    instead of ``batch_size`` single-row look-ups and a collate, and the
    shuffle comes from an integer seed and the epoch count, so a net that
    holds this iterator pickles (a ``torch.Generator`` does not) and the
    same seed gives the same batches.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (a tensor) and ``y`` (a tensor or ``None``).
    batch_size : int
    shuffle : bool, default=True
    seed : int, default=0
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._epoch = 0

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        X, y = self.dataset.X, self.dataset.y
        n_samples = X.shape[0]
        if self.shuffle:
            # Seeding by (seed, epoch) gives each epoch its own order.
            order = np.random.default_rng([self.seed, self._epoch]).permutation(n_samples)
            order = torch.from_numpy(order).to(X.device)
        else:
            order = torch.arange(n_samples, device=X.device)
        self._epoch += 1
        for batch in _torch.batch_slices(n_samples, self.batch_size):
            rows = order[batch]
            yield X[rows], (None if y is None else y[rows])


def make_net(
    net_class,
    module,
    criterion,
    *,
    device,
    batch_size,
    learning_rate,
    seed,
    tol=None,
    grad_clip=None,
    verbose=0,
    callbacks=(),
    user_callbacks=None,
    train_split=None,
    iterator_train=ShuffledBatches,
    **net_params,
):
    """A skorch net over an initialised ``module``, ready for ``partial_fit``.

    Parameters
    ----------
    net_class : type
        ``skorch.NeuralNet`` or a subclass (usually one that overrides
        ``get_loss``).
    module : torch.nn.Module
        Initialised module, already on ``device`` with the right dtype.
    criterion : torch.nn.Module
        Initialised loss module.
    device : torch.device
    batch_size : int
    learning_rate : float
        Adam's step size.
    seed : int
        Seed of the batch order.
    tol : float or None, default=None
        Stop when the epoch's training loss fails to improve on the best
        so far by this relative amount; ``None`` runs every epoch.
    grad_clip : float or None, default=None
        Clip the gradient norm of all parameters to this value.
    verbose : int, default=0
        ``>= 1`` shows a progress bar over the batches of every epoch;
        ``>= 2`` also skorch's table of epoch losses.
    callbacks : sequence of (name, skorch.callbacks.Callback)
        Method-specific callbacks, run after the shared ones.
    user_callbacks : list of Callback or (name, Callback) pairs, default=None
        The estimator's ``callbacks`` parameter, run last; see
        :func:`named_callbacks`.
    train_split : callable or None, default=None
        skorch's split of the training data into training and validation
        sets; ``None`` trains on everything.
    iterator_train : type, default=ShuffledBatches
        The batch iterator; a subclass of :class:`ShuffledBatches` (it gets
        the ``seed``).
    **net_params
        Further arguments of the net, for instance
        ``optimizer__param_groups`` for per-layer step sizes.

    Returns
    -------
    net : skorch.NeuralNet
        Initialised; ``net.partial_fit(X, epochs=n)`` trains it.
    """
    shared = []
    if grad_clip is not None:
        shared.append(("grad_clip", GradientNormClipping(gradient_clip_value=grad_clip)))
    if tol is not None:
        shared.append(
            (
                "early_stopping",
                EarlyStopping(
                    monitor="train_loss",
                    patience=1,
                    threshold=tol,
                    threshold_mode="rel",
                    sink=print if verbose else noop,
                ),
            )
        )
    if verbose:
        shared.append(("progress", ProgressBar(postfix_keys=["train_loss"])))
    own = shared + list(callbacks)
    net = net_class(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.Adam,
        lr=learning_rate,
        batch_size=batch_size,
        train_split=train_split,
        iterator_train=iterator_train,
        iterator_train__seed=int(seed),
        device=str(device),
        callbacks=own + named_callbacks(user_callbacks, taken=[name for name, _ in own]),
        verbose=max(0, verbose - 1),
        **net_params,
    )
    return net.initialize()


def named_callbacks(callbacks, *, taken=()):
    """An estimator's ``callbacks`` parameter as checked ``(name, callback)`` pairs.

    A bare callback is named after its class, as skorch names it; names
    must be unique and differ from the callbacks the library adds itself
    (``taken``), which a user's callback would otherwise silently replace.
    """
    if callbacks is None:
        return []
    pairs = []
    for entry in callbacks:
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
            name, callback = entry
        else:
            name, callback = type(entry).__name__, entry
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must hold skorch callbacks or (name, callback) pairs; got {type(callback).__name__}."
            )
        pairs.append((name, callback))
    names = [name for name, _ in pairs]
    clashes = sorted({name for name in names if names.count(name) > 1 or name in taken})
    if clashes:
        raise ValueError(
            f"callbacks: the names {clashes} are given twice or taken by the estimator's own callbacks "
            f"{sorted(taken)}; give each callback a distinct name with a (name, callback) pair."
        )
    return pairs


def init_layer_(layer, generator):
    """Draw a ``Linear`` or ``Conv2d`` layer's weights and bias from ``generator``, in place.

    The distribution is torch's default, U(±1/√fan_in) (Kaiming-uniform with
    a = √5), but drawn from the estimator's generator so that
    ``random_state`` decides it.
    """
    bound = 1.0 / math.sqrt(layer.weight[0].numel())
    with torch.no_grad():
        _torch.uniform_(layer.weight, -bound, bound, generator)
        if layer.bias is not None:
            _torch.uniform_(layer.bias, -bound, bound, generator)
    return layer


def evaluate_in_batches(module, function, X, batch_size):
    """``function`` over row batches of ``X`` with ``module`` in eval mode and without gradients.

    Returns the list of per-batch outputs; the module's training mode is
    restored afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return [function(X[rows]) for rows in _torch.batch_slices(X.shape[0], batch_size)]
    finally:
        module.train(was_training)


def epoch_losses(net):
    """The mean training loss of every epoch the net has run."""
    return np.asarray(net.history[:, "train_loss"], dtype=np.float64)
