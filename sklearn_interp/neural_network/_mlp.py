"""Torch classifiers whose gradients can be explained.

:class:`TorchMLPClassifier` trains a multilayer perceptron with skorch,
optionally adversarially (FGSM or L∞ PGD, as in Madry et al. 2018), which
is what the DiffROAR experiment of Shah et al. (2021) compares: the input
gradients of standard and of robust models. :class:`TorchModuleClassifier`
presents a torch module trained elsewhere as a fitted scikit-learn
classifier. Both expose ``module_``, the differentiable map from inputs to
logits that gradient attributions need.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch import NeuralNet
from skorch.dataset import unpack_data

from .. import _torch
from .._training import epoch_losses, evaluate_in_batches, init_layer_, make_net
from ..base import TorchClassifierMixin, TorchEstimatorMixin

if TYPE_CHECKING:
    import skorch


def _adversarial_examples(module, X, y, *, epsilon, n_steps, step_size, random_start, generator):
    """L∞-bounded inputs that raise the cross-entropy of ``module`` (FGSM / PGD).

    Projected gradient ascent on the loss in the ball ``‖δ‖∞ ≤ epsilon``
    around ``X``: ``n_steps`` signed-gradient steps of ``step_size``, from a
    uniform random start when ``random_start``. FGSM is one step of size
    ``epsilon`` from the clean input.
    """
    if random_start:
        delta = _torch.rand(X.shape, generator, device=X.device, dtype=X.dtype)
        delta = (2 * delta - 1) * epsilon
    else:
        delta = torch.zeros_like(X)
    for _ in range(n_steps):
        delta.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(module(X + delta), y)
        (gradient,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_size * gradient.sign()).clamp_(-epsilon, epsilon)
    return (X + delta).detach()


class _MLPModule(torch.nn.Module):
    """Linear layers with ReLU between them, initialised from a generator."""

    def __init__(self, layer_sizes, generator, *, device, dtype):
        super().__init__()
        layers = []
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
            linear = init_layer_(torch.nn.Linear(fan_in, fan_out, device=device, dtype=dtype), generator)
            layers += [linear, torch.nn.ReLU()]
        self.layers = torch.nn.Sequential(*layers[:-1])

    def forward(self, X):
        return self.layers(X)


class _AdversarialNet(NeuralNet):
    """skorch net that trains on adversarial versions of each batch when told to.

    ``attack_`` is ``None`` (standard training) or a dict of the keyword
    arguments of :func:`_adversarial_examples` without the generator; the
    generator is drawn afresh from ``(attack_seed_, step)`` so that the net
    pickles and training is reproducible.
    """

    attack_ = None
    attack_seed_ = 0
    attack_steps_ = 0

    def train_step_single(self, batch, **fit_params):
        if self.attack_ is not None:
            X, y = unpack_data(batch)
            generator = _torch.step_generator(self.attack_seed_, self.attack_steps_)
            self.attack_steps_ += 1
            X = _adversarial_examples(self.module_, X, y, generator=generator, **self.attack_)
            batch = (X, y)
        return super().train_step_single(batch, **fit_params)


class _TorchClassifierBase(TorchClassifierMixin, TorchEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Prediction from ``module_`` (inputs → logits), shared by the torch classifiers.

    Subclasses have a ``batch_size`` parameter, which also bounds the rows
    of one forward pass at prediction.
    """

    def _validate_input(self, X, *, reset, dtype=None):
        """``X`` as the module's input tensor, and whether it came as a tensor."""
        return self._validate_tensor(X, reset=reset, dtype=dtype)

    def _logits(self, X):
        check_is_fitted(self)
        X_t, as_tensor = self._validate_input(X, reset=False, dtype=self._module_dtype())
        return self._in_batches(self.module_, X_t), as_tensor

    def _in_batches(self, function, X_t):
        """``function`` over rows of ``X_t`` in batches of ``batch_size``, in eval mode, without gradients."""
        return torch.cat(evaluate_in_batches(self.module_, function, X_t, self.batch_size))

    def _encode_targets(self, y, n_samples):
        """Check ``y``, set ``classes_`` and return the class index of every row."""
        y = column_or_1d(_torch.as_numpy(y), warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but y has {y.shape[0]}.")
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; y holds only one class, "
                f"{self.classes_[0]!r}."
            )
        return y_index

    def _module_dtype(self):
        return next(self.module_.parameters()).dtype

    def predict_proba(self, X):
        """Class probabilities (the softmax of the logits).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        logits, as_tensor = self._logits(X)
        return _torch.to_output(torch.softmax(logits, dim=1), as_tensor)


class TorchMLPClassifier(_TorchClassifierBase):
    """Multilayer perceptron trained in torch through skorch, standard or adversarially robust.

    ReLU layers of ``hidden_layer_sizes`` and a linear output of one logit
    per class, trained with Adam on the cross-entropy. With
    ``adversarial="pgd"`` every batch is replaced by its L∞ projected
    gradient descent attack (random start, ``pgd_steps`` steps of
    ``2.5·epsilon/pgd_steps``) before the optimiser step, the robust
    training of Madry et al. (2018); ``"fgsm"`` uses one step of size
    ``epsilon`` from the clean input. The trained module is ``module_``, so
    gradient attributions (``sklearn_interp.evaluation``) can differentiate
    it.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256, 256)
        Widths of the hidden layers; ``()`` gives multinomial logistic
        regression.
    adversarial : {"fgsm", "pgd"} or None, default=None
        Adversarial training; ``None`` trains on the clean data.
    epsilon : float, default=0.1
        Radius of the L∞ ball of the attack, in the units of ``X``.
    pgd_steps : int, default=7
        Attack steps per batch with ``adversarial="pgd"``.
    max_epochs : int, default=40
    batch_size : int, default=64
    learning_rate : float, default=1e-3
        Adam's step size.
    tol : float or None, default=None
        Stop when an epoch's training loss fails to improve on the best by
        this relative amount; ``None`` runs all ``max_epochs``.
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, RandomState instance or None, default=None
        Decides the initial weights, the batch order and the attacks' random
        starts.
    verbose : int, default=0
        ``>= 1`` shows a progress bar per epoch.
    callbacks : list of skorch Callback or (name, Callback) pairs, default=None
        Further skorch callbacks, run during training after the library's
        own: a :class:`~sklearn_interp.manifold.LocalIDTracker`,
        ``skorch.callbacks.EpochScoring``, ``LRScheduler``, ...

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        Defined only when ``X`` has string feature names.
    net_ : skorch.NeuralNet
        The trained net (history, optimiser state).
    module_ : torch.nn.Module
        The trained network, inputs of shape (n, n_features) to logits.
    loss_curve_ : ndarray of shape (n_epochs,)
        Mean training loss (on the attacked batches when adversarial) per epoch.
    n_iter_ : int

    See Also
    --------
    TorchModuleClassifier : A torch module trained elsewhere, as a classifier.
    sklearn.neural_network.MLPClassifier : The same network in NumPy, without gradients to explain.

    References
    ----------
    .. [1] A. Madry, A. Makelov, L. Schmidt, D. Tsipras and A. Vladu, "Towards
       Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_interp.neural_network import TorchMLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = TorchMLPClassifier((32,), max_epochs=10, random_state=0, device="cpu")
    >>> clf.fit(X / 16, y).score(X / 16, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [tuple, list],
        "adversarial": [StrOptions({"fgsm", "pgd"}), None],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "pgd_steps": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "callbacks": [list, None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (256, 256),
        *,
        adversarial: Literal["fgsm", "pgd"] | None = None,
        epsilon: float = 0.1,
        pgd_steps: int = 7,
        max_epochs: int = 40,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        tol: float | None = None,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[skorch.callbacks.Callback | tuple[str, skorch.callbacks.Callback]] | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.adversarial = adversarial
        self.epsilon = epsilon
        self.pgd_steps = pgd_steps
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.tol = tol
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _attack(self):
        if self.adversarial is None:
            return None
        if self.adversarial == "fgsm":
            return {"epsilon": self.epsilon, "n_steps": 1, "step_size": self.epsilon, "random_start": False}
        return {
            "epsilon": self.epsilon,
            "n_steps": self.pgd_steps,
            "step_size": 2.5 * self.epsilon / self.pgd_steps,
            "random_start": True,
        }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | torch.Tensor, y: ArrayLike) -> TorchMLPClassifier:
        """Train the network for ``max_epochs`` epochs (fewer with ``tol``).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        sizes = tuple(self.hidden_layer_sizes)
        if not all(isinstance(size, Integral) and size >= 1 for size in sizes):
            raise ValueError(f"hidden_layer_sizes must hold positive integers, got {self.hidden_layer_sizes!r}.")
        X_t, _ = self._validate_tensor(X, reset=True)
        y_index = self._encode_targets(y, X_t.shape[0])
        seeds = _torch.draw_seeds(self.random_state, size=3)
        module = _MLPModule(
            (X_t.shape[1], *sizes, self.classes_.shape[0]),
            _torch.make_generator(int(seeds[0])),
            device=X_t.device,
            dtype=X_t.dtype,
        )
        self.net_ = make_net(
            _AdversarialNet,
            module,
            torch.nn.CrossEntropyLoss(),
            device=X_t.device,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=int(seeds[1]),
            tol=self.tol,
            verbose=self.verbose,
            user_callbacks=self.callbacks,
        )
        self.net_.attack_ = self._attack()
        self.net_.attack_seed_ = int(seeds[2])
        y_t = torch.from_numpy(y_index.astype(np.int64)).to(X_t.device)
        self.net_.partial_fit(X_t, y_t, epochs=self.max_epochs)
        self.loss_curve_ = epoch_losses(self.net_)
        self.n_iter_ = len(self.loss_curve_)
        return self

    @property
    def module_(self):
        check_is_fitted(self, "net_")
        return self.net_.module_


class TorchModuleClassifier(_TorchClassifierBase):
    """A trained torch module presented as a fitted scikit-learn classifier.

    ``fit`` does not train: it records ``classes_`` and the input width and
    checks that the module gives one logit per class. Use it to explain a
    network trained elsewhere, for instance as the ``estimator`` of
    :class:`~sklearn_interp.evaluation.DiffROAR` together with a
    ``retrain_estimator``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch of inputs of shape ``(n, *input_shape)`` to logits of
        shape ``(n, n_classes)``.
    classes : array-like of shape (n_classes,)
        The label of each logit.
    input_shape : tuple of int or None, default=None
        Shape of one input as the module expects it (for instance
        ``(1, 28, 28)``); rows of ``X`` are reshaped to it. ``None`` feeds
        the rows as they are.
    batch_size : int, default=256
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float32"

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    module_ : torch.nn.Module
        ``module`` itself, or a copy of it on ``device`` with ``dtype`` when
        it was elsewhere (the given module is never moved), reshaping flat
        rows first when ``input_shape`` is given.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_interp.neural_network import TorchModuleClassifier
    >>> linear = torch.nn.Linear(4, 3)
    >>> clf = TorchModuleClassifier(linear, classes=["a", "b", "c"], device="cpu")
    >>> clf.fit(np.zeros((2, 4))).predict(np.ones((2, 4))).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "module": [torch.nn.Module],
        "classes": ["array-like"],
        "input_shape": [tuple, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": TorchEstimatorMixin._torch_parameter_constraints["device"],
        # A module holds weights of one concrete dtype; None is not an option here.
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(
        self,
        module: torch.nn.Module,
        classes: ArrayLike,
        *,
        input_shape: tuple[int, ...] | None = None,
        batch_size: int = 256,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float32",
    ) -> None:
        self.module = module
        self.classes = classes
        self.input_shape = input_shape
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> TorchModuleClassifier:
        """Record the classes and input width; the module is not trained.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, used to check the module's output width.
        y : array-like of shape (n_samples,), default=None
            When given, its labels must be among ``classes``.

        Returns
        -------
        self : object
        """
        X_t, _ = self._validate_tensor(X, reset=True)
        self._record_classes(y)
        module = self._placed_module(X_t)
        if self.input_shape is not None:
            module = torch.nn.Sequential(torch.nn.Unflatten(1, tuple(self.input_shape)), module)
        self.module_ = module
        self._check_logits(X_t)
        return self

    def _record_classes(self, y):
        self.classes_ = np.asarray(self.classes)
        if y is not None:
            unknown = np.setdiff1d(np.asarray(y), self.classes_)
            if unknown.size:
                raise ValueError(f"y has labels {unknown.tolist()} that are not in classes.")

    def _placed_module(self, X_t):
        """``module`` on the device and dtype of ``X_t``."""
        module = self.module
        parameter = next(module.parameters(), None)
        if parameter is not None and (parameter.device != X_t.device or parameter.dtype != X_t.dtype):
            # Module.to works in place: move a copy, never the caller's module.
            module = copy.deepcopy(module).to(device=X_t.device, dtype=X_t.dtype)
        return module

    def _check_logits(self, X_t):
        with torch.no_grad():
            n_logits = self.module_(X_t[:1]).shape[-1]
        if n_logits != self.classes_.shape[0]:
            raise ValueError(f"The module gives {n_logits} logits per input but {self.classes_.shape[0]} classes were named.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
