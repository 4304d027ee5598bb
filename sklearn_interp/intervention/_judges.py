"""Offline judges of steered continuations, and the steering evaluation that uses them.

The SNMF paper (after AxBench) has a judge LLM rate each continuation's
concept presence and fluency 0–2 and scores their harmonic mean. No judge
LLM runs offline, so each rating is replaced by a measurement whose meaning
can be stated exactly:

* **output-centric concept** — the share of generated tokens among the 50
  tokens the direction promotes through the logit lens (down projection,
  final norm, unembedding), above the share in unsteered continuations;
* **input-centric concept** — cosine between the continuation's MiniLM
  embedding and the centroid of the direction's concept texts (its
  top-activating contexts), above the unsteered continuations' cosine, and
  relative to how close the concept texts themselves are to it;
* **fluency** — the continuation's mean token cross-entropy under the
  unsteered model, between that of unsteered continuations (fluent) and
  that of the same continuations with their tokens shuffled (word salad),
  scaled down by lost token variety (repetition).

Each is mapped to 0–2 and the score is the harmonic mean of concept and
fluency, as AxBench does.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from .. import _torch
from ._hooks import final_norm, to_residual
from ._metrics import _language_model
from ._steering import (
    DEFAULT_PROMPT, _prompt_ids, _unit_directions, calibrate_alpha, sample_continuations, steering_kl,
)

if TYPE_CHECKING:
    import transformers

#: Vocabulary-share gain (over unsteered text) that the output-centric judge rates 2: six tokens in thirty.
FULL_VOCABULARY_GAIN = 0.2


def logit_lens(
    model: transformers.PreTrainedModel,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    directions: ArrayLike,
    *,
    n_tokens: int = 50,
) -> np.ndarray:
    """The tokens each direction promotes most: its projection on the vocabulary through the logit lens.

    A direction at the MLP site is first mapped into the residual stream
    by the down projection (attention-output and residual directions are
    there already), then through the final norm and the unembedding; the
    ``n_tokens`` largest logits are its output-centric description.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal language model.
    layer : int
    site : {"mlp", "attn", "residual"}
    directions : array-like of shape (n_directions, width)
    n_tokens : int, default=50

    Returns
    -------
    token_ids : ndarray of shape (n_directions, n_tokens)
        Strongest first.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.intervention import logit_lens
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> model, tokenizer = tiny_causal_lm(random_state=0)
    >>> logit_lens(model, 1, "mlp", np.ones((2, 64)), n_tokens=5).shape
    (2, 5)
    """
    units = _unit_directions(model, layer, site, directions)
    unembedding = model.get_output_embeddings()
    if unembedding is None:
        raise ValueError(f"{type(model).__name__} has no unembedding to project directions on.")
    if not isinstance(n_tokens, Integral) or not 1 <= n_tokens <= unembedding.weight.shape[0]:
        raise ValueError(f"n_tokens must be between 1 and the vocabulary size, got {n_tokens!r}.")
    with torch.no_grad():
        residual = to_residual(model, layer, site, units)
        logits = unembedding(final_norm(model)(residual[:, None, :]))[:, 0]
    return _torch.to_numpy(logits.topk(n_tokens, dim=-1).indices)


def _clean_word(word):
    # SentencePiece and byte-level BPE mark a leading space with ▁ or Ġ.
    return word.replace("▁", "").replace("Ġ", "").strip().lower()


def _vocabulary_shares(tokenizer, continuations, vocabularies, owner):
    """Share of each continuation's tokens among the words of its direction's vocabulary."""
    words = [{_clean_word(w) for w in tokenizer.convert_ids_to_tokens(list(v))} - {""} for v in vocabularies]
    shares = np.zeros(len(continuations))
    for row, (ids, direction) in enumerate(zip(continuations, owner)):
        tokens = [_clean_word(w) for w in tokenizer.convert_ids_to_tokens(ids)] if ids else []
        shares[row] = np.mean([t in words[direction] for t in tokens]) if tokens else 0.0
    return shares


def _cross_entropies(model, prompt_ids, continuations, batch_size=32):
    """Mean next-token cross-entropy (nats) of every continuation after the prompt, under ``model`` as it is."""
    device = prompt_ids.device
    prompt = prompt_ids[0].tolist()
    result = np.full(len(continuations), np.nan)
    for rows in _torch.batch_slices(len(continuations), batch_size):
        chunk = [continuations[i] for i in range(len(continuations))[rows]]
        length = len(prompt) + max(len(c) for c in chunk)
        ids = torch.zeros((len(chunk), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, continuation in enumerate(chunk):
            sequence = prompt + list(continuation)
            ids[i, : len(sequence)] = torch.as_tensor(sequence)
            mask[i, : len(sequence)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].double(), -1)
        token_losses = -log_probs.gather(-1, ids[:, 1:, None])[..., 0]
        scored = mask[:, 1:].bool()
        scored[:, : len(prompt) - 1] = False  # the prompt's own tokens are not the continuation's
        totals = (token_losses * scored).sum(1)
        counts = scored.sum(1)
        for i, row in enumerate(range(len(continuations))[rows]):
            if counts[i] > 0:
                result[row] = float(totals[i] / counts[i])
    return result


def _distinct_ratios(continuations):
    return np.array([len(set(ids)) / len(ids) if ids else 0.0 for ids in continuations])


def _unit_rows(embeddings):
    embeddings = np.asarray(embeddings.toarray() if hasattr(embeddings, "toarray") else embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def _concept_centroids(embedder, concepts):
    """Unit centroid of each concept's texts, and how close its texts are to the centroid of the others."""
    centroids, self_similarity = [], []
    for texts in concepts:
        rows = _unit_rows(embedder.transform(list(texts)))
        total = rows.sum(0)
        centroid = total / max(np.linalg.norm(total), 1e-12)
        # Leave-one-out: each text against the centroid of the other texts.
        others = _unit_rows(total[None, :] - rows)
        self_similarity.append(float(np.mean(np.sum(rows * others, axis=1))))
        centroids.append(centroid)
    return np.array(centroids), np.array(self_similarity)


def _check_concepts(concepts, n_directions):
    if concepts is None:
        return None
    if isinstance(concepts, str) or len(concepts) != n_directions:
        raise ValueError(f"concepts must hold one list of texts per direction ({n_directions}).")
    checked = []
    for index, texts in enumerate(concepts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        texts = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
        if len(texts) < 2:
            raise ValueError(
                f"Concept {index} has {len(texts)} distinct non-empty texts; the input-centric judge needs at "
                "least two (it compares each with the others)."
            )
        checked.append(texts)
    return checked


def _to_two(values):
    return 2.0 * np.clip(values, 0.0, 1.0)


def _harmonic_mean(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b > 0, 2.0 * a * b / (a + b), 0.0)


def judge_continuations(
    continuations: Sequence[Sequence[int]],
    owner: ArrayLike,
    *,
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    prompt_ids: torch.Tensor,
    vocabularies: Sequence[Sequence[int]],
    unsteered: Sequence[Sequence[int]],
    centroids: np.ndarray | None = None,
    self_similarity: np.ndarray | None = None,
    embedder: BaseEstimator | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> pd.DataFrame:
    """Rate continuations with the three offline judges; one row per continuation.

    ``owner[i]`` is the direction whose concept continuation ``i`` is rated
    for; ``unsteered`` the unsteered continuations that anchor every judge.
    Internal to :func:`evaluate_steering`, public for reading what a judge
    says about any text (say, a hand-written one). Continuations are token
    ids after ``prompt_ids`` (shape (1, n_prompt_tokens)); ``vocabularies[d]``
    holds direction d's token ids; with ``centroids`` (one unit row per
    direction in ``embedder``'s space) and ``self_similarity`` the
    embedding judge is added.
    """
    owner = np.asarray(owner, dtype=int)
    rng = check_random_state(random_state)
    shares = _vocabulary_shares(tokenizer, continuations, vocabularies, owner)
    base_shares = np.array([
        _vocabulary_shares(tokenizer, unsteered, vocabularies, np.full(len(unsteered), d)).mean()
        for d in range(len(vocabularies))
    ])
    concept_output = _to_two((shares - base_shares[owner]) / FULL_VOCABULARY_GAIN)

    ce = _cross_entropies(model, prompt_ids, continuations)
    ce_unsteered = float(np.nanmean(_cross_entropies(model, prompt_ids, unsteered)))
    shuffled = [list(rng.permutation(ids)) if ids else ids for ids in unsteered]
    ce_shuffled = float(np.nanmean(_cross_entropies(model, prompt_ids, shuffled)))
    distinct = _distinct_ratios(continuations)
    distinct_unsteered = float(np.mean(_distinct_ratios(unsteered)))
    salad_gap = max(ce_shuffled - ce_unsteered, 1e-6)
    variety = np.minimum(1.0, distinct / max(distinct_unsteered, 1e-12))
    fluency = np.where(np.isnan(ce), 0.0, _to_two(1.0 - (np.nan_to_num(ce) - ce_unsteered) / salad_gap) * variety)

    table = pd.DataFrame({
        "vocabulary_share": shares, "cross_entropy": ce, "distinct": distinct,
        "concept_output": concept_output, "fluency": fluency,
    })
    if centroids is not None:
        texts = [t if t.strip() else " " for t in _decoded(tokenizer, continuations)]
        embedded = _unit_rows(embedder.transform(texts))
        unsteered_embedded = _unit_rows(embedder.transform(
            [t if t.strip() else " " for t in _decoded(tokenizer, unsteered)]))
        base_cosine = (unsteered_embedded @ centroids.T).mean(0)  # per direction
        cosine = np.sum(embedded * centroids[owner], axis=1)
        ceiling = self_similarity[owner] - base_cosine[owner]
        gain = cosine - base_cosine[owner]
        with np.errstate(invalid="ignore", divide="ignore"):
            table["embedding_gain"] = gain
            table["concept_input"] = np.where(ceiling > 0, _to_two(gain / ceiling), np.nan)
        table["concept"] = table[["concept_output", "concept_input"]].mean(axis=1)
    else:
        table["embedding_gain"] = np.nan
        table["concept_input"] = np.nan
        table["concept"] = table["concept_output"]
    table["score"] = _harmonic_mean(table["concept"].to_numpy(), table["fluency"].to_numpy())
    table.attrs.update(ce_unsteered=ce_unsteered, ce_shuffled=ce_shuffled, distinct_unsteered=distinct_unsteered)
    return table


def _decoded(tokenizer, continuations):
    """The text of each continuation's tokens."""
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in continuations]


def evaluate_steering(
    directions: ArrayLike,
    concepts: Sequence[Sequence[str]] | None = None,
    *,
    model: str | tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase] = "smollm2",
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    kl_targets: Sequence[float] = (0.05, 0.1, 0.25),
    signs: Sequence[Literal[1, -1]] = (1, -1),
    n_samples: int = 4,
    max_new_tokens: int = 30,
    prompt: str = DEFAULT_PROMPT,
    top_k: int = 30,
    top_p: float = 0.3,
    n_vocabulary: int = 50,
    embedder: BaseEstimator | None = None,
    device: str = "auto",
    random_state: int | np.random.RandomState | None = None,
    verbose: int = 0,
) -> pd.DataFrame:
    """Steer a language model along each direction at calibrated strengths and rate the continuations offline.

    The SNMF paper's protocol (after AxBench): for every KL target and sign,
    :func:`calibrate_alpha` finds the step α along each unit direction that
    moves the next-token distribution after ``prompt`` by that KL; then
    ``n_samples`` continuations of ``max_new_tokens`` tokens are sampled
    (top-k, top-p) with ``α · d`` added at every position, all directions
    in one batch. Three offline judges replace the paper's judge LLM (see
    the :ref:`User Guide <steering>` for what each measures and misses):

    ``concept_output``
        ``2 · clip((s − s₀) / 0.2, 0, 1)`` with ``s`` the share of the
        continuation's tokens among the ``n_vocabulary`` tokens the
        direction promotes (:func:`logit_lens`) and ``s₀`` that share in
        unsteered continuations: 2 when six tokens in thirty more than
        unsteered text are the concept's.
    ``concept_input`` (when ``concepts`` are given)
        ``2 · clip((c − c₀) / (c* − c₀), 0, 1)`` with ``c`` the cosine
        between the continuation's embedding and the unit centroid of the
        direction's concept texts, ``c₀`` the mean for unsteered
        continuations and ``c*`` the mean cosine of each concept text with
        the centroid of the others: 2 when the continuation is as close to
        the concept as its own examples are.
    ``fluency``
        ``2 · clip(1 − (h − h₀) / (h_s − h₀), 0, 1) · min(1, r / r₀)`` with
        ``h`` the continuation's mean token cross-entropy under the
        unsteered model, ``h₀`` that of unsteered continuations, ``h_s`` that
        of unsteered continuations with their tokens shuffled, and ``r`` the
        share of distinct tokens (``r₀`` unsteered): 2 for text as likely and
        varied as the model's own, 0 for word salad or one repeated token.
    ``concept``, ``score``
        The mean of the concept judges given, and AxBench's harmonic mean
        ``2 · concept · fluency / (concept + fluency)``.

    Parameters
    ----------
    directions : array-like of shape (n_directions, width)
        Directions at ``(layer, site)``: SNMF's ``feature_directions()``,
        an SAE's ``components_``, :class:`~sklearn_interp.decomposition.DiffMeanDirections`'s.
    concepts : sequence of n_directions sequences of str, default=None
        Texts that show each direction's concept (for instance its
        top-activating contexts from :func:`top_contexts`), at least two
        each; ``None`` leaves out the input-centric judge.
    model : str or (model, tokenizer), default="smollm2"
    layer : int
    site : {"mlp", "attn", "residual"}
    kl_targets : sequence of float, default=(0.05, 0.1, 0.25)
    signs : sequence of {1, -1}, default=(1, -1)
        ``−1`` steers away from the direction; the concept stays the
        direction's own, so those rows show what steering away does.
    n_samples, max_new_tokens : int, default=4, 30
    prompt : str, default="I think that"
    top_k : int, default=30
    top_p : float, default=0.3
    n_vocabulary : int, default=50
        Tokens of each direction's logit-lens description.
    embedder : fitted transformer of texts, default=None
        Embeds texts for the input-centric judge; ``None`` is MiniLM
        (:class:`~sklearn_interp.activations.SentenceEmbeddings`).
    device : str, default="auto"
        Where a model loaded by name runs.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling: the same seed gives the same continuations.
    verbose : int, default=0

    Returns
    -------
    result : pandas.DataFrame
        One row per continuation: ``direction``, ``kl_target``, ``sign``,
        ``alpha``, ``kl`` (reached), ``sample``, ``continuation``, the raw
        judge values ``vocabulary_share``, ``embedding_gain``,
        ``cross_entropy``, ``distinct``, and ``concept_output``,
        ``concept_input``, ``concept``, ``fluency``, ``score`` (0–2). Rows
        with ``sign == 0`` (``kl_target`` and ``alpha`` 0) are the unsteered
        continuations rated for each direction's concept: the floor. A
        direction that cannot reach a KL target has no rows at it, with a
        warning.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.intervention import evaluate_steering
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> lm = tiny_causal_lm(random_state=0)
    >>> directions = np.random.default_rng(0).normal(size=(2, 64))
    >>> result = evaluate_steering(directions, model=lm, layer=1, site="mlp", kl_targets=(0.1,), signs=(1,),
    ...                            n_samples=2, max_new_tokens=5, prompt="beautiful is", random_state=0)
    >>> result.groupby("sign")["score"].size().to_dict()
    {0: 4, 1: 4}
    """
    network, tokenizer = _language_model(model, device)
    units = _unit_directions(network, layer, site, directions)
    n_directions = units.shape[0]
    concepts = _check_concepts(concepts, n_directions)
    kl_targets = [float(t) for t in np.atleast_1d(kl_targets)]
    if not kl_targets or any(not t > 0 for t in kl_targets):
        raise ValueError(f"kl_targets must be positive numbers of nats, got {kl_targets!r}.")
    if not signs or any(s not in (1, -1) for s in signs):
        raise ValueError(f"signs must hold 1 and/or -1, got {signs!r}.")
    rng = check_random_state(random_state)
    seed = lambda: int(rng.randint(np.iinfo(np.int32).max))  # noqa: E731 - one fresh seed per call, in order
    prompt_ids = _prompt_ids(tokenizer, prompt, units.device)
    sampling = dict(prompt=prompt, n_samples=n_samples, max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p)

    unsteered, _ = sample_continuations(network, tokenizer, layer, site, **sampling, random_state=seed())
    continuations, meta = [], []
    for direction in range(n_directions):
        for sample, ids in enumerate(unsteered):
            continuations.append(ids)
            meta.append((direction, 0.0, 0, 0.0, 0.0, sample))
    settings = [(target, sign) for target in kl_targets for sign in signs]
    for target, sign in _torch.progress(settings, verbose=verbose, desc="steering"):
        alphas = calibrate_alpha(network, tokenizer, layer, site, units, target_kl=target, prompt=prompt, sign=sign,
                                 unreachable="nan")
        reachable = np.flatnonzero(~np.isnan(alphas))
        if len(reachable) < n_directions:
            warnings.warn(
                f"Directions {np.flatnonzero(np.isnan(alphas)).tolist()} cannot move the KL to {target} "
                f"(sign {sign:+d}); they have no rows there.", UserWarning, stacklevel=2,
            )
        draw = seed()
        if not len(reachable):
            continue
        kl = steering_kl(network, tokenizer, layer, site, units[reachable], alphas[reachable], prompt=prompt)
        ids, _ = sample_continuations(network, tokenizer, layer, site, units[reachable], alphas[reachable],
                                      **sampling, random_state=draw)
        for position, direction in enumerate(reachable):
            for sample in range(n_samples):
                continuations.append(ids[position * n_samples + sample])
                meta.append((direction, target, sign, alphas[direction], kl[position], sample))

    vocabularies = logit_lens(network, layer, site, units, n_tokens=n_vocabulary)
    centroids = self_similarity = None
    if concepts is not None:
        if embedder is None:
            from ..activations import SentenceEmbeddings

            embedder = SentenceEmbeddings(device=device).fit()
        centroids, self_similarity = _concept_centroids(embedder, concepts)
    judged = judge_continuations(
        continuations, [m[0] for m in meta], model=network, tokenizer=tokenizer, prompt_ids=prompt_ids,
        vocabularies=vocabularies, unsteered=unsteered, centroids=centroids, self_similarity=self_similarity,
        embedder=embedder, random_state=seed(),
    )
    head = pd.DataFrame(meta, columns=["direction", "kl_target", "sign", "alpha", "kl", "sample"])
    head["continuation"] = _decoded(tokenizer, continuations)
    result = pd.concat([head, judged], axis=1)
    result.attrs.update(judged.attrs)
    return result
