"""Geometry of point clouds such as embeddings: local intrinsic dimension."""

from ._local_id import (
    LocalIDEstimator,
    intrinsic_dimension,
    mean_lid_scorer,
    mean_local_id,
    twonn_loglik_scorer,
)

__all__ = [
    "LocalIDEstimator",
    "intrinsic_dimension",
    "mean_lid_scorer",
    "mean_local_id",
    "twonn_loglik_scorer",
]
