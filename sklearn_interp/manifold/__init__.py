"""Geometry of point clouds such as embeddings: local intrinsic dimension, and its course through training."""

from ._local_id import (
    LocalIDEstimator,
    intrinsic_dimension,
    mean_lid_scorer,
    mean_local_id,
    twonn_loglik_scorer,
)
from ._tracker import LocalIDTracker

__all__ = [
    "LocalIDEstimator",
    "LocalIDTracker",
    "intrinsic_dimension",
    "mean_lid_scorer",
    "mean_local_id",
    "twonn_loglik_scorer",
]
