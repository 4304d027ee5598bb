"""How much of a language model's next-token loss survives a spliced decomposition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from .. import _torch
from ._hooks import LayerReached, read_sites, site_width
from ._interventions import ablate, check_transformer, reconstruct, splice

if TYPE_CHECKING:
    import transformers


def _language_model(model, device):
    """``(network, tokenizer)`` from a name or folder, or as given; a clear error without an LM head."""
    if isinstance(model, tuple) and len(model) == 2:
        network, tokenizer = model
    elif isinstance(model, str):
        from ..activations import load_language_model

        network, tokenizer = load_language_model(model, device=device)
    else:
        raise TypeError(
            "model must be 'smollm2', a folder of a causal language model, or a (model, tokenizer) pair; "
            f"got {type(model).__name__}."
        )
    output = getattr(network, "get_output_embeddings", lambda: None)()
    if output is None:
        raise ValueError(
            f"{type(network).__name__} has no language-model head, so it predicts no next token to score; "
            "load it with AutoModelForCausalLM (for example load_language_model)."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return network, tokenizer


def _next_token_logits(network, batch):
    """Logits of every next token (the model's dtype), the labels, and which label positions are real."""
    logits = network(**batch).logits[:, :-1]
    return logits, batch["input_ids"][:, 1:], batch["attention_mask"][:, 1:].bool()


def _row_log_probs(logits, row):
    # float64, one text at a time: normalised to float64 precision, so a KL is
    # non-negative to 1e-15, with memory of one text's positions × vocabulary.
    return torch.log_softmax(logits[row].double(), dim=-1)


def _losses_and_kl(clean, others, labels, scored):
    """Summed cross-entropy of the clean and each other logits, and summed KL(clean ‖ first other)."""
    losses, kl = [0.0] * (1 + len(others)), 0.0
    for row in range(labels.shape[0]):
        mask, targets = scored[row], labels[row].unsqueeze(-1)
        log_clean = _row_log_probs(clean, row)
        for index, logits in enumerate([clean, *others]):
            log_probs = log_clean if index == 0 else _row_log_probs(logits, row)
            losses[index] += float(-log_probs.gather(-1, targets).squeeze(-1)[mask].sum())
            if index == 1:
                kl += float((log_clean.exp() * (log_clean - log_probs)).sum(-1)[mask].sum())
    return losses, kl


def _site_mean(network, batches, layer, site):
    """Mean activation at the site over every real token of the texts (for mean ablation)."""
    total, count = None, 0
    for batch in batches:
        with read_sites(network, [layer], site) as captured:
            try:
                network(**batch)
            except LayerReached:
                pass
        activation = captured[layer][0][batch["attention_mask"].bool()].double()
        total = activation.sum(0) if total is None else total + activation.sum(0)
        count += activation.shape[0]
    return total / count


def loss_recovered(
    transformer: BaseEstimator,
    texts: Sequence[str],
    *,
    model: str | tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase] = "smollm2",
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    ablation: Literal["mean", "zero"] = "mean",
    batch_size: int = 8,
    max_length: int = 128,
    device: str = "auto",
    verbose: int = 0,
) -> pd.DataFrame:
    """Next-token cross-entropy of a language model with a decomposition spliced in, against the clean and ablated model.

    The decomposition replaces the activation at ``(layer, site)`` by its
    reconstruction ``inverse_transform(transform(a))`` at every position
    (:func:`splice`). What it keeps of the model's behaviour is measured as
    the sparse-autoencoder literature does (SAELens's ``ce_loss_score``,
    SAEBench's "CE loss recovered"):

    * ``ce_clean``, ``ce_spliced``, ``ce_ablated``: mean next-token
      cross-entropy (nats per predicted token, padding excluded) of the
      clean model, the spliced one, and one whose activation is ablated
      (``ablation="mean"``: replaced by its mean over these texts' tokens;
      ``"zero"``: by zeros, SAELens's choice);
    * ``fraction_recovered = (ce_ablated − ce_spliced) / (ce_ablated − ce_clean)``:
      1 when the splice loses nothing, 0 when it is as bad as ablating;
    * ``kl_spliced``: mean per-token KL(clean ‖ spliced) of the next-token
      distributions (SAEBench's ``kl_div_with_sae``), always ≥ 0;
    * ``r2``: 1 − Σ‖a − â‖² / Σ‖a − ā‖² over these tokens' activations;
    * ``l0``: mean number of non-zero codes per token;
    * ``dead_fraction``: the fraction of code units zero on every token.

    Parameters
    ----------
    transformer : fitted estimator with ``transform`` and ``inverse_transform``
        Fitted on activations of the same site (SNMF, MP-SAE, TopK, PCA, or a
        Pipeline of them).
    texts : sequence of str
        Held-out texts; they are scored, never fitted on.
    model : str or (model, tokenizer), default="smollm2"
        ``"smollm2"``, a folder of a causal LM, or a loaded pair.
    layer : int
    site : {"mlp", "attn", "residual"}
    ablation : {"mean", "zero"}, default="mean"
    batch_size : int, default=8
        Texts per forward pass: memory is about ``batch_size × max_length ×
        vocabulary`` floats for the logits.
    max_length : int, default=128
    device : str, default="auto"
        Where a model loaded by name runs (a given pair stays where it is).
    verbose : int, default=0
        A progress bar over the batches when ``>= 1``.

    Returns
    -------
    result : pandas.DataFrame
        One row with the columns above and ``n_tokens``.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_interp.intervention import loss_recovered, read_activations
    >>> from sklearn_interp.testing import tiny_causal_lm, zen_of_python
    >>> lm = tiny_causal_lm(random_state=0)
    >>> texts = zen_of_python()
    >>> X = read_activations(lm, texts, layer=1, site="mlp")
    >>> pca = PCA(64).fit(X)               # full rank: an exact reconstruction
    >>> result = loss_recovered(pca, texts, model=lm, layer=1, site="mlp")
    >>> round(float(result["fraction_recovered"].iloc[0]), 4)
    1.0
    """
    texts = _check_texts(texts)
    if ablation not in ("mean", "zero"):
        raise ValueError(f"ablation must be 'mean' or 'zero', got {ablation!r}.")
    network, tokenizer = _language_model(model, device)
    width = site_width(network, layer, site)
    check_transformer(transformer, width)
    batches = list(_token_batches(network, tokenizer, texts, batch_size, max_length))
    totals = dict.fromkeys(["clean", "spliced", "ablated", "kl", "residual", "squares", "nonzero"], 0.0)
    n_scored = n_tokens = 0
    activation_sum, active = None, None
    with torch.no_grad():
        mean = _site_mean(network, batches, layer, site) if ablation == "mean" else None
        for batch in _torch.progress(batches, verbose=verbose, desc="loss recovered"):
            with read_sites(network, [layer], site, stop=False) as captured:
                clean, labels, scored = _next_token_logits(network, batch)
            with splice(network, layer, site, transformer):
                spliced, _, _ = _next_token_logits(network, batch)
            with ablate(network, layer, site, how=ablation, mean=mean):
                ablated, _, _ = _next_token_logits(network, batch)
            (clean_loss, spliced_loss, ablated_loss), kl = _losses_and_kl(clean, [spliced, ablated], labels, scored)
            totals["clean"] += clean_loss
            totals["spliced"] += spliced_loss
            totals["ablated"] += ablated_loss
            totals["kl"] += kl
            n_scored += int(scored.sum())

            activation = captured[layer][0][batch["attention_mask"].bool()]
            decoded, codes = reconstruct(transformer, activation)
            codes = _torch.as_numpy(codes)
            totals["residual"] += float(((activation - decoded).double() ** 2).sum())
            totals["squares"] += float((activation.double() ** 2).sum())
            activation_sum = activation.double().sum(0) if activation_sum is None else activation_sum + activation.double().sum(0)
            totals["nonzero"] += float(np.count_nonzero(codes))
            used = (codes != 0).any(axis=0)
            active = used if active is None else active | used
            n_tokens += activation.shape[0]
    if n_scored == 0:
        raise ValueError("The texts hold no next token to predict: give texts of at least two tokens.")
    total_variance = totals["squares"] - float((activation_sum**2).sum()) / n_tokens
    ce = {name: totals[name] / n_scored for name in ("clean", "spliced", "ablated")}
    gap = ce["ablated"] - ce["clean"]
    return pd.DataFrame([{
        "ce_clean": ce["clean"],
        "ce_spliced": ce["spliced"],
        "ce_ablated": ce["ablated"],
        "fraction_recovered": (ce["ablated"] - ce["spliced"]) / gap if gap != 0 else np.nan,
        "kl_spliced": totals["kl"] / n_scored,
        "r2": 1.0 - totals["residual"] / total_variance if total_variance > 0 else np.nan,
        "l0": totals["nonzero"] / n_tokens,
        "dead_fraction": float(1.0 - active.mean()),
        "n_tokens": n_scored,
    }])


def _token_batches(network, tokenizer, texts, batch_size, max_length):
    """Padded ``input_ids`` and ``attention_mask`` of ``batch_size`` texts at a time, on the model's device."""
    device = next(network.parameters()).device
    for rows in _torch.batch_slices(len(texts), batch_size):
        encoded = tokenizer(texts[rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        yield {name: encoded[name].to(device) for name in ("input_ids", "attention_mask")}


def _check_texts(texts):
    from ..activations._transformer import _check_texts as check

    return check(texts)


def read_activations(
    model: tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase],
    texts: Sequence[str],
    *,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    batch_size: int = 8,
    max_length: int = 128,
) -> np.ndarray:
    """Activations at ``(layer, site)`` of every real token of ``texts``, for a loaded ``(model, tokenizer)``.

    The quick way to fit a decomposition on a model held in memory (tests,
    notebooks); :class:`~sklearn_interp.activations.TransformerActivations`
    is the estimator for pipelines.

    Returns
    -------
    activations : ndarray of shape (n_tokens, width)
    """
    network, tokenizer = _language_model(model, "auto")
    texts = _check_texts(texts)
    rows = [activation[mask] for activation, mask in site_batches(network, tokenizer, texts, layer, site, batch_size,
                                                                  max_length)]
    return _torch.to_numpy(torch.cat(rows))


def site_batches(network, tokenizer, texts, layer, site, batch_size, max_length):
    """``(activation, attention_mask)`` at ``(layer, site)`` for each batch of texts; the forward stops after the block.

    ``activation`` is (batch, positions, width) with padding positions
    included; ``attention_mask`` (bool) says which are real tokens.
    """
    with torch.no_grad():
        for encoded in _token_batches(network, tokenizer, texts, batch_size, max_length):
            with read_sites(network, [layer], site) as captured:
                try:
                    network(**encoded)
                except LayerReached:
                    pass
            yield captured[layer][0], encoded["attention_mask"].bool()


def loss_recovered_scorer(estimator: BaseEstimator, X: Sequence[str], y: object = None) -> float:
    """``fraction_recovered`` of a fitted Pipeline that starts with TransformerActivations, on texts ``X``.

    For ``GridSearchCV(Pipeline([("acts", TransformerActivations(model=...)),
    ("sae", ...)]), ..., scoring=loss_recovered_scorer)``: the first step
    says which model, layer and site; the rest of the pipeline is spliced
    in there; higher is better. A search over a decomposition's size then
    picks the size that keeps most of the model's loss, not merely the
    largest reconstruction R².
    """
    from ..activations import TransformerActivations

    steps = getattr(estimator, "steps", None)
    if not steps or not isinstance(steps[0][1], TransformerActivations) or len(steps) < 2:
        raise TypeError(
            "loss_recovered_scorer scores a Pipeline whose first step is TransformerActivations and whose "
            f"later steps decompose its activations; got {type(estimator).__name__}."
        )
    activations = steps[0][1]
    if isinstance(activations.layer, (list, tuple)):
        raise ValueError("loss_recovered_scorer splices one site: give TransformerActivations a single layer.")
    tokenizer, network = activations._network()
    transformer = estimator[1:] if len(steps) > 2 else steps[1][1]
    result = loss_recovered(
        transformer, X, model=(network, tokenizer), layer=activations.layer, site=activations.site,
        batch_size=activations.batch_size, max_length=activations.max_length,
    )
    return float(result["fraction_recovered"].iloc[0])
