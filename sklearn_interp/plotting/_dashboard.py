"""Static HTML pages, one per feature of a sparse dictionary, and an index linking them.

In the spirit of SAE-Vis and SAEDashboard, without a server: each page shows
the feature's top-activating tokens highlighted in their context, the
histogram of its non-zero activations (inline SVG) and, for features of a
causal language model, the vocabulary its direction promotes and suppresses
through the unembedding.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .. import _torch

if TYPE_CHECKING:
    import transformers

    from ..activations import TransformerActivations

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60em;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.context{font-family:ui-monospace,monospace;white-space:pre-wrap}
mark{background:#ffb347;padding:0 1px;border-radius:2px}
.vocab span{display:inline-block;margin:2px;padding:1px 6px;border-radius:3px;font-family:ui-monospace,monospace}
.up span{background:#cfe8ff}.down span{background:#ffd6d6}
"""
_MARKED = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def _page(title, body):
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _highlighted(context, token, span=None):
    """The context as HTML with its ``[[token]]`` in a ``<mark>``; the token alone without a context.

    ``span`` is the slice of ``context`` holding the token's characters
    (``TransformerActivations.token_table``'s ``context_start`` and
    ``context_end``); without it the first ``[[ ]]`` is taken, which is
    wrong when the text itself contains ``[[``.
    """
    if not context:
        return f"<mark>{html.escape(str(token))}</mark>"
    if span is not None and 2 <= span[0] <= span[1] <= len(context) - 2:
        before, marked, after = context[:span[0] - 2], context[span[0]:span[1]], context[span[1] + 2:]
    else:
        pieces = _MARKED.split(context, maxsplit=1)
        if len(pieces) != 3:
            return html.escape(context)
        before, marked, after = pieces
    return f"{html.escape(before)}<mark>{html.escape(marked)}</mark>{html.escape(after)}"


def _histogram_svg(values, *, n_bins=30, width=560, height=160):
    """An inline SVG bar chart of ``values`` (the non-zero activations)."""
    if len(values) == 0:
        return "<p>The feature is never active on these rows.</p>"
    counts, edges = np.histogram(values, bins=n_bins)
    top = counts.max()
    bar = (width - 40) / n_bins
    bars = "".join(
        f"<rect x='{30 + i * bar:.1f}' y='{height - 20 - (height - 30) * c / top:.1f}' width='{bar - 1:.1f}' "
        f"height='{(height - 30) * c / top:.1f}' fill='#4a7fb5'><title>{lo:.3g}–{hi:.3g}: {c}</title></rect>"
        for i, (c, lo, hi) in enumerate(zip(counts, edges[:-1], edges[1:]))
    )
    axis = (
        f"<text x='30' y='{height - 4}' font-size='11'>{edges[0]:.3g}</text>"
        f"<text x='{width - 10}' y='{height - 4}' font-size='11' text-anchor='end'>{edges[-1]:.3g}</text>"
        f"<text x='2' y='12' font-size='11'>{top}</text>"
    )
    return (
        f"<svg role='img' aria-label='histogram of non-zero activations' width='{width}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg'>{bars}{axis}</svg>"
    )


class FeatureDashboard:
    """Static HTML pages for the features of a fitted sparse dictionary.

    Build it with :meth:`from_estimator` and write it with :meth:`save`:
    one page per feature (``feature_{k}.html``) and ``index.html`` linking
    them. Works for :class:`~sklearn_interp.decomposition.SNMFDecomposer`,
    :class:`~sklearn_interp.decomposition.MatchingPursuitSAE`,
    :class:`~sklearn_interp.decomposition.TopKSAE` and any transformer with
    ``transform`` and ``components_``.

    Parameters
    ----------
    features : list of dict
        One dict per feature, as :meth:`from_estimator` builds them.
    source : str
        A line describing where the activations came from.

    Attributes
    ----------
    features : list of dict
    """

    def __init__(self, features: Sequence[dict[str, Any]], source: str = "") -> None:
        self.features = features
        self.source = source

    @classmethod
    def from_estimator(
        cls,
        estimator: BaseEstimator,
        X: ArrayLike,
        tokens: TransformerActivations | pd.DataFrame | Sequence[str],
        *,
        features: ArrayLike | None = None,
        n_examples: int = 20,
        language_model: transformers.PreTrainedModel | None = None,
        tokenizer: transformers.PreTrainedTokenizerBase | None = None,
        layer: int | None = None,
        site: Literal["residual", "mlp", "attn"] = "residual",
        n_vocab: int = 10,
        source: str = "",
    ) -> FeatureDashboard:
        """Gather, for each feature, its top activations in context and its vocabulary projection.

        Parameters
        ----------
        estimator : fitted transformer with ``components_``
            A sparse dictionary: its ``transform(X)`` gives the codes.
        X : array-like of shape (n_samples, n_features)
            Activation rows, e.g. ``TransformerActivations.transform(texts)``.
        tokens : TransformerActivations or pandas.DataFrame or array-like of str
            What each row is: a fitted ``TransformerActivations`` (its
            :meth:`token_table` after the transform that gave ``X``), a
            DataFrame with ``token`` and optional ``context`` columns (the
            token in ``[[ ]]`` inside its context), or the tokens alone.
        features : array-like of int, default=None
            Features to show; ``None``: every feature active on ``X``.
        n_examples : int, default=20
            Top-activating rows per feature.
        language_model : transformers causal LM, default=None
            With ``tokenizer``: show the tokens whose unembedding logits
            the feature's direction raises and lowers most.
        tokenizer : transformers tokenizer, default=None
        layer : int, default=None
            Block the activations were read at; needed with
            ``site="mlp"``, whose directions map to the residual stream
            through the block's down projection.
        site : {"residual", "mlp", "attn"}, default="residual"
        n_vocab : int, default=10
            Tokens shown each way.
        source : str, default=""
            A line saying where the activations came from.

        Returns
        -------
        dashboard : FeatureDashboard
        """
        check_is_fitted(estimator)
        table = _token_table(tokens)
        codes = np.asarray(_torch.as_numpy(estimator.transform(X)), dtype=np.float64)
        if len(table) != codes.shape[0]:
            raise ValueError(f"tokens describe {len(table)} rows but X has {codes.shape[0]}.")
        if features is None:
            features = np.flatnonzero((codes > 0).any(axis=0))
        features = np.asarray(features, dtype=int)
        if features.size and (features.min() < 0 or features.max() >= codes.shape[1]):
            raise ValueError(f"features must lie in [0, {codes.shape[1]}), got {features.tolist()}.")
        vocabulary = None
        if language_model is not None:
            if tokenizer is None:
                raise ValueError("language_model needs its tokenizer to name the vocabulary.")
            vocabulary = _vocabulary_projection(
                language_model, tokenizer, estimator.components_[features], layer=layer, site=site, n_vocab=n_vocab
            )
        pages = []
        for position, feature in enumerate(features):
            column = codes[:, feature]
            active = np.flatnonzero(column > 0)
            top = active[np.argsort(-column[active], kind="stable")][:n_examples]
            pages.append({
                "feature": int(feature),
                "frequency": float(len(active) / len(column)),
                "max": float(column.max()) if len(column) else 0.0,
                "active_values": column[active],
                "examples": [
                    {"row": int(row), "value": float(column[row]), "token": str(table["token"].iloc[row]),
                     "context": table["context"].iloc[row] if "context" in table else None,
                     "span": (tuple(int(v) for v in table[["context_start", "context_end"]].iloc[row])
                              if "context_start" in table else None)}
                    for row in top
                ],
                "vocab": None if vocabulary is None else vocabulary[position],
            })
        return cls(pages, source=source)

    def feature_html(self, feature: int) -> str:
        """The page of one feature, as an HTML string."""
        page = next((p for p in self.features if p["feature"] == feature), None)
        if page is None:
            raise ValueError(f"The dashboard has no feature {feature}.")
        rows = "".join(
            f"<tr><td class='num'>{e['value']:.4g}</td><td class='context'>{_highlighted(e['context'], e['token'], e['span'])}"
            f"</td></tr>"
            for e in page["examples"]
        )
        examples = (
            f"<table class='examples'><tr><th>activation</th><th>token in context</th></tr>{rows}</table>"
            if rows else "<p>No active rows.</p>"
        )
        vocab = ""
        if page["vocab"] is not None:
            up = "".join(f"<span>{html.escape(t)}</span>" for t in page["vocab"]["up"])
            down = "".join(f"<span>{html.escape(t)}</span>" for t in page["vocab"]["down"])
            vocab = (
                "<h2>Vocabulary projection</h2><p>Tokens whose logits the feature's direction raises most "
                f"and lowers most through the unembedding.</p><div class='vocab up'>↑ {up}</div>"
                f"<div class='vocab down'>↓ {down}</div>"
            )
        body = (
            f"<p><a href='index.html'>All features</a></p><h1>Feature {feature}</h1>"
            f"<p>{html.escape(self.source)}</p>"
            f"<p>Active on {page['frequency']:.2%} of rows; largest activation {page['max']:.4g}.</p>"
            f"<h2>Top activations</h2>{examples}"
            f"<h2>Non-zero activations</h2>{_histogram_svg(page['active_values'])}{vocab}"
        )
        return _page(f"Feature {feature}", body)

    def index_html(self) -> str:
        """The index page linking every feature, as an HTML string."""
        rows = "".join(
            f"<tr><td><a href='feature_{p['feature']}.html'>{p['feature']}</a></td>"
            f"<td class='num'>{p['frequency']:.2%}</td><td class='num'>{p['max']:.4g}</td>"
            f"<td>{html.escape(', '.join(dict.fromkeys(e['token'] for e in p['examples'][:8])))}</td></tr>"
            for p in self.features
        )
        body = (
            f"<h1>Features</h1><p>{html.escape(self.source)}</p><table><tr><th>feature</th><th>active on</th>"
            f"<th>max</th><th>top tokens</th></tr>{rows}</table>"
        )
        return _page("Features", body)

    def save(self, folder: str | Path) -> Path:
        """Write ``index.html`` and one ``feature_{k}.html`` per feature into ``folder``.

        Parameters
        ----------
        folder : str or path
            Created if needed.

        Returns
        -------
        index : pathlib.Path
            The index page.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for page in self.features:
            (folder / f"feature_{page['feature']}.html").write_text(self.feature_html(page["feature"]), encoding="utf-8")
        index = folder / "index.html"
        index.write_text(self.index_html(), encoding="utf-8")
        return index


def _token_table(tokens):
    if hasattr(tokens, "token_table"):
        return tokens.token_table()
    if isinstance(tokens, pd.DataFrame):
        if "token" not in tokens:
            raise ValueError("A tokens DataFrame needs a 'token' column.")
        return tokens.reset_index(drop=True)
    return pd.DataFrame({"token": np.asarray(tokens, dtype=object)})


def _vocabulary_projection(model, tokenizer, directions, *, layer, site, n_vocab):
    """For each direction, the tokens whose unembedding logits it raises and lowers most."""
    import torch

    from ..intervention._hooks import to_residual

    if site == "mlp" and layer is None:
        raise ValueError("site='mlp' needs the layer, to map directions through its down projection.")
    unembedding = model.get_output_embeddings().weight
    with torch.no_grad():
        directions_t = torch.as_tensor(np.asarray(directions), device=unembedding.device, dtype=unembedding.dtype)
        residual = to_residual(model, layer, site, directions_t)
        if residual.shape[1] != unembedding.shape[1]:
            raise ValueError(
                f"The features have {residual.shape[1]} dimensions but the model's residual stream has "
                f"{unembedding.shape[1]}; pass the layer and site the activations were read at."
            )
        logits = residual @ unembedding.T
        up = logits.topk(n_vocab, dim=1).indices.cpu().numpy()
        down = (-logits).topk(n_vocab, dim=1).indices.cpu().numpy()
    return [
        {"up": [tokenizer.convert_ids_to_tokens(int(i)) for i in u], "down": [tokenizer.convert_ids_to_tokens(int(i)) for i in d]}
        for u, d in zip(up, down)
    ]
