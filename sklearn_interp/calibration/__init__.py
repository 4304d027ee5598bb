"""Calibration that can abstain: probabilities and selective predictions that hold up under shift."""

from ._sdm import (
    SDMCalibrator,
    distance_quantile,
    high_reliability_search,
    rescaled_similarity,
    sdm_activation,
    support_neighbours,
)
from ._risk_coverage import (
    RiskCoverageDisplay,
    aurc,
    excess_aurc,
    expected_calibration_error,
    risk_coverage_curve,
)
from ._selective import (
    admitted_fraction,
    admitted_fraction_scorer,
    index_conditional_accuracy,
    index_conditional_accuracy_scorer,
    reliable_admitted_fraction,
    selective_report,
    selective_report_by_alpha,
)

__all__ = [
    "RiskCoverageDisplay",
    "SDMCalibrator",
    "admitted_fraction",
    "admitted_fraction_scorer",
    "aurc",
    "distance_quantile",
    "excess_aurc",
    "expected_calibration_error",
    "high_reliability_search",
    "index_conditional_accuracy",
    "index_conditional_accuracy_scorer",
    "reliable_admitted_fraction",
    "rescaled_similarity",
    "risk_coverage_curve",
    "sdm_activation",
    "selective_report",
    "selective_report_by_alpha",
    "support_neighbours",
]
