"""Calibration that can abstain: probabilities and selective predictions that hold up under shift."""

from ._sdm import (
    SDMCalibrator,
    distance_quantile,
    high_reliability_search,
    rescaled_similarity,
    sdm_activation,
    support_neighbours,
)
from ._selective import (
    admitted_fraction,
    admitted_fraction_scorer,
    index_conditional_accuracy,
    index_conditional_accuracy_scorer,
    selective_report,
)

__all__ = [
    "SDMCalibrator",
    "admitted_fraction",
    "admitted_fraction_scorer",
    "distance_quantile",
    "high_reliability_search",
    "index_conditional_accuracy",
    "index_conditional_accuracy_scorer",
    "rescaled_similarity",
    "sdm_activation",
    "selective_report",
    "support_neighbours",
]
