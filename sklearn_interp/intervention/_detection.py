"""Input-side evaluation of directions: what a feature fires on, and whether it tells concept text from other text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from .. import _torch
from ..base import _top_rows
from ._metrics import _check_texts, _language_model, site_batches
from ._steering import _unit_directions

if TYPE_CHECKING:
    import transformers


def top_contexts(
    scores: ArrayLike,
    contexts: Sequence[str],
    *,
    n_top: int = 25,
    strip_marks: bool = True,
) -> list[list[str]]:
    """The distinct contexts of the tokens on which each feature scores highest.

    Parameters
    ----------
    scores : array-like of shape (n_tokens, n_features)
        A score per token and feature: a decomposition's codes, or the
        projection of the activations on each direction.
    contexts : sequence of str of length n_tokens
        The text around each token, such as the ``context`` column of
        :meth:`TransformerActivations.token_table
        <sklearn_interp.activations.TransformerActivations.token_table>`.
    n_top : int, default=25
        Tokens per feature (the SNMF paper's 25); contexts repeated among
        them (neighbouring tokens of one sentence) are kept once.
    strip_marks : bool, default=True
        Remove the ``[[ ]]`` around the token, leaving plain text to embed.

    Returns
    -------
    contexts : list of n_features lists of str
        Strongest first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.intervention import top_contexts
    >>> top_contexts(np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 3.0]]), ["a [[x]]", "b [[y]]", "c [[z]]"], n_top=2)
    [['b y', 'c z'], ['c z', 'a x']]
    """
    scores = _torch.to_numpy(scores) if _torch.is_tensor(scores) else np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(contexts):
        raise ValueError(
            f"scores must have shape (n_tokens, n_features) with one row per context ({len(contexts)}), "
            f"got {scores.shape}."
        )
    if any(context is None for context in contexts):
        raise ValueError("Some contexts are None: this tokenizer gives no character offsets to cut contexts with.")
    result = []
    for rows in _top_rows(scores, n_top):
        texts = [contexts[row] for row in rows]
        if strip_marks:
            texts = [text.replace("[[", "").replace("]]", "") for text in texts]
        result.append(list(dict.fromkeys(texts)))
    return result


def _max_cosines(network, tokenizer, texts, layer, site, units, batch_size, max_length):
    """For every text and direction, the largest cosine between the direction and a token's activation."""
    rows = []
    for activation, mask in site_batches(network, tokenizer, texts, layer, site, batch_size, max_length):
        cosines = torch.nn.functional.normalize(activation.to(units.dtype), dim=-1) @ units.T
        rows.append(cosines.masked_fill(~mask[..., None], -torch.inf).amax(dim=1))
    return _torch.to_numpy(torch.cat(rows)).astype(np.float64)


def concept_detection(
    directions: ArrayLike,
    positive_texts: Sequence[Sequence[str]],
    negative_texts: Sequence[str] | Sequence[Sequence[str]],
    *,
    model: str | tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase] = "smollm2",
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    batch_size: int = 8,
    max_length: int = 128,
    device: str = "auto",
) -> pd.DataFrame:
    """How well each direction tells texts of its concept from other texts: the AUC of its best token's cosine.

    The SNMF paper's input-side evaluation: a text's score for a direction
    is the largest cosine between the unit direction and the activation of
    any of its tokens at ``(layer, site)``; the AUC says how often a text of
    the concept outscores a neutral one (0.5: no better than chance).

    Parameters
    ----------
    directions : array-like of shape (n_directions, width)
    positive_texts : sequence of n_directions sequences of str
        Texts that contain each direction's concept (held out from the fit).
    negative_texts : sequence of str, or sequence of n_directions sequences of str
        Neutral texts, shared by every direction or one set each.
    model : str or (model, tokenizer), default="smollm2"
    layer : int
    site : {"mlp", "attn", "residual"}
    batch_size, max_length : int, default=8, 128
    device : str, default="auto"

    Returns
    -------
    result : pandas.DataFrame
        One row per direction: ``direction``, ``auc``, ``positive_mean``,
        ``negative_mean`` (mean max-cosines), ``n_positive``, ``n_negative``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.intervention import concept_detection
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> lm = tiny_causal_lm(random_state=0)
    >>> result = concept_detection(np.ones((1, 64)), [["beautiful is better"]], ["flat is better"], model=lm,
    ...                            layer=1, site="mlp")
    >>> list(result.columns)
    ['direction', 'auc', 'positive_mean', 'negative_mean', 'n_positive', 'n_negative']
    """
    network, tokenizer = _language_model(model, device)
    units = _unit_directions(network, layer, site, directions)
    n_directions = units.shape[0]
    if isinstance(positive_texts, str) or len(positive_texts) != n_directions:
        raise ValueError(f"positive_texts must hold one list of texts per direction ({n_directions}).")
    positives = [list(_check_texts(texts)) for texts in positive_texts]
    shared = len(negative_texts) > 0 and all(isinstance(t, str) for t in negative_texts)
    if not shared and len(negative_texts) != n_directions:
        raise ValueError(
            f"negative_texts must be a list of texts, or one list per direction ({n_directions})."
        )
    negatives = [list(_check_texts(negative_texts))] * n_directions if shared else [
        list(_check_texts(texts)) for texts in negative_texts
    ]
    every_text = list(dict.fromkeys(t for group in positives + negatives for t in group))
    index = {text: row for row, text in enumerate(every_text)}
    cosines = _max_cosines(network, tokenizer, every_text, layer, site, units, batch_size, max_length)
    rows = []
    for direction in range(n_directions):
        positive = cosines[[index[t] for t in positives[direction]], direction]
        negative = cosines[[index[t] for t in negatives[direction]], direction]
        labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
        rows.append({
            "direction": direction,
            "auc": float(roc_auc_score(labels, np.r_[positive, negative])),
            "positive_mean": float(positive.mean()),
            "negative_mean": float(negative.mean()),
            "n_positive": len(positive),
            "n_negative": len(negative),
        })
    return pd.DataFrame(rows)
