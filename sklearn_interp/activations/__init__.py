"""Activations of real models, as the first step of a pipeline."""

from ._transformer import TransformerActivations

__all__ = ["TransformerActivations"]
