"""Decompositions of activations into interpretable features."""

from ._snmf import SNMFDecomposer

__all__ = ["SNMFDecomposer"]
