"""Activations and embeddings of real models, as the first step of a pipeline."""

from ._language_model import cache_folder, load_language_model
from ._transformer import SentenceEmbeddings, TransformerActivations

__all__ = ["SentenceEmbeddings", "TransformerActivations", "cache_folder", "load_language_model"]
