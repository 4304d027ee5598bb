"""Sparse dictionaries saved in SAELens's folder layout, and SAELens's SAEs loaded as estimators.

A folder holds ``sae_weights.safetensors`` (``W_enc`` of shape
``(d_in, d_sae)``, ``W_dec`` of shape ``(d_sae, d_in)``, ``b_enc`` and
``b_dec``) and ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``,
``hook_name``, ``dtype``, ``apply_b_dec_to_input``, ``normalize_activations``
and, for TopK, ``k``), the layout SAELens writes and reads. A TopKSAE saved
here is an SAELens ``topk`` SAE: SAELens encodes ``x`` as
``TopK(ReLU((x − b_dec) W_enc + b_enc))`` with ``b_enc = 0``, which is this
library's TopK encoder. MatchingPursuitSAE and SNMFDecomposer use the same
layout with their own ``architecture`` (``"matching_pursuit"``,
``"semi_nmf"``), which SAELens does not know. What only this library needs
(the estimator's class and parameters, training curves) goes under the
``"sklearn_interp"`` key of ``cfg.json`` and into
``sklearn_interp_state.safetensors``, which SAELens ignores.
"""

from __future__ import annotations

import json
from numbers import Integral
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
STATE_FILE = "sklearn_interp_state.safetensors"
# Fitted attributes that are not saved: the training net (pickle it instead)
# and the training rows' codes, which belong to the data, not the model.
_NOT_SAVED = {"net_", "training_codes_"}


def _estimator_classes():
    from ..decomposition import MatchingPursuitSAE, SNMFDecomposer, TopKSAE

    return {"topk": TopKSAE, "matching_pursuit": MatchingPursuitSAE, "semi_nmf": SNMFDecomposer}


def _architecture_of(estimator):
    for architecture, cls in _estimator_classes().items():
        if type(estimator) is cls:
            return architecture
    names = ", ".join(cls.__name__ for cls in _estimator_classes().values())
    raise TypeError(f"save_pretrained saves {names}; got {type(estimator).__name__}.")


def _json_params(estimator):
    """The estimator's parameters that JSON can hold; the others (arrays, callbacks) take their defaults on load."""
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        params[name] = value
    return params


def _dictionary_tensors(estimator, architecture):
    """The SAELens-named tensors: ``W_enc (d_in, d_sae)``, ``W_dec (d_sae, d_in)``, ``b_enc``, ``b_dec``."""
    decoder = np.ascontiguousarray(estimator.components_)
    d_sae, d_in = decoder.shape
    if architecture == "semi_nmf":  # codes are a non-negative least-squares solve: no encoder matrix
        return {"W_dec": decoder, "b_dec": np.zeros(d_in, dtype=decoder.dtype)}
    return {
        "W_enc": np.ascontiguousarray(estimator.encoder_components_.T),
        "W_dec": decoder,
        "b_enc": np.zeros(d_sae, dtype=decoder.dtype),
        "b_dec": np.ascontiguousarray(estimator.bias_),
    }


def save_pretrained(
    estimator: BaseEstimator,
    path: str | Path,
    *,
    hook_name: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Write a fitted TopKSAE, MatchingPursuitSAE or SNMFDecomposer to a folder in SAELens's layout.

    Parameters
    ----------
    estimator : TopKSAE, MatchingPursuitSAE or SNMFDecomposer
        Fitted.
    path : str or path
        The folder; created if needed, its two or three files overwritten.
    hook_name : str, default=None
        Where the activations came from, in the model's own naming
        (SAELens uses TransformerLens hook names such as
        ``"blocks.3.hook_resid_post"``); written as ``""`` when not given.
    model_name : str, default=None
        The model the activations came from; ``""`` when not given.

    Returns
    -------
    path : pathlib.Path
        The folder.
    """
    from safetensors.numpy import save_file

    check_is_fitted(estimator)
    architecture = _architecture_of(estimator)
    # SAELens reads both as strings: empty when unknown.
    hook_name, model_name = hook_name or "", model_name or ""
    tensors = _dictionary_tensors(estimator, architecture)
    d_sae, d_in = tensors["W_dec"].shape
    state, attributes = {}, {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in _NOT_SAVED:
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            state[name] = np.ascontiguousarray(value)
        elif isinstance(value, (bool, np.bool_, Integral, float, np.floating)):
            attributes[name] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, np.ndarray) and value.dtype == object:
            attributes[name] = value.tolist()  # feature_names_in_
    config = {
        "architecture": architecture,
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": str(tensors["W_dec"].dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "hook_name": hook_name,
        "model_name": model_name,
        "metadata": {"hook_name": hook_name, "model_name": model_name},
        "sklearn_interp": {
            "estimator": type(estimator).__name__,
            "params": _json_params(estimator),
            "attributes": attributes,
        },
    }
    if architecture != "semi_nmf":
        config["k"] = int(estimator.k_inference or estimator.k)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    save_file(state, str(folder / STATE_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


class SAELensFolderMixin:
    """``save_pretrained`` for the estimators :func:`save_pretrained` knows."""

    def save_pretrained(self, path, *, hook_name=None, model_name=None):
        """Write the fitted model to a folder in SAELens's layout.

        See :func:`sklearn_interp.io.save_pretrained`;
        :func:`sklearn_interp.io.load_pretrained` reads it back.

        Parameters
        ----------
        path : str or path
            The folder.
        hook_name : str, default=None
            Where the activations came from.
        model_name : str, default=None
            The model they came from.

        Returns
        -------
        path : pathlib.Path
        """
        return save_pretrained(self, path, hook_name=hook_name, model_name=model_name)


def _read_folder(path):
    from safetensors.numpy import load_file

    folder = Path(path)
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{str(folder)!r} is not an SAE folder: it lacks {', '.join(missing)}.")
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return folder, config, load_file(str(folder / WEIGHTS_FILE))


def load_pretrained(path: str | Path, *, device: str = "auto") -> BaseEstimator:
    """Load an SAE folder: one this library saved, or an SAELens ``standard`` or ``topk`` SAE.

    Parameters
    ----------
    path : str or path
        A folder with ``cfg.json`` and ``sae_weights.safetensors``.
    device : str, default="auto"
        The device of the returned estimator.

    Returns
    -------
    estimator : TopKSAE, MatchingPursuitSAE, SNMFDecomposer or PretrainedSAE
        Fitted. A folder written by :func:`save_pretrained` gives back the
        estimator that wrote it, whose ``transform`` gives the same codes;
        an SAELens folder gives a :class:`PretrainedSAE` whose
        ``transform`` and ``inverse_transform`` are SAELens's ``encode``
        and ``decode``.
    """
    folder, config, tensors = _read_folder(path)
    if "sklearn_interp" in config:
        return _load_own(folder, config, tensors, device)
    architecture = config.get("architecture", "standard")
    if architecture not in ("standard", "topk"):
        raise ValueError(
            f"SAELens architecture {architecture!r} is not supported; load_pretrained reads 'standard' "
            "(ReLU) and 'topk' SAEs."
        )
    normalization = config.get("normalize_activations", "none")
    if normalization not in ("none", None):
        raise ValueError(
            f"normalize_activations={normalization!r} rescales inputs by statistics SAELens computes at run "
            "time; only 'none' is supported."
        )
    missing = sorted({"W_enc", "W_dec", "b_enc", "b_dec"} - set(tensors))
    if missing:
        raise ValueError(f"{WEIGHTS_FILE} in {str(folder)!r} lacks {missing}.")
    k = config.get("k", (config.get("activation_fn_kwargs") or {}).get("k"))
    return PretrainedSAE(
        tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"],
        architecture=architecture, k=None if k is None else int(k),
        apply_b_dec_to_input=bool(config.get("apply_b_dec_to_input", True)), device=device,
    ).fit()


def _load_own(folder, config, tensors, device):
    from safetensors.numpy import load_file

    saved = config["sklearn_interp"]
    classes = {cls.__name__: cls for cls in _estimator_classes().values()}
    if saved.get("estimator") not in classes:
        raise ValueError(f"cfg.json names an unknown estimator {saved.get('estimator')!r}.")
    estimator = classes[saved["estimator"]](**{**saved["params"], "device": device})
    estimator.components_ = tensors["W_dec"]
    if "W_enc" in tensors:
        estimator.encoder_components_ = np.ascontiguousarray(tensors["W_enc"].T)
        estimator.bias_ = tensors["b_dec"]
    state_file = folder / STATE_FILE
    for name, value in (load_file(str(state_file)) if state_file.is_file() else {}).items():
        setattr(estimator, name, value)
    for name, value in saved.get("attributes", {}).items():
        setattr(estimator, name, np.asarray(value, dtype=object) if isinstance(value, list) else value)
    if "W_enc" in tensors and estimator.tied:
        # Tied SAEs share one array for both roles, as after fit.
        estimator.encoder_components_ = estimator.components_
    return estimator


class PretrainedSAE(ClassNamePrefixFeaturesOutMixin, TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """A sparse autoencoder with given weights, encoding as SAELens does.

    ``transform`` is SAELens's ``encode``: ``a = (x − b_dec) W_enc + b_enc``
    (``b_dec`` subtracted when ``apply_b_dec_to_input``), then ``ReLU(a)``
    (``architecture="standard"``) or the ``k`` largest entries of ``a``
    passed through ReLU, the rest zero (``"topk"``).
    ``inverse_transform`` is its ``decode``: ``z W_dec + b_dec``. Nothing is
    learned: ``fit`` checks the weights. :func:`load_pretrained` builds one
    from an SAELens folder.

    Parameters
    ----------
    W_enc : array-like of shape (n_features, n_components)
    b_enc : array-like of shape (n_components,)
    W_dec : array-like of shape (n_components, n_features)
    b_dec : array-like of shape (n_features,)
    architecture : {"standard", "topk"}, default="standard"
    k : int, default=None
        Active features per row; required for ``"topk"``.
    apply_b_dec_to_input : bool, default=True
    device : str or torch.device, default="auto"
    dtype : {"float32", "float64"} or None, default=None
        ``None``: the weights' dtype.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The decoder atoms, ``W_dec``.
    n_components_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.io import PretrainedSAE
    >>> rng = np.random.default_rng(0)
    >>> W_enc, W_dec = rng.normal(size=(4, 6)), rng.normal(size=(6, 4))
    >>> sae = PretrainedSAE(W_enc, np.zeros(6), W_dec, np.zeros(4), architecture="topk", k=2).fit()
    >>> codes = sae.transform(rng.normal(size=(3, 4)))
    >>> (codes > 0).sum(axis=1).tolist()
    [2, 2, 2]
    """

    _parameter_constraints: dict = {
        "W_enc": ["array-like"],
        "b_enc": ["array-like"],
        "W_dec": ["array-like"],
        "b_dec": ["array-like"],
        "architecture": [StrOptions({"standard", "topk"})],
        "k": [Interval(Integral, 1, None, closed="left"), None],
        "apply_b_dec_to_input": ["boolean"],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        W_enc: ArrayLike,
        b_enc: ArrayLike,
        W_dec: ArrayLike,
        b_dec: ArrayLike,
        *,
        architecture: Literal["standard", "topk"] = "standard",
        k: int | None = None,
        apply_b_dec_to_input: bool = True,
        device: str | torch.device = "auto",
        dtype: Literal["float32", "float64"] | None = None,
    ) -> None:
        self.W_enc = W_enc
        self.b_enc = b_enc
        self.W_dec = W_dec
        self.b_dec = b_dec
        self.architecture = architecture
        self.k = k
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.device = device
        self.dtype = dtype

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike | None = None, y: object = None) -> PretrainedSAE:
        """Check the weights' shapes (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), default=None
            Checked against ``W_enc`` when given.
        y : Ignored

        Returns
        -------
        self : PretrainedSAE
        """
        encoder, decoder = np.asarray(self.W_enc), np.asarray(self.W_dec)
        n_features, n_components = encoder.shape if encoder.ndim == 2 else (None, None)
        expected = {
            "W_enc": (n_features, n_components), "b_enc": (n_components,),
            "W_dec": (n_components, n_features), "b_dec": (n_features,),
        }
        for name, shape in expected.items():
            actual = np.shape(getattr(self, name))
            if n_features is None or actual != shape:
                raise ValueError(f"{name} has shape {actual}; with W_enc of shape {encoder.shape} it must be {shape}.")
        if self.architecture == "topk" and self.k is None:
            raise ValueError("architecture='topk' needs k, the number of active features per row.")
        if self.k is not None and self.k > n_components:
            raise ValueError(f"k={self.k} is more than the {n_components} features.")
        if X is not None:
            self._validate_tensor(X, reset=True)
        self.n_features_in_ = n_features
        self.n_components_ = n_components
        self._n_features_out = n_components
        self.components_ = decoder.copy()
        return self

    def _weights(self, like):
        return {
            name: _torch.to_tensor(getattr(self, name), like.device, like.dtype)
            for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }

    def transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """SAELens's ``encode``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X_t, as_tensor = self._validate_tensor(X, reset=False)
        weights = self._weights(X_t)
        with torch.no_grad():
            inputs = X_t - weights["b_dec"] if self.apply_b_dec_to_input else X_t
            pre = inputs @ weights["W_enc"] + weights["b_enc"]
            if self.architecture == "standard":
                codes = torch.relu(pre)
            else:
                top = pre.topk(self.k, dim=1)
                codes = torch.zeros_like(pre).scatter_(1, top.indices, torch.relu(top.values))
        return _torch.to_output(codes, as_tensor)

    def inverse_transform(self, X: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """SAELens's ``decode``: ``codes @ W_dec + b_dec``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_components)

        Returns
        -------
        reconstruction : ndarray or torch.Tensor of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        codes, as_tensor = self._validate_other(X, n_columns=self.n_components_, what="Codes")
        weights = self._weights(codes)
        with torch.no_grad():
            return _torch.to_output(codes @ weights["W_dec"] + weights["b_dec"], as_tensor)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags
