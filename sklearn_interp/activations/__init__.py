"""Activations and embeddings of real models, as the first step of a pipeline."""

from ._transformer import SentenceEmbeddings, TransformerActivations

__all__ = ["SentenceEmbeddings", "TransformerActivations"]
