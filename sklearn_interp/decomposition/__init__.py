"""Decompositions of activations into interpretable features."""

from ._diffmean import DiffMeanDirections
from ._mp_sae import MatchingPursuitSAE, TopKSAE
from ._snmf import SNMFDecomposer

__all__ = ["DiffMeanDirections", "MatchingPursuitSAE", "SNMFDecomposer", "TopKSAE"]
