"""The mean local intrinsic dimension of a model's representations, followed through training.

Ruppik et al. (2025) read the mean local intrinsic dimension (LID) of a
fixed token sample at successive checkpoints: it falls when training
generalises and rises when it overfits, and they propose that a drop
precedes a gain in performance. :class:`LocalIDTracker` keeps that
measurement comparable across steps (one sample, one ``n_neighbors``) and
collects it in a tidy table, from embeddings handed to it, from a list of
Hugging Face checkpoint folders, or, as a skorch callback, from a model
while it trains.
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from skorch.callbacks import Callback

from .. import _torch
from .._training import evaluate_in_batches
from ._local_id import ESTIMATORS, LocalIDEstimator

if TYPE_CHECKING:
    import skorch

# Columns of the table, in order; metrics follow them.
_COLUMNS = ("step", "split", "layer", "n_samples", "mean_lid", "median_lid", "std_lid", "n_undefined")
# Entries of a skorch history row that are bookkeeping rather than metrics.
_NOT_METRICS = {"epoch", "dur", "batches", "event_lr"}


def _history_metrics(net):
    """The numeric entries of the net's last epoch (losses, scores), without bookkeeping."""
    if not len(net.history):
        return {}
    metrics = {}
    for name, value in net.history[-1].items():
        if name in _NOT_METRICS or name.endswith("_best") or name.startswith("event_"):
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            continue
        metrics[name] = float(value)
    return metrics


def _step_of(checkpoint, position):
    """The training step a checkpoint folder's name ends with (``checkpoint-500``), else its position."""
    found = re.search(r"(\d+)$", Path(checkpoint).name)
    return int(found.group(1)) if found else position


class _ReadOutput:
    """Context manager that keeps the output of a submodule of ``module`` during a forward pass."""

    def __init__(self, module, name):
        try:
            self.submodule = module.get_submodule(name)
        except AttributeError:
            names = [child for child, _ in module.named_modules() if child]
            raise ValueError(
                f"embed={name!r} names no submodule of {type(module).__name__}; it has {names}."
            ) from None
        self.output = None

    def _keep(self, submodule, inputs, output):
        self.output = output[0] if isinstance(output, (tuple, list)) else output

    def __enter__(self):
        self._handle = self.submodule.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc_info):
        self._handle.remove()


class LocalIDTracker(Callback):
    """Mean local intrinsic dimension of a fixed sample at every training step.

    Each call to :meth:`record` runs :class:`LocalIDEstimator` with the same
    ``n_neighbors`` on the same rows of a split (the first call draws
    ``n_samples`` of them, later calls must bring the same number of rows,
    in the same order) and adds one row to :meth:`table`: the step, the
    split, the layer, the mean, median and spread of the local IDs, and any
    metric passed in. Only these summaries are kept, so memory does not
    grow with the model or the sample.

    Three ways to feed it:

    - :meth:`record` with embeddings computed by hand;
    - :meth:`record_checkpoints` over Hugging Face checkpoint folders and
      texts (through :class:`~sklearn_interp.activations.TransformerActivations`);
    - as a skorch callback, in the ``callbacks`` of any of the library's
      skorch-trained estimators (or a skorch net): at the start of training
      (step 0) and at the end of every ``every``-th epoch it embeds the
      ``probes`` with ``embed`` and records them with the epoch's losses and
      scores. It runs the model in eval mode without gradients and draws no
      random numbers from torch, so training is the same with or without it.

    Read more in the :ref:`User Guide <local_id_training>`.

    Parameters
    ----------
    n_neighbors : int, default=128
        Neighbourhood size ``L`` of every estimate (the paper's 128). Never
        clipped: a split with too few distinct rows is an error, since LIDs
        at different ``L`` are not comparable.
    n_samples : int, default=None
        Rows of each split (and layer) to estimate on, drawn once at its
        first step and kept; ``None`` uses every row.
    estimator : {"twonn", "twonn_ml", "mle", "gride"}, default="twonn"
        The local estimator, as in :class:`LocalIDEstimator`.
    probes : dict of str to array-like or torch.Tensor, default=None
        Callback use only: the inputs of the network to embed at each
        step, by split name, e.g. ``{"train": X_train[:2000], "valid":
        X_valid[:2000]}``.
    embed : str or callable, default=None
        Callback use only: how to embed the probes. A string names a
        submodule of the network (``"layers.1"``) whose output is read; a
        callable is called as ``embed(module, X)`` and returns the
        embeddings; ``None`` takes the network's output.
    every : int, default=1
        Callback use only: record every ``every``-th epoch.
    random_state : int, RandomState instance or None, default=None
        Draws the ``n_samples`` rows.
    device : str or torch.device, default="auto"
        Where the local IDs (and checkpoint activations) are computed.
    dtype : {"float32", "float64"}, default="float64"
        Precision of the local ID estimates.
    batch_size : int, default=256
        Rows per chunk of the neighbour search and of the probes' forward
        passes.
    verbose : int, default=0
        A progress bar over checkpoints when positive.

    Attributes
    ----------
    history_ : list of dict
        One dict per recorded (step, split, layer); :meth:`table` is its
        DataFrame.
    sample_indices_ : dict
        The rows drawn for each ``(split, layer)``, and the number of rows
        that split had.

    See Also
    --------
    LocalIDEstimator : The estimator run at every step.

    References
    ----------
    .. [1] B. M. Ruppik et al., "Less is More: Local Intrinsic Dimensions of
       Contextual Language Models", NeurIPS 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.manifold import LocalIDTracker
    >>> rng = np.random.default_rng(0)
    >>> tracker = LocalIDTracker(n_neighbors=50, random_state=0)
    >>> for step, dimension in enumerate([8, 5, 2]):
    ...     X = rng.standard_normal((500, dimension)) @ rng.standard_normal((dimension, 20))
    ...     _ = tracker.record(step, X, split="train", accuracy=0.3 * step)
    >>> tracker.table()[["step", "mean_lid", "accuracy"]].round(1)
       step  mean_lid  accuracy
    0     0       7.1       0.0
    1     1       5.1       0.3
    2     2       2.0       0.6
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 3, None, closed="left")],
        "n_samples": [Interval(Integral, 4, None, closed="left"), None],
        "estimator": [StrOptions(set(ESTIMATORS))],
        "probes": [dict, None],
        "embed": [str, callable, None],
        "every": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_neighbors: int = 128,
        *,
        n_samples: int | None = None,
        estimator: Literal["twonn", "twonn_ml", "mle", "gride"] = "twonn",
        probes: Mapping[str, ArrayLike | torch.Tensor] | torch.Tensor | None = None,
        embed: str | Callable[..., Any] | None = None,
        every: int = 1,
        random_state: int | np.random.RandomState | None = None,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] = "float64",
        batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.n_samples = n_samples
        self.estimator = estimator
        self.probes = probes
        self.embed = embed
        self.every = every
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.verbose = verbose

    # -- state ---------------------------------------------------------------
    def initialize(self) -> LocalIDTracker:
        """Forget every recorded step (skorch calls it when a net is (re)initialised)."""
        validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False), type(self).__name__)
        self.history_ = []
        self.sample_indices_ = {}
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return self

    def _ensure_initialized(self):
        if not hasattr(self, "history_"):
            self.initialize()

    def table(self) -> pd.DataFrame:
        """The recorded steps as a DataFrame, one row per (step, split, layer).

        Returns
        -------
        table : pandas.DataFrame
            Columns ``step``, ``split``, ``layer`` (only when some row has
            one), ``n_samples``, ``mean_lid``, ``median_lid``, ``std_lid``
            (the spread of the local IDs), ``n_undefined``, then the
            metrics in the order first passed.
        """
        self._ensure_initialized()
        frame = pd.DataFrame(self.history_)
        if frame.empty:
            return pd.DataFrame(columns=[c for c in _COLUMNS if c != "layer"])
        fixed = [c for c in _COLUMNS if c in frame.columns]
        return frame[fixed + [c for c in frame.columns if c not in fixed]]

    # -- recording -----------------------------------------------------------
    def _sample(self, key, n_rows, step):
        """The fixed rows of ``key``'s sample, drawn at its first step."""
        if key not in self.sample_indices_:
            if self.n_samples is None or self.n_samples >= n_rows:
                rows = np.arange(n_rows)
            else:
                # One stream per (split, layer), so the rows drawn do not depend on
                # the order in which splits are first recorded.
                rng = np.random.default_rng([self.seed_, zlib.crc32(repr(key).encode())])
                rows = np.sort(rng.choice(n_rows, self.n_samples, replace=False))
            self.sample_indices_[key] = (rows, n_rows)
        rows, expected = self.sample_indices_[key]
        if n_rows != expected:
            split, layer = key
            where = f"split {split!r}" + ("" if layer is None else f" at layer {layer}")
            raise ValueError(
                f"{where} had {expected} rows at its first step and has {n_rows} at step {step}; "
                "the tracker compares one fixed sample across steps, so pass the same rows every time."
            )
        return rows

    def record(
        self,
        step: float,
        X: ArrayLike | torch.Tensor,
        *,
        split: str = "train",
        layer: int | str | None = None,
        **metrics: Any,
    ) -> dict:
        """Estimate the local IDs of ``X``'s sample and add a row to the table.

        Parameters
        ----------
        step : int or float
            Training step, epoch or checkpoint number.
        X : array-like or torch.Tensor of shape (n_rows, n_features)
            Embeddings of the split at this step, rows in the same order at
            every step.
        split : str, default="train"
            Name of the split (``"train"``, ``"valid"``, ``"ood"``, ...).
        layer : int or str, default=None
            The layer the embeddings come from, when several are tracked.
        **metrics : float
            Anything else to keep with the row (accuracy, loss, ...).

        Returns
        -------
        row : dict
            The row added to :meth:`table`.
        """
        self._ensure_initialized()
        if not isinstance(split, str):
            raise TypeError(f"split must be a str, got {type(split).__name__}.")
        X = X.detach() if _torch.is_tensor(X) else np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (rows × features), got shape {tuple(X.shape)} at step {step}.")
        rows = self._sample((split, layer), X.shape[0], step)
        if len(rows) <= self.n_neighbors:
            raise ValueError(
                f"split {split!r} has {len(rows)} samples at step {step}, but n_neighbors={self.n_neighbors} "
                f"needs at least {self.n_neighbors + 1}: pass more rows or a smaller n_neighbors "
                "(the tracker never clips it, so that every step is estimated alike)."
            )
        estimator = LocalIDEstimator(
            self.n_neighbors, estimator=self.estimator, device=self.device, dtype=self.dtype,
            batch_size=self.batch_size,
        )
        sample = X[torch.as_tensor(rows, device=X.device)] if _torch.is_tensor(X) else X[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the clipping warning; an error below
            estimator.fit(sample)
        if estimator.n_neighbors_ != self.n_neighbors:
            raise ValueError(
                f"split {split!r} has only {estimator.n_neighbors_ + 1} distinct rows at step {step}, "
                f"too few for n_neighbors={self.n_neighbors}."
            )
        row = {
            "step": step,
            "split": split,
            **({} if layer is None else {"layer": layer}),
            "n_samples": len(rows),
            "mean_lid": float(estimator.mean_local_id_),
            "median_lid": float(estimator.median_local_id_),
            "std_lid": float(estimator.std_local_id_),
            "n_undefined": int(estimator.n_undefined_),
            **{name: value for name, value in metrics.items()},
        }
        self.history_.append(row)
        return row

    def record_checkpoints(
        self,
        checkpoints: Sequence[str] | os.PathLike[str],
        texts: Sequence[str] | Mapping[str, Sequence[str]],
        *,
        layer: int | list[int],
        site: str = "residual",
        steps: Sequence[int] | None = None,
        metrics: list[dict] | None = None,
        max_length: int = 128,
        batch_size: int = 32,
    ) -> LocalIDTracker:
        """Record the token embeddings of ``texts`` at every checkpoint folder.

        Each checkpoint is loaded in turn (one at a time, so memory holds
        one model), its per-token activations at ``layer`` are read with
        :class:`~sklearn_interp.activations.TransformerActivations`, and
        every split and layer is recorded.

        Parameters
        ----------
        checkpoints : sequence of str or path
            Hugging Face model folders (``save_pretrained`` output), in
            training order.
        texts : sequence of str or dict of str to sequence of str
            The texts whose tokens are embedded, the same at every
            checkpoint; a dict names several splits.
        layer : int or list of int
            Block(s) whose output is read.
        site : {"residual", "mlp", "attn"}, default="residual"
            What is read at each block.
        steps : sequence of int, default=None
            The step of each checkpoint; by default the number its folder
            name ends with (``checkpoint-500``), else its position.
        metrics : sequence of dict, default=None
            Metrics to keep with each checkpoint's rows, one dict per
            checkpoint.
        max_length, batch_size : int, default=128, 32
            Passed to ``TransformerActivations``.

        Returns
        -------
        self : LocalIDTracker
        """
        from ..activations import TransformerActivations

        self._ensure_initialized()
        checkpoints = list(checkpoints)
        if not checkpoints:
            raise ValueError("checkpoints is empty.")
        named_texts = dict(texts) if isinstance(texts, dict) else {"train": texts}
        steps = [_step_of(path, i) for i, path in enumerate(checkpoints)] if steps is None else list(steps)
        metrics = [{}] * len(checkpoints) if metrics is None else list(metrics)
        for name, given in (("steps", steps), ("metrics", metrics)):
            if len(given) != len(checkpoints):
                raise ValueError(f"{name} has {len(given)} entries for {len(checkpoints)} checkpoints.")
        layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        for position in _torch.progress(range(len(checkpoints)), verbose=self.verbose, desc="checkpoints"):
            path = Path(checkpoints[position])
            if not path.is_dir():
                raise ValueError(f"Checkpoint {str(path)!r} is not a folder.")
            reader = TransformerActivations(
                str(path), layer=layers, site=site, max_length=max_length, batch_size=batch_size,
                device=self.device, dtype="float32",
            ).fit()
            width = reader.n_features_out_ // len(layers)
            for split, split_texts in named_texts.items():
                activations = reader.transform(split_texts)
                for index, block in enumerate(layers):
                    self.record(
                        steps[position], activations[:, index * width:(index + 1) * width],
                        split=split, layer=block, **metrics[position],
                    )
            del reader  # frees the checkpoint before the next is loaded
        return self

    # -- skorch callback -----------------------------------------------------
    def _embedded(self, module, X):
        if self.embed is None or isinstance(self.embed, str):
            reader = None if self.embed is None else _ReadOutput(module, self.embed)

            def embed_batch(batch):
                if reader is None:
                    return module(batch)
                with reader:
                    module(batch)
                return reader.output

        else:

            def embed_batch(batch):
                return self.embed(module, batch)

        batches = evaluate_in_batches(module, embed_batch, X, self.batch_size)
        return torch.cat([torch.as_tensor(batch).detach().flatten(1) for batch in batches])

    def _record_probes(self, net, step):
        if not self.probes:
            raise ValueError("LocalIDTracker used as a callback needs probes: {split name: inputs of the network}.")
        parameter = next(net.module_.parameters(), None)
        metrics = _history_metrics(net)
        for split, probe in self.probes.items():
            floating = probe.is_floating_point() if _torch.is_tensor(probe) else np.asarray(probe).dtype.kind == "f"
            # Real-valued inputs in the network's precision; integer ones (token ids) as int64.
            dtype = (parameter.dtype if parameter is not None else torch.float32) if floating else torch.int64
            inputs = _torch.to_tensor(probe, net.device, dtype)
            self.record(step, self._embedded(net.module_, inputs), split=split, **metrics)

    def on_train_begin(self, net: skorch.NeuralNet, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Record step 0 (the untrained model) when training starts from scratch."""
        self._ensure_initialized()
        if not len(net.history):
            self._record_probes(net, 0)

    def on_epoch_end(
        self, net: skorch.NeuralNet, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any
    ) -> None:
        """Record the probes after every ``every``-th epoch, with the epoch's metrics."""
        epoch = len(net.history)
        if epoch % self.every == 0:
            self._record_probes(net, epoch)

    # -- the paper's heuristic -----------------------------------------------
    def lag_correlation(
        self,
        metric: str,
        *,
        lags: tuple[int, ...] = (0, 1, 2),
        higher_is_better: bool = True,
    ) -> pd.DataFrame:
        """Does a drop in mean LID precede a gain in ``metric``?

        For each split and layer, with the steps in order, the correlation
        between the fall of the mean LID from one step to the next,
        ``−Δ mean_lid[t]``, and the gain in the metric ``lag`` steps later,
        ``Δ metric[t + lag]``. The heuristic of Ruppik et al. predicts
        positive correlations at positive lags.

        Parameters
        ----------
        metric : str
            A metric column of :meth:`table`.
        lags : sequence of int, default=(0, 1, 2)
            Lags, in recorded steps.
        higher_is_better : bool, default=True
            ``False`` for losses: a gain is then a decrease.

        Returns
        -------
        correlations : pandas.DataFrame
            Columns ``split``, (``layer``), ``lag``, ``correlation``
            (Pearson; NaN with fewer than three pairs or a constant
            series) and ``n_pairs``.
        """
        if any(isinstance(lag, bool) or not isinstance(lag, Integral) or lag < 0 for lag in lags):
            raise ValueError(f"lags must be non-negative integers, got {list(lags)!r}.")
        table = self.table()
        if metric not in table.columns:
            raise ValueError(f"No metric {metric!r} was recorded; the table has {list(table.columns)}.")
        keys = ["split"] + (["layer"] if "layer" in table.columns else [])
        sign = 1.0 if higher_is_better else -1.0
        rows = []
        for key, group in table.groupby(keys, sort=False):
            group = group.sort_values("step")
            lid_fall = -np.diff(group["mean_lid"].to_numpy(dtype=float))
            gain = sign * np.diff(group[metric].to_numpy(dtype=float))
            for lag in lags:
                pairs_x = lid_fall[: len(lid_fall) - lag] if lag else lid_fall
                pairs_y = gain[lag:]
                usable = np.isfinite(pairs_x) & np.isfinite(pairs_y)
                x, y = pairs_x[usable], pairs_y[usable]
                if len(x) < 3 or x.std() == 0 or y.std() == 0:
                    correlation = float("nan")
                else:
                    correlation = float(np.corrcoef(x, y)[0, 1])
                rows.append({**dict(zip(keys, key)), "lag": lag, "correlation": correlation, "n_pairs": len(x)})
        return pd.DataFrame(rows)
