"""Reading and writing sparse dictionaries in SAELens's folder layout."""

from ._pretrained import PretrainedSAE, load_pretrained, save_pretrained

__all__ = ["PretrainedSAE", "load_pretrained", "save_pretrained"]
