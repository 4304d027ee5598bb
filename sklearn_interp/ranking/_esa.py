"""Explicit semantic analysis (ESA): the unsupervised method SESA extends."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

TOKEN_PATTERN = r"(?u)\b\w+\b"


def esa_concept_vectors(
    texts: Sequence[str],
    concept_texts: Sequence[str],
    *,
    token_pattern: str = TOKEN_PATTERN,
    lowercase: bool = True,
) -> np.ndarray:
    """Each text's ESA vector: its tf-idf cosine with every concept's article.

    Following Gabrilovich & Markovitch (2007), a concept is an article
    (originally a Wikipedia page) and a text is represented by how similar
    it is to each article. The tf-idf weights (smoothed idf, unit length)
    are fitted on the articles.

    Parameters
    ----------
    texts : sequence of str
    concept_texts : sequence of str
        One article per concept.
    token_pattern : str, default=r"(?u)\\b\\w+\\b"
    lowercase : bool, default=True

    Returns
    -------
    vectors : ndarray of shape (n_texts, n_concepts)

    Examples
    --------
    >>> from sklearn_interp.ranking import esa_concept_vectors
    >>> esa_concept_vectors(["red apple"], ["apple fruit", "red colour"]).round(2)
    array([[0.5, 0.5]])
    """
    vectorizer = TfidfVectorizer(token_pattern=token_pattern, lowercase=lowercase).fit(concept_texts)
    articles = vectorizer.transform(concept_texts)
    return (vectorizer.transform(texts) @ articles.T).toarray()


def esa_relatedness(
    queries: Sequence[str],
    items: Sequence[str],
    concept_texts: Sequence[str],
    *,
    token_pattern: str = TOKEN_PATTERN,
    lowercase: bool = True,
) -> np.ndarray:
    """ESA relatedness of each (query, item) pair: the cosine of their concept vectors.

    A pair whose texts share no word with any article scores 0.

    Parameters
    ----------
    queries, items : sequence of str, of one length
    concept_texts : sequence of str
    token_pattern : str, default=r"(?u)\\b\\w+\\b"
    lowercase : bool, default=True

    Returns
    -------
    relatedness : ndarray of shape (n_pairs,)

    Examples
    --------
    >>> from sklearn_interp.ranking import esa_relatedness
    >>> esa_relatedness(["red apple"], ["apple pie"], ["apple fruit", "red colour"]).round(3)
    array([0.707])
    """
    options = {"token_pattern": token_pattern, "lowercase": lowercase}
    query_vectors = normalize(esa_concept_vectors(queries, concept_texts, **options))
    item_vectors = normalize(esa_concept_vectors(items, concept_texts, **options))
    return np.einsum("ij,ij->i", query_vectors, item_vectors)
