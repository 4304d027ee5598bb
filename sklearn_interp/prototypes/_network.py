"""A small part-prototype network with the improvements of Huang et al. (ICCV 2023).

Each class owns ``prototypes_per_class`` prototype vectors. A convolutional
backbone and a 1 × 1 add-on layer with a sigmoid map an image to a grid of
feature vectors; prototype p's activation map is the dot product of every
cell with p / ‖p‖, and its score g_p is the map's maximum. ProtoPNet turns
the scores into logits with a fully connected layer; *score aggregation*
(SA) sums instead, per class, its own prototypes' scores with positive
weights m·softmax(a) that start at 1, so a class is never scored by another
class's prototypes. *Shallow-deep feature alignment* (SDFA) adds a loss that
makes the cosine similarities between deep grid cells follow those between
the corresponding blocks of an early, spatially faithful feature map, so
that a deep cell's peak maps back to the right place in the image.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, Freezer, LRScheduler, Unfreezer

from .. import _torch
from .._training import epoch_losses, init_layer_, make_net
from ..base import TorchEstimatorMixin
from ..neural_network._mlp import _TorchClassifierBase
from ._protocol import _check_image_shape, _PrototypeModelMixin

if TYPE_CHECKING:
    import skorch

_BACKBONE = ("shallow.*", "deep.*")


class _PartPrototypeNetwork(torch.nn.Module):
    """Backbone → add-on → prototype maps → class scores (FC layer or score aggregation)."""

    def __init__(
        self,
        *,
        in_channels,
        n_classes,
        channels,
        prototypes_per_class,
        prototype_dim,
        score_aggregation,
        generator,
        device,
        dtype,
    ):
        super().__init__()
        layer = {"device": device, "dtype": dtype}

        def conv(fan_in, fan_out, **kwargs):
            return init_layer_(torch.nn.Conv2d(fan_in, fan_out, **kwargs, **layer), generator)

        def stage(fan_in, fan_out, stride):
            # Per-image normalisation (GroupNorm with one group) lets a backbone trained from
            # scratch learn quickly while a prediction never depends on its batch-mates.
            return [
                conv(fan_in, fan_out, kernel_size=3, stride=stride, padding=1),
                torch.nn.GroupNorm(1, fan_out, **layer),
                torch.nn.ReLU(),
            ]

        # The shallow stage keeps the input resolution; each deep stage halves it.
        self.shallow = torch.nn.Sequential(*stage(in_channels, channels[0], 1))
        deep = []
        for fan_in, fan_out in zip(channels[:-1], channels[1:]):
            deep += stage(fan_in, fan_out, 2)
        self.deep = torch.nn.Sequential(*deep) if deep else torch.nn.Identity()
        self.add_on = torch.nn.Sequential(conv(channels[-1], prototype_dim, kernel_size=1), torch.nn.Sigmoid())
        n_prototypes = n_classes * prototypes_per_class
        # Gaussian directions: ProtoPNet's uniform [0, 1) draws all point nearly the same
        # way, which leaves every map alike and stalls training from scratch.
        prototypes = _torch.randn((n_prototypes, prototype_dim), generator, **layer)
        self.prototypes = torch.nn.Parameter(torch.nn.functional.normalize(prototypes, dim=1))
        self.register_buffer(
            "prototype_class", torch.arange(n_classes, device=device).repeat_interleave(prototypes_per_class)
        )
        self.n_classes, self.prototypes_per_class = n_classes, prototypes_per_class
        if score_aggregation:
            # w = m·softmax(a) within each class: every weight starts at 1.
            self.aggregation_logits = torch.nn.Parameter(torch.zeros(n_prototypes, **layer))
            self.last_layer = None
        else:
            # ProtoPNet's initialisation: +1 from a class's own prototypes, -0.5 from the others.
            self.aggregation_logits = None
            self.last_layer = torch.nn.Linear(n_prototypes, n_classes, bias=False, **layer)
            own = self.prototype_class[None, :] == torch.arange(n_classes, device=device)[:, None]
            with torch.no_grad():
                self.last_layer.weight.copy_(torch.where(own, 1.0, -0.5))

    def aggregation_weights(self):
        """Per-prototype weights of score aggregation (ones for the FC variant's view)."""
        grouped = self.aggregation_logits.view(self.n_classes, self.prototypes_per_class)
        return (self.prototypes_per_class * torch.softmax(grouped, dim=1)).reshape(-1)

    def outputs(self, X):
        """Every intermediate the losses need."""
        shallow = self.shallow(X)
        deep = self.deep(shallow)
        features = self.add_on(deep)
        maps = torch.einsum("ndhw,pd->nphw", features, torch.nn.functional.normalize(self.prototypes, dim=1))
        scores = maps.amax(dim=(2, 3))
        if self.last_layer is None:
            weighted = scores * self.aggregation_weights()
            logits = weighted.view(-1, self.n_classes, self.prototypes_per_class).sum(dim=2)
        else:
            logits = self.last_layer(scores)
        return {"shallow": shallow, "deep": deep, "features": features, "maps": maps, "logits": logits}

    def forward(self, X):
        return self.outputs(X)["logits"]

    def prototype_activation_maps(self, X):
        return self.outputs(X)["maps"]


def _cosine_self_similarity(grid):
    """(n, C, h, w) → (n, hw, hw) cosine similarities between all pairs of cells."""
    cells = torch.nn.functional.normalize(grid.flatten(2), dim=1)
    return cells.transpose(1, 2) @ cells


def _space_to_depth(shallow, height, width):
    """The shallow map rearranged onto the deep grid: each deep cell gets its r × r block."""
    ratio = max(1, min(shallow.shape[-2] // height, shallow.shape[-1] // width))
    if shallow.shape[-2:] != (height * ratio, width * ratio):
        shallow = torch.nn.functional.adaptive_avg_pool2d(shallow, (height * ratio, width * ratio))
    return torch.nn.functional.pixel_unshuffle(shallow, ratio)


def sdfa_loss(
    shallow: torch.Tensor,
    deep: torch.Tensor,
    maps: torch.Tensor,
    own: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Shallow-deep feature alignment loss of Huang et al. (2023).

    For each (image, prototype of the image's class), take the cell where
    the prototype's map peaks and compare that cell's cosine similarities
    to all cells, in the deep map and in the (detached) shallow map
    rearranged onto the deep grid: the loss is the mean of
    ``ReLU(|S_deep − S_shallow| − margin)``.

    Parameters
    ----------
    shallow : torch.Tensor of shape (n, C_s, H_s, W_s)
    deep : torch.Tensor of shape (n, C_d, h, w)
    maps : torch.Tensor of shape (n, P, h, w)
    own : torch.Tensor of shape (n, P), bool
        Prototype p belongs to image i's class.
    margin : float

    Returns
    -------
    loss : torch.Tensor, scalar
    """
    height, width = deep.shape[-2:]
    similarity_shallow = _cosine_self_similarity(_space_to_depth(shallow.detach(), height, width))
    similarity_deep = _cosine_self_similarity(deep)
    peaks = maps.detach().flatten(2).argmax(dim=2)
    image, prototype = own.nonzero(as_tuple=True)
    cells = peaks[image, prototype]
    gap = (similarity_deep[image, cells] - similarity_shallow[image, cells]).abs()
    return torch.relu(gap - margin).mean()


class _PartPrototypeNet(NeuralNet):
    """skorch net whose loss is ProtoPNet's plus orthogonality and, after warm-up, SDFA.

    ``loss_settings_`` holds the coefficients (set by the estimator).
    """

    loss_settings_: dict = {}

    def infer(self, x, **fit_params):
        return self.module_.outputs(x.to(self.device))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        settings = self.loss_settings_
        module = self.module_
        logits, maps = y_pred["logits"], y_pred["maps"]
        loss = torch.nn.functional.cross_entropy(logits, y_true)
        # Cosine of each cell with each prototype: the maps over the cells' norms.
        cosine = maps / y_pred["features"].norm(dim=1, keepdim=True).clamp_min(1e-12)
        best = cosine.amax(dim=(2, 3))
        own = module.prototype_class[None, :] == y_true[:, None]
        cluster = (1 - best.masked_fill(~own, -torch.inf).amax(dim=1)).mean()
        separation = (1 - best.masked_fill(own, -torch.inf).amax(dim=1)).mean()
        loss = loss + settings["cluster_coef"] * cluster + settings["separation_coef"] * separation
        if settings["ortho_coef"]:
            grouped = torch.nn.functional.normalize(module.prototypes, dim=1).view(
                module.n_classes, module.prototypes_per_class, -1
            )
            gram = grouped @ grouped.transpose(1, 2)
            identity = torch.eye(module.prototypes_per_class, device=gram.device, dtype=gram.dtype)
            loss = loss + settings["ortho_coef"] * ((gram - identity) ** 2).sum()
        if settings["sdfa"] and len(self.history) > settings["warmup_epochs"]:
            alignment = sdfa_loss(y_pred["shallow"], y_pred["deep"], maps, own, settings["sdfa_margin"])
            loss = loss + settings["sdfa_coef"] * alignment
        return loss


class _NormalisePrototypes(Callback):
    """Put the prototypes back on the unit sphere after every optimiser step."""

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            with torch.no_grad():
                prototypes = net.module_.prototypes
                prototypes.div_(prototypes.norm(dim=1, keepdim=True).clamp_min(1e-12))


class PartPrototypeClassifier(_PrototypeModelMixin, _TorchClassifierBase):
    """Part-prototype image classifier (ProtoPNet-style) with SDFA and score aggregation.

    A small CNN backbone (a full-resolution shallow stage, then stride-2
    stages, each a 3 × 3 convolution, per-image GroupNorm and ReLU), a
    1 × 1 add-on layer with a sigmoid and ``prototypes_per_class`` unit-norm
    prototypes per class, drawn in Gaussian directions. Prototype p's activation map is the dot
    product of each feature cell with p, its score the map's maximum. The
    loss is cross-entropy plus ProtoPNet's cluster and separation costs (in
    cosine distance), a within-class orthogonality penalty and, with
    ``sdfa=True`` after the warm-up epochs, the shallow-deep feature
    alignment loss of Huang et al. (2023). With ``score_aggregation=True``
    each class's logit is the weighted sum of its own prototypes' scores;
    otherwise a fully connected layer mixes all scores, as in ProtoPNet. With
    both switches off it is the ProtoPNet-like baseline the paper improves
    on. The backbone is frozen for ``warmup_epochs`` epochs; every step
    size decays by ``lr_decay`` every ``lr_step`` epochs.

    Parameters
    ----------
    channels : tuple of int, default=(16, 32, 64, 64)
        Widths of the backbone stages: the first keeps the input resolution
        (the shallow map of SDFA), each further one halves it, so the grid
        of activation maps has a cell of ``2 ** (len(channels) - 1)`` px.
    prototypes_per_class : int, default=10
    prototype_dim : int, default=64
    sdfa : bool, default=True
        Shallow-deep feature alignment loss.
    sdfa_coef : float, default=0.5
    sdfa_margin : float, default=0.1
        Differences of cosine similarity below it cost nothing.
    score_aggregation : bool, default=True
        Class logits from the class's own prototypes only.
    cluster_coef : float, default=0.8
    separation_coef : float, default=-0.08
    ortho_coef : float, default=1e-4
    epochs : int, default=12
    warmup_epochs : int, default=2
        Epochs with the backbone frozen and without SDFA.
    lr_backbone : float, default=2e-3
    lr_head : float, default=2e-3
        Step size of the add-on layer, prototypes and fully connected layer.
    lr_sa : float, default=1e-6
        Step size of the score-aggregation weights.
    lr_step : int, default=8
        Epochs between step-size decays.
    lr_decay : float, default=0.2
    batch_size : int, default=80
    image_shape : tuple of int or None, default=None
        ``(C, H, W)`` that flat rows of ``X`` are reshaped to; ``None`` reads
        4-D ``X`` as images and flat rows as 1 × 1 images.
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    callbacks : list of skorch Callback or (name, Callback) pairs, default=None
        Further skorch callbacks, run during training after the library's
        own: a :class:`~sklearn_interp.manifold.LocalIDTracker`,
        ``skorch.callbacks.EpochScoring``, ``LRScheduler``, ...

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototype_class_ : ndarray of shape (n_prototypes,)
        Index into ``classes_`` of each prototype's class.
    image_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    n_features_in_ : int
    net_ : skorch.NeuralNet
    module_ : torch.nn.Module
    loss_curve_ : ndarray of shape (n_epochs,)
    n_iter_ : int

    See Also
    --------
    sklearn_interp.evaluation.ConsistencyScorer : Consistency and stability of its prototypes.
    TorchPrototypeAdapter : A prototype network trained elsewhere.

    References
    ----------
    .. [1] Q. Huang, M. Xue, W. Huang, H. Zhang, J. Song, Y. Jing and M. Song,
       "Evaluation and Improvement of Interpretability for Self-Explainable
       Part-Prototype Networks", ICCV 2023.
    .. [2] C. Chen, O. Li, D. Tao, A. Barnett, C. Rudin and J. Su, "This Looks
       Like That: Deep Learning for Interpretable Image Recognition",
       NeurIPS 2019.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_part_objects
    >>> from sklearn_interp.prototypes import PartPrototypeClassifier
    >>> X, y, part_locs = make_part_objects(64, image_size=32, random_state=0)
    >>> clf = PartPrototypeClassifier(channels=(8, 16, 16), prototypes_per_class=2,
    ...                               epochs=2, random_state=0, device="cpu").fit(X, y)
    >>> clf.prototype_activation_maps(X[:3]).shape
    (3, 16, 8, 8)
    """

    _parameter_constraints: dict = {
        "channels": [tuple, list],
        "prototypes_per_class": [Interval(Integral, 1, None, closed="left")],
        "prototype_dim": [Interval(Integral, 1, None, closed="left")],
        "sdfa": ["boolean"],
        "sdfa_coef": [Interval(Real, 0, None, closed="left")],
        "sdfa_margin": [Interval(Real, 0, None, closed="left")],
        "score_aggregation": ["boolean"],
        "cluster_coef": [Real],
        "separation_coef": [Real],
        "ortho_coef": [Interval(Real, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr_backbone": [Interval(Real, 0, None, closed="left")],
        "lr_head": [Interval(Real, 0, None, closed="neither")],
        "lr_sa": [Interval(Real, 0, None, closed="left")],
        "lr_step": [Interval(Integral, 1, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "image_shape": [tuple, None],
        "callbacks": [list, None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        *,
        channels: tuple[int, ...] = (16, 32, 64, 64),
        prototypes_per_class: int = 10,
        prototype_dim: int = 64,
        sdfa: bool = True,
        sdfa_coef: float = 0.5,
        sdfa_margin: float = 0.1,
        score_aggregation: bool = True,
        cluster_coef: float = 0.8,
        separation_coef: float = -0.08,
        ortho_coef: float = 1e-4,
        epochs: int = 12,
        warmup_epochs: int = 2,
        lr_backbone: float = 2e-3,
        lr_head: float = 2e-3,
        lr_sa: float = 1e-6,
        lr_step: int = 8,
        lr_decay: float = 0.2,
        batch_size: int = 80,
        image_shape: tuple[int, ...] | None = None,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[skorch.callbacks.Callback | tuple[str, skorch.callbacks.Callback]] | None = None,
    ) -> None:
        self.channels = channels
        self.prototypes_per_class = prototypes_per_class
        self.prototype_dim = prototype_dim
        self.sdfa = sdfa
        self.sdfa_coef = sdfa_coef
        self.sdfa_margin = sdfa_margin
        self.score_aggregation = score_aggregation
        self.cluster_coef = cluster_coef
        self.separation_coef = separation_coef
        self.ortho_coef = ortho_coef
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.lr_backbone = lr_backbone
        self.lr_head = lr_head
        self.lr_sa = lr_sa
        self.lr_step = lr_step
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.image_shape = image_shape
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _callbacks(self):
        callbacks = [
            ("normalise_prototypes", _NormalisePrototypes()),
            (
                "lr_decay",
                LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=self.lr_step, gamma=self.lr_decay),
            ),
        ]
        if self.warmup_epochs:
            callbacks.append(("warmup_freeze", Freezer(list(_BACKBONE), at=1)))
            callbacks.append(("warmup_unfreeze", Unfreezer(list(_BACKBONE), at=self.warmup_epochs + 1)))
        return callbacks

    def _param_groups(self):
        # The reference's weight decay of 1e-3 on backbone and add-on; the
        # prototypes and the class-score weights are not decayed.
        groups = [(pattern, {"lr": self.lr_backbone, "weight_decay": 1e-3}) for pattern in _BACKBONE]
        groups.append(("add_on.*", {"weight_decay": 1e-3}))
        groups.append(("aggregation_logits", {"lr": self.lr_sa}))
        return groups

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | torch.Tensor, y: ArrayLike) -> PartPrototypeClassifier:
        """Train the network for ``epochs`` epochs.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images (values in [0, 1] for the stability noise of the scorers
            to match the reference's), or flat rows.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        channels = tuple(self.channels)
        if not channels or not all(isinstance(c, Integral) and c >= 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels!r}.")
        _check_image_shape(self.image_shape)
        X_t, _ = self._validate_images(X, reset=True)
        y_index = self._encode_targets(y, X_t.shape[0])
        n_classes = self.classes_.shape[0]

        seeds = _torch.draw_seeds(self.random_state, size=2)
        module = _PartPrototypeNetwork(
            in_channels=X_t.shape[1],
            n_classes=n_classes,
            channels=channels,
            prototypes_per_class=self.prototypes_per_class,
            prototype_dim=self.prototype_dim,
            score_aggregation=self.score_aggregation,
            generator=_torch.make_generator(int(seeds[0])),
            device=X_t.device,
            dtype=X_t.dtype,
        )
        self.net_ = make_net(
            _PartPrototypeNet,
            module,
            torch.nn.CrossEntropyLoss(),
            device=X_t.device,
            batch_size=self.batch_size,
            learning_rate=self.lr_head,
            seed=int(seeds[1]),
            verbose=self.verbose,
            user_callbacks=self.callbacks,
            callbacks=self._callbacks(),
            optimizer__param_groups=self._param_groups(),
        )
        self.net_.loss_settings_ = {
            "cluster_coef": self.cluster_coef,
            "separation_coef": self.separation_coef,
            "ortho_coef": self.ortho_coef,
            "sdfa": self.sdfa,
            "sdfa_coef": self.sdfa_coef,
            "sdfa_margin": self.sdfa_margin,
            "warmup_epochs": self.warmup_epochs,
        }
        y_t = _torch.to_tensor(y_index, X_t.device, torch.int64)
        self.net_.partial_fit(X_t, y_t, epochs=self.epochs)
        self.prototype_class_ = np.repeat(np.arange(n_classes), self.prototypes_per_class)
        self.loss_curve_ = epoch_losses(self.net_)
        self.n_iter_ = len(self.loss_curve_)
        return self

    @property
    def module_(self):
        check_is_fitted(self, "net_")
        return self.net_.module_
