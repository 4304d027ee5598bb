"""Causal checks in a language model: steer, splice and ablate one site, and what a splice keeps.

Every hook this library puts into a model is written here, once, and removed
when its context ends (also when the body raises). Sites are ``"mlp"`` (the
MLP hidden layer, the input of the down projection), ``"attn"`` (the
attention output) and ``"residual"`` (the block's output).
"""

from ._hooks import SITES, blocks, edit_site, read_sites, site_module, site_width
from ._interventions import ablate, reconstruct, splice, steer
from ._metrics import loss_recovered, loss_recovered_scorer, read_activations

__all__ = [
    "SITES",
    "ablate",
    "blocks",
    "edit_site",
    "loss_recovered",
    "loss_recovered_scorer",
    "read_activations",
    "read_sites",
    "reconstruct",
    "site_module",
    "site_width",
    "splice",
    "steer",
]
