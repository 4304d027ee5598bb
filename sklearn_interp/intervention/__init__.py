"""Causal checks in a language model: steer, splice and ablate one site, and what each does to the model.

Every hook this library puts into a model is written here, once, and removed
when its context ends (also when the body raises). Sites are ``"mlp"`` (the
MLP hidden layer, the input of the down projection), ``"attn"`` (the
attention output) and ``"residual"`` (the block's output).

* Splices: :func:`splice`, :func:`ablate`, and :func:`loss_recovered` for
  what a decomposition keeps of the model's loss.
* Steering: :func:`steer`, :func:`calibrate_alpha` (the step that moves the
  next-token distribution by a target KL), :func:`sample_continuations` and
  :func:`evaluate_steering` (the SNMF paper's protocol with offline judges).
* The input side: :func:`top_contexts` and :func:`concept_detection`.
"""

from ._detection import concept_detection, top_contexts
from ._hooks import SITES, blocks, edit_site, read_sites, site_module, site_width
from ._interventions import ablate, reconstruct, splice, steer
from ._judges import evaluate_steering, judge_continuations, logit_lens
from ._metrics import loss_recovered, loss_recovered_scorer, read_activations
from ._steering import calibrate_alpha, sample_continuations, steering_kl

__all__ = [
    "SITES",
    "ablate",
    "blocks",
    "calibrate_alpha",
    "concept_detection",
    "edit_site",
    "evaluate_steering",
    "judge_continuations",
    "logit_lens",
    "loss_recovered",
    "loss_recovered_scorer",
    "read_activations",
    "read_sites",
    "reconstruct",
    "sample_continuations",
    "site_module",
    "site_width",
    "splice",
    "steer",
    "steering_kl",
    "top_contexts",
]
