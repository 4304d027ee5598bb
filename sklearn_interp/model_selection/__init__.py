"""Model selection that chooses defensible models: bi-cross-validation and the one-standard-error rule."""

from ._bicrossval import (
    BiCrossValScorer,
    bicrossval_r2,
    bicrossval_scorer,
    dictionary_scoring,
    mean_l0,
    mean_l0_scorer,
)
from ._one_se import one_se_table, simplest_within_one_se

__all__ = [
    "BiCrossValScorer",
    "bicrossval_r2",
    "bicrossval_scorer",
    "dictionary_scoring",
    "mean_l0",
    "mean_l0_scorer",
    "one_se_table",
    "simplest_within_one_se",
]
