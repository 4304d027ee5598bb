"""Offline datasets: real data shipped with Python or a dependency, and generators."""

from ._block import load_block_mnist, make_block_dataset, make_block_digits
from ._cub import load_cub200
from ._hierarchical import make_hierarchical_features
from ._modular import make_modular_arithmetic
from ._part_objects import PART_OBJECT_PARTS, make_part_objects
from ._series import load_elnino, load_fertility, load_macrodata, make_channel_groups
from ._python_docs import load_docs_ranking, load_python_docs, load_python_docs_topics
from ._ranking import load_esco_ranking, make_concept_ranking
from ._shift import permute_features, translate_images, truncate_words

__all__ = [
    "PART_OBJECT_PARTS",
    "load_block_mnist",
    "load_cub200",
    "load_docs_ranking",
    "load_elnino",
    "load_esco_ranking",
    "load_fertility",
    "load_macrodata",
    "load_python_docs",
    "load_python_docs_topics",
    "make_block_dataset",
    "make_block_digits",
    "make_channel_groups",
    "make_concept_ranking",
    "make_hierarchical_features",
    "make_modular_arithmetic",
    "make_part_objects",
    "permute_features",
    "translate_images",
    "truncate_words",
]
