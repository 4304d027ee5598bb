"""Ranking in an explicit concept space: SESA, its ESA baseline and grouped NDCG."""

from ._esa import esa_concept_vectors, esa_relatedness
from ._metrics import NDCGScorer, grouped_ndcg_score, top_concept_agreement
from ._sesa import SESARanker, UnsupervisedConceptsWarning

__all__ = [
    "NDCGScorer",
    "SESARanker",
    "UnsupervisedConceptsWarning",
    "esa_concept_vectors",
    "esa_relatedness",
    "grouped_ndcg_score",
    "top_concept_agreement",
]
