"""Where activations live in a transformer, and the one way this library hooks them.

Every read of an activation (:class:`~sklearn_interp.activations.TransformerActivations`)
and every edit of one (:func:`steer`, :func:`splice`, :func:`ablate`) goes
through :func:`site_module` and :func:`edit_site` or :func:`read_sites`, so
the rules are written once: which module carries a site, whether the
activation is its input or its output, how a tuple output is unpacked, and
that a hook is removed when its context ends, also when the body raises.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Literal

import torch

#: The activation sites of a block: the MLP hidden layer after the
#: non-linearity (the input of the down projection; for Llama
#: ``act(gate(x)) * up(x)``), the attention output, and the block's output
#: (the residual stream after the block).
SITES = ("mlp", "attn", "residual")

# Where the MLP's down projection sits in common architectures, relative to
# one block; its *input* is the post-activation MLP hidden layer.
_DOWN_PROJECTIONS = (
    "output.dense",  # BERT, RoBERTa, MiniLM
    "mlp.c_proj",  # GPT-2
    "mlp.down_proj",  # Llama, Mistral, Gemma, Qwen, SmolLM2
    "mlp.fc2",  # OPT, Phi
    "mlp.dense_4h_to_h",  # GPT-NeoX, Pythia
    "ffn.lin2",  # DistilBERT
)
# The norm between the last block and the unembedding.
_FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.final_layernorm",
                "model.decoder.final_layer_norm")
# The attention module of a block, whose output (first element) is the attention output.
_ATTENTIONS = ("self_attn", "attn", "attention", "attention.output")


class LayerReached(Exception):
    """Raised by a reading hook to skip the blocks after the deepest one read."""


def blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of ``model``: the ModuleList as long as its layer count."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"Could not find the {n_layers} transformer blocks of {type(model).__name__}.")


def _submodule(root, path):
    module = root
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def check_site(model, layer, site):
    """A clear ``ValueError`` for a layer out of range or an unknown site; returns the block."""
    if site not in SITES:
        raise ValueError(f"Unknown site {site!r}: use one of {', '.join(map(repr, SITES))}.")
    layers = blocks(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ValueError(f"layer={layer!r} is out of range: the model has blocks 0 to {len(layers) - 1}.")
    return layers[layer]


def site_module(
    model: torch.nn.Module, layer: int, site: Literal["mlp", "attn", "residual"]
) -> tuple[torch.nn.Module, bool]:
    """The module that carries ``site`` of block ``layer``, and whether the activation is its input."""
    block = check_site(model, layer, site)
    if site == "residual":
        return block, False
    paths = _DOWN_PROJECTIONS if site == "mlp" else _ATTENTIONS
    for path in paths:
        module = _submodule(block, path)
        if module is not None:
            return module, site == "mlp"
    raise ValueError(
        f"Could not find the {site} site in {type(block).__name__} (looked for {', '.join(paths)}); "
        f"use another of {', '.join(SITES)}."
    )


def final_norm(model):
    """The normalisation a causal LM applies to the residual stream before its unembedding."""
    for path in _FINAL_NORMS:
        module = _submodule(model, path)
        if module is not None:
            return module
    raise ValueError(
        f"Could not find the final norm of {type(model).__name__} (looked for {', '.join(_FINAL_NORMS)})."
    )


def to_residual(model, layer, site, directions):
    """Directions at ``site`` as residual-stream directions: the MLP's through its down projection.

    The attention output and the block output already live in the residual
    stream. A direction maps through the projection's weight only: a bias
    belongs to an activation, not to a direction.
    """
    if site != "mlp":
        return directions
    module, _ = site_module(model, layer, site)
    weight = getattr(module, "weight", None)
    if weight is None or weight.ndim != 2:
        raise ValueError(f"The MLP output module of block {layer} has no weight matrix to map directions through.")
    # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
    weight = weight if weight.shape[1] == directions.shape[-1] else weight.T
    return directions.to(weight.dtype) @ weight.T


def site_width(model: torch.nn.Module, layer: int, site: Literal["mlp", "attn", "residual"]) -> int:
    """The width of the activation at ``site``: the MLP hidden size or the model width."""
    module, is_input = site_module(model, layer, site)
    if site == "mlp" and isinstance(module, torch.nn.Linear):
        return module.in_features
    config = model.config
    return int(config.intermediate_size if site == "mlp" else config.hidden_size)


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _replace_first(value, tensor):
    return (tensor, *value[1:]) if isinstance(value, tuple) else tensor


@contextlib.contextmanager
def edit_site(
    model: torch.nn.Module,
    layer: int,
    site: Literal["mlp", "attn", "residual"],
    function: Callable[[torch.Tensor], torch.Tensor],
) -> Iterator[None]:
    """Replace the activation ``a`` at ``site`` of block ``layer`` by ``function(a)`` inside the context.

    ``a`` has shape (batch, positions, width) and ``function`` returns a
    tensor of that shape. Hooks on one site nest: the inner context edits
    what the outer one produced. The hook is removed on exit, also when
    the body raises, so the model is left exactly as it was.
    """
    module, is_input = site_module(model, layer, site)
    if is_input:

        def hook(_module, args):
            return (function(args[0]), *args[1:])

        handle = module.register_forward_pre_hook(hook)
    else:

        def hook(_module, _args, output):
            return _replace_first(output, function(_first(output)))

        handle = module.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


@contextlib.contextmanager
def read_sites(
    model: torch.nn.Module, layers: Iterable[int], site: Literal["mlp", "attn", "residual"], *, stop: bool = True
) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the activations at ``site`` of every block in ``layers`` during forwards inside the context.

    Yields a dict ``{layer: [tensor, ...]}`` that each forward appends to.
    With ``stop=True`` the forward ends (with :class:`LayerReached`, which
    the caller catches) right after the deepest requested block, so no
    later block is computed.
    """
    layers = sorted(set(layers))
    captured = {layer: [] for layer in layers}
    handles = []
    deepest = layers[-1]
    try:
        for layer in layers:
            module, is_input = site_module(model, layer, site)

            def hook(_module, args, output=None, *, layer=layer, is_input=is_input):
                captured[layer].append(_first(args[0] if is_input else output))
                if stop and layer == deepest:
                    raise LayerReached

            if is_input:  # read before the module runs (a pre-hook gets no output)
                handles.append(module.register_forward_pre_hook(lambda m, a, hook=hook: hook(m, a)))
            else:
                handles.append(module.register_forward_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()
