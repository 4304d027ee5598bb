"""Steering a language model along directions: calibrated strengths and seeded continuations.

The protocol is the SNMF paper's (after AxBench): add ``α · d / ‖d‖`` at
every position of one site, choose α so that the next-token distribution
after a fixed prompt moves by a target KL divergence, and sample
continuations with top-k and top-p. Every direction of a call is steered in
one batch, one row per direction (and sample), so a bisection step or a
generated token costs one forward for all of them.
"""

from __future__ import annotations

import contextlib
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike

from .. import _torch
from ._hooks import read_sites, site_width
from ._interventions import _model_device_dtype, _vectors, steer

if TYPE_CHECKING:
    import transformers

#: The prompt after which the SNMF paper measures the KL of a steered model.
DEFAULT_PROMPT = "I think that"


def _prompt_ids(tokenizer, prompt, device):
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}.")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] == 0:
        raise ValueError(f"The tokenizer turns the prompt {prompt!r} into no tokens.")
    return ids.to(device)


def _unit_directions(network, layer, site, directions):
    """``directions`` as a (n, width) tensor of unit rows on the model's device."""
    device, dtype = _model_device_dtype(network)
    tensor = _vectors(directions, width=site_width(network, layer, site), name="directions", device=device,
                      dtype=dtype)
    tensor = tensor.reshape(-1, tensor.shape[-1])
    norms = torch.linalg.vector_norm(tensor, dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"Direction {int((norms[:, 0] == 0).nonzero()[0])} has zero length: it points nowhere.")
    return tensor / norms


@contextlib.contextmanager
def _steered(network, layer, site, units, alphas):
    """Steer row ``i`` of a batch by ``alphas[i] · units[i]``; no hook for ``units=None``.

    A zero α still hooks the model (adding an exact zero), so an α = 0 row
    is the unsteered model bit for bit, which the tests check.
    """
    if units is None:
        yield network
        return
    with steer(network, layer, site, units, alphas):
        yield network


def _last_log_probs(network, prompt_ids, rows, layer, site, units=None, alphas=None):
    """float64 log-probabilities of the token after the prompt, one row per steered copy of it."""
    with torch.no_grad(), _steered(network, layer, site, units, alphas):
        logits = network(input_ids=prompt_ids.expand(rows, -1)).logits[:, -1]
    return torch.log_softmax(logits.double(), dim=-1)


def _kl(clean, steered):
    """KL(clean ‖ steered) per row of float64 log-probabilities."""
    return (clean.exp() * (clean - steered)).sum(-1).clamp_min(0.0)


def steering_kl(
    network: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    directions: ArrayLike,
    alphas: ArrayLike,
    *,
    prompt: str = DEFAULT_PROMPT,
) -> np.ndarray:
    """KL(clean ‖ steered) of the next-token distribution after ``prompt``, one per direction and α.

    Parameters
    ----------
    network : transformers.PreTrainedModel
        A causal language model.
    tokenizer : transformers.PreTrainedTokenizerBase
    layer : int
    site : {"mlp", "attn", "residual"}
    directions : array-like of shape (n_directions, width)
    alphas : array-like of shape (n_directions,)
        The signed step along each unit direction.
    prompt : str, default="I think that"

    Returns
    -------
    kl : ndarray of shape (n_directions,)
        In nats, float64.
    """
    units = _unit_directions(network, layer, site, directions)
    alphas = np.broadcast_to(np.asarray(alphas, dtype=np.float64), (units.shape[0],))
    prompt_ids = _prompt_ids(tokenizer, prompt, units.device)
    clean = _last_log_probs(network, prompt_ids, 1, layer, site)
    steered = _last_log_probs(network, prompt_ids, units.shape[0], layer, site, units, alphas)
    return _torch.to_numpy(_kl(clean, steered))


def _activation_scale(network, prompt_ids, layer, site):
    """Mean ‖a‖ over the prompt's positions at the site: the scale of a step that starts to matter."""
    with torch.no_grad(), read_sites(network, [layer], site, stop=False) as captured:
        network(input_ids=prompt_ids)
    return float(torch.linalg.vector_norm(captured[layer][0][0].double(), dim=-1).mean())


def calibrate_alpha(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    directions: ArrayLike,
    *,
    target_kl: float,
    prompt: str = DEFAULT_PROMPT,
    sign: Literal[1, -1] = 1,
    rtol: float = 0.05,
    max_alpha: float | None = None,
    max_iter: int = 60,
    unreachable: Literal["raise", "nan"] = "raise",
) -> np.ndarray:
    """The step along each direction that moves the next-token distribution after ``prompt`` by ``target_kl``.

    For every unit direction ``d`` finds ``α`` with ``sign · α ≥ 0`` such
    that ``KL(p ‖ p_α)`` of the next-token distributions after the prompt's
    last token, clean (``p``) and steered by ``α · d`` at every position
    (``p_α``), is within ``rtol`` of ``target_kl`` (the SNMF paper's binary
    search). The search doubles ``|α|`` from a twentieth of the site's mean
    activation norm on the prompt until the KL passes the target, then
    bisects; every step is one forward for all directions at once (one row
    each). KL is continuous in α and zero at α = 0, so the bisection finds a
    crossing whenever the doubling passed the target.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal language model (for example from
        :func:`~sklearn_interp.activations.load_language_model`).
    tokenizer : transformers.PreTrainedTokenizerBase
    layer : int
    site : {"mlp", "attn", "residual"}
    directions : array-like of shape (n_directions, width) or (width,)
        Any lengths: each is scaled to unit length.
    target_kl : float
        In nats; the paper uses 0.025 to 0.5.
    prompt : str, default="I think that"
    sign : {1, -1}, default=1
        Steer along ``+d`` or ``−d``.
    rtol : float, default=0.05
        Relative tolerance on the KL.
    max_alpha : float, default=None
        Largest ``|α|`` tried; ``None`` is 100 times the site's mean
        activation norm on the prompt, a step that swamps the activation.
    max_iter : int, default=60
        Bisection steps at most.
    unreachable : {"raise", "nan"}, default="raise"
        What a direction that cannot move the KL to ``target_kl`` with
        ``|α| ≤ max_alpha`` gets: a ``ValueError`` naming it and the KL it
        reached, or NaN.

    Returns
    -------
    alphas : ndarray of shape (n_directions,)
        Signed steps (``sign · |α|``), float64, to pass to :func:`steer`.

    Raises
    ------
    ValueError
        With ``unreachable="raise"``, when a direction cannot reach the
        target.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_interp.intervention import calibrate_alpha, steering_kl
    >>> from sklearn_interp.testing import tiny_causal_lm
    >>> model, tokenizer = tiny_causal_lm(random_state=0)
    >>> directions = np.random.default_rng(0).normal(size=(3, 64))
    >>> alphas = calibrate_alpha(model, tokenizer, 1, "mlp", directions, target_kl=0.1,
    ...                          prompt="beautiful is better than")
    >>> kl = steering_kl(model, tokenizer, 1, "mlp", directions, alphas, prompt="beautiful is better than")
    >>> bool(np.all(np.abs(kl - 0.1) <= 0.005))
    True
    """
    if not isinstance(target_kl, Real) or isinstance(target_kl, bool) or not 0 < target_kl < np.inf:
        raise ValueError(f"target_kl must be a positive number of nats, got {target_kl!r}.")
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}.")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}.")
    if not isinstance(max_iter, Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if unreachable not in ("raise", "nan"):
        raise ValueError(f"unreachable must be 'raise' or 'nan', got {unreachable!r}.")
    units = _unit_directions(model, layer, site, directions)
    n_directions = units.shape[0]
    prompt_ids = _prompt_ids(tokenizer, prompt, units.device)
    clean = _last_log_probs(model, prompt_ids, 1, layer, site)
    scale = _activation_scale(model, prompt_ids, layer, site)
    if max_alpha is None:
        max_alpha = 100.0 * scale
    if not max_alpha > 0:
        raise ValueError(f"max_alpha must be positive, got {max_alpha!r}.")

    def kl_of(magnitudes, rows):
        steered = _last_log_probs(model, prompt_ids, len(rows), layer, site, units[rows], sign * magnitudes[rows])
        return _torch.to_numpy(_kl(clean, steered))

    low = np.zeros(n_directions)
    high = np.full(n_directions, min(scale / 20.0, max_alpha))
    reached = np.zeros(n_directions)
    failed = np.zeros(n_directions, dtype=bool)
    growing = np.arange(n_directions)
    while len(growing):
        reached[growing] = kl_of(high, growing)
        below = reached[growing] < target_kl * (1 - rtol)
        at_cap = high[growing] >= max_alpha
        stuck = growing[below & at_cap]
        if len(stuck) and unreachable == "raise":
            listed = ", ".join(f"{i} (KL {reached[i]:.3g})" for i in stuck[:10])
            raise ValueError(
                f"target_kl={target_kl} cannot be reached with |alpha| <= max_alpha={max_alpha:.4g} for "
                f"{len(stuck)} of {n_directions} directions: {listed}. Lower target_kl or raise max_alpha."
            )
        failed[stuck] = True
        low[growing[below]] = high[growing[below]]
        growing = growing[below & ~at_cap]
        high[growing] = np.minimum(2.0 * high[growing], max_alpha)

    alphas = high.copy()
    open_rows = np.flatnonzero((np.abs(reached - target_kl) > rtol * target_kl) & ~failed)
    for _ in range(max_iter):
        if not len(open_rows):
            break
        middle = (low + high) / 2.0
        kl = kl_of(middle, open_rows)
        alphas[open_rows] = middle[open_rows]
        done = np.abs(kl - target_kl) <= rtol * target_kl
        too_low = ~done & (kl < target_kl)
        low[open_rows[too_low]] = middle[open_rows[too_low]]
        high[open_rows[~done & ~too_low]] = middle[open_rows[~done & ~too_low]]
        open_rows = open_rows[~done]
    if len(open_rows):
        raise ValueError(
            f"The KL of directions {open_rows[:10].tolist()} did not settle within {rtol:.0%} of "
            f"target_kl={target_kl} in {max_iter} bisection steps (it jumps there); raise rtol or max_iter."
        )
    alphas[failed] = np.nan
    return sign * alphas


def _next_forward(model, tokens, previous):
    """One more position through the key-value cache of the previous forward."""
    if "cache" in previous:  # transformers >= 5.20 names it so
        return model(input_ids=tokens, cache=previous["cache"], use_cache=True)
    return model(input_ids=tokens, past_key_values=previous["past_key_values"], use_cache=True)


def _nucleus_sample(logits, top_k, top_p, generator):
    """One token per row from the top-k tokens, cut to the smallest set holding ``top_p`` of their mass.

    Drawn on the CPU from ``generator`` in float64, so a seed gives the same
    tokens for the same logits on every device.
    """
    probabilities = torch.softmax(logits.double().cpu(), dim=-1)
    values, indices = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
    values = values / values.sum(-1, keepdim=True)
    before = values.cumsum(-1) - values  # mass of the tokens ranked above each one
    values = torch.where(before < top_p, values, torch.zeros_like(values))
    choice = torch.multinomial(values, 1, generator=generator)
    return indices.gather(-1, choice)[:, 0]


def sample_continuations(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    directions: ArrayLike | None = None,
    alphas: ArrayLike | None = None,
    *,
    prompt: str = DEFAULT_PROMPT,
    n_samples: int = 4,
    max_new_tokens: int = 30,
    top_k: int = 30,
    top_p: float = 0.3,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[list[list[int]], Sequence[str]]:
    """Sampled continuations of ``prompt``, ``n_samples`` per direction, every direction in one batch.

    Row ``i · n_samples + j`` is sample ``j`` of direction ``i``, steered by
    ``alphas[i] · directions[i] / ‖directions[i]‖`` at every position (the
    prompt's and each new token's). Tokens are drawn from the top-``top_k``
    tokens cut to the smallest set holding ``top_p`` of their probability
    (the paper's top-k 30, top-p 0.3), by a CPU generator seeded by
    ``random_state``: the same seed gives the same continuations. A row
    stops at the end-of-sequence token.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizerBase
    layer : int
    site : {"mlp", "attn", "residual"}
    directions : array-like of shape (n_directions, width), default=None
        ``None``: ``n_samples`` continuations of the unsteered model.
    alphas : array-like of shape (n_directions,), default=None
        Signed steps, for instance from :func:`calibrate_alpha`.
    prompt : str, default="I think that"
    n_samples, max_new_tokens, top_k : int, default=4, 30, 30
    top_p : float, default=0.3
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    token_ids : list of list of int
        The new tokens of every row (end-of-sequence excluded).
    texts : list of str
        Their decoded text.
    """
    for name, value in (("n_samples", n_samples), ("max_new_tokens", max_new_tokens), ("top_k", top_k)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}.")
    device, _ = _model_device_dtype(model)
    units = row_alphas = None
    n_rows = n_samples
    if directions is None and alphas is not None:
        raise ValueError("alphas= steps along directions=; give the directions too, or neither for unsteered text.")
    if directions is not None:
        units = _unit_directions(model, layer, site, directions)
        if alphas is None:
            raise ValueError("Give alphas= with directions= (for instance from calibrate_alpha).")
        alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
        if alphas.shape[0] != units.shape[0]:
            raise ValueError(f"alphas has {alphas.shape[0]} values for {units.shape[0]} directions.")
        units = units.repeat_interleave(n_samples, dim=0)
        row_alphas = np.repeat(alphas, n_samples)
        n_rows = units.shape[0]
    prompt_ids = _prompt_ids(tokenizer, prompt, device).expand(n_rows, -1)
    generator = _torch.make_generator(random_state)
    eos = tokenizer.eos_token_id
    new_tokens = []
    finished = torch.zeros(n_rows, dtype=torch.bool)
    with torch.no_grad(), _steered(model, layer, site, units, row_alphas):
        output = model(input_ids=prompt_ids, use_cache=True)
        for _ in range(max_new_tokens):
            token = _nucleus_sample(output.logits[:, -1], top_k, top_p, generator)
            new_tokens.append(torch.where(finished, -1, token))
            finished |= token == eos
            if bool(finished.all()):
                break
            output = _next_forward(model, token[:, None].to(device), output)
    table = torch.stack(new_tokens, dim=1).tolist()
    token_ids = [[t for t in row if t >= 0 and t != eos] for row in table]
    return token_ids, [tokenizer.decode(ids, skip_special_tokens=True) for ids in token_ids]
