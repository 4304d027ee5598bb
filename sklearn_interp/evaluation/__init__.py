"""Evaluation of interpretability methods: do explanations point at what matters?"""

from ._attribution import input_gradient, integrated_gradients, smoothgrad
from ._consistency import (
    ConsistencyScorer,
    MissingPartLocsError,
    PartConsistencyScorer,
    PartStabilityScorer,
    activated_centres,
    box_half_sizes,
    consistency_score,
    consistency_scorer,
    part_hits,
    prototype_part_table,
    stability_score,
    stability_scorer,
)
from ._diffroar import DiffROAR
from ._masking import AttributionMasker, noisy_linear_imputation

__all__ = [
    "AttributionMasker",
    "ConsistencyScorer",
    "DiffROAR",
    "MissingPartLocsError",
    "PartConsistencyScorer",
    "PartStabilityScorer",
    "activated_centres",
    "box_half_sizes",
    "consistency_score",
    "consistency_scorer",
    "input_gradient",
    "integrated_gradients",
    "noisy_linear_imputation",
    "part_hits",
    "prototype_part_table",
    "smoothgrad",
    "stability_score",
    "stability_scorer",
]
