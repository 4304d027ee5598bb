"""Decompositions of activations into interpretable features."""

from ._mp_sae import MatchingPursuitSAE, TopKSAE
from ._snmf import SNMFDecomposer

__all__ = ["MatchingPursuitSAE", "SNMFDecomposer", "TopKSAE"]
