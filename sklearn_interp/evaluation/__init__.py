"""Evaluation of interpretability methods: do explanations point at what matters?"""

from ._attribution import input_gradient, integrated_gradients, smoothgrad
from ._diffroar import DiffROAR
from ._masking import AttributionMasker, noisy_linear_imputation

__all__ = [
    "AttributionMasker",
    "DiffROAR",
    "input_gradient",
    "integrated_gradients",
    "noisy_linear_imputation",
    "smoothgrad",
]
