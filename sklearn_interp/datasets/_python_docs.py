"""Real English text that ships with Python: the standard library's docstrings."""

from __future__ import annotations

import ast
import functools
import re
import sys
import sysconfig
from numbers import Integral, Real
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

# Packages of the standard library whose docstrings are tests, tooling or
# generated text rather than prose.
_SKIPPED_PACKAGES = {
    "test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages",
    "ensurepip", "turtledemo", "__pycache__", "encodings", "pydoc_data",
    "config-3", "venv", "msilib",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _stdlib_sources():
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in _SKIPPED_PACKAGES or part.startswith("config-") for part in parts):
            continue
        yield ".".join(parts)[: -len(".py")].removesuffix(".__init__"), path


def _docstrings(source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=True)
            if text:
                yield text


def _prose_sentences(docstring, min_words, max_words):
    """Sentences of the prose paragraphs of a docstring (code and tables dropped)."""
    for paragraph in re.split(r"\n\s*\n", docstring):
        lines = [line.strip() for line in paragraph.splitlines()]
        if any(line.startswith((">>>", "...", "$", "|", "+-", "::", "..")) for line in lines):
            continue
        text = " ".join(line for line in lines if line)
        for sentence in _SENTENCE_END.split(text):
            words = sentence.split()
            if not (min_words <= len(words) <= max_words):
                continue
            # Mostly words, not identifiers or symbols.
            if len(_WORD.findall(sentence)) < 0.6 * len(words) or not sentence[0].isupper():
                continue
            yield sentence


def load_python_docs(
    *,
    n_sentences: int | None = None,
    min_words: int = 5,
    max_words: int = 60,
) -> Bunch:
    """Sentences from the docstrings of Python's standard library.

    Real English prose (with the odd identifier) that ships with every Python
    installation, so it needs no download. The source files are parsed, never
    imported, in sorted order; code examples are dropped and duplicates
    removed, so the corpus is the same on every machine with the same Python
    version.

    Parameters
    ----------
    n_sentences : int, default=None
        Keep the first ``n_sentences`` sentences; ``None`` keeps all (about
        13 000 on Python 3.11; parsing them all takes a few seconds).
    min_words, max_words : int, default=5, 60
        Length bounds of a kept sentence, in words.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data``: list of str, the sentences; ``module``: list of str, the
        module each came from; ``DESCR``: a description.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_python_docs
    >>> docs = load_python_docs(n_sentences=100)
    >>> len(docs.data), len(docs.module)
    (100, 100)
    >>> isinstance(docs.data[0], str)
    True
    """
    sentences, modules, seen = [], [], set()
    for module, path in _stdlib_sources():
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for docstring in _docstrings(source):
            for sentence in _prose_sentences(docstring, min_words, max_words):
                if sentence in seen:
                    continue
                seen.add(sentence)
                sentences.append(sentence)
                modules.append(module)
                if n_sentences is not None and len(sentences) >= n_sentences:
                    return _bunch(sentences, modules)
    return _bunch(sentences, modules)


def _bunch(sentences, modules):
    version = ".".join(map(str, sys.version_info[:3]))
    return Bunch(
        data=sentences,
        module=modules,
        DESCR=(
            f"{len(sentences)} de-duplicated English sentences from the docstrings "
            f"of the Python {version} standard library, in sorted module order."
        ),
    )


DEFAULT_TOPICS = ("asyncio", "email", "logging", "tkinter")


def load_python_docs_topics(
    packages: Sequence[str] = DEFAULT_TOPICS,
    *,
    n_per_class: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Docstring sentences labelled by the standard-library package they document.

    A real text classification task that ships with Python: which package
    (say ``asyncio``, ``email``, ``logging`` or ``tkinter``) a sentence of
    its documentation comes from. Some sentences are generic ("Return the
    value.") and cannot be told apart, which is what a calibrated model
    should abstain on.

    Parameters
    ----------
    packages : sequence of str, default=("asyncio", "email", "logging", "tkinter")
        Top-level packages, one class each (at least two).
    n_per_class : int, default=None
        Keep this many sentences per package, drawn without replacement
        from ``random_state``; ``None`` keeps all.
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data``: list of str; ``target``: ndarray of int, the index of the
        package in ``target_names``; ``target_names``: ndarray of str;
        ``module``: list of str, the full module of each sentence.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_python_docs_topics
    >>> docs = load_python_docs_topics(n_per_class=50)
    >>> len(docs.data), docs.target_names.tolist()
    (200, ['asyncio', 'email', 'logging', 'tkinter'])
    """
    packages = list(packages)
    if len(set(packages)) < 2:
        raise ValueError(f"packages needs at least two distinct packages, got {packages!r}.")
    docs = load_python_docs()
    top_level = np.array([module.split(".")[0] for module in docs.module])
    rng = check_random_state(random_state)
    rows, targets = [], []
    for label, package in enumerate(packages):
        found = np.flatnonzero(top_level == package)
        if len(found) == 0:
            raise ValueError(f"No docstring sentences of a package named {package!r} in this Python's standard library.")
        if n_per_class is not None:
            if n_per_class > len(found):
                raise ValueError(f"{package!r} has {len(found)} sentences, fewer than n_per_class={n_per_class}.")
            found = np.sort(rng.choice(found, n_per_class, replace=False))
        rows.extend(found.tolist())
        targets.extend([label] * len(found))
    return Bunch(
        data=[docs.data[i] for i in rows],
        target=np.asarray(targets),
        target_names=np.asarray(packages),
        module=[docs.module[i] for i in rows],
        DESCR=f"Sentences of the Python standard library's docstrings labelled by package ({', '.join(packages)}).",
    )


# The first sentence of a docstring: up to the first ., ! or ? before a space.
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


@functools.lru_cache(maxsize=4)
def _documented_objects(min_summary_words, min_body_words):
    """``{module: (module docstring, [(name, summary, body), ...])}`` over the public standard library.

    Public classes, functions and methods whose docstring has a first
    sentence (the summary) and a body after it; private modules skipped.
    """
    found = {}
    for module, path in _stdlib_sources():
        if any(part.startswith("_") for part in module.split(".")):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        module_doc = ast.get_docstring(tree, clean=True)
        if not module_doc:
            continue
        objects, stack = [], [(tree.body, "")]
        while stack:
            nodes, prefix = stack.pop()
            for node in nodes:
                if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                    continue
                if isinstance(node, ast.ClassDef):
                    stack.append((node.body, f"{prefix}{node.name}."))
                docstring = ast.get_docstring(node, clean=True)
                if not docstring or ">>>" in docstring:
                    continue
                flat = " ".join(docstring.split())
                cut = _FIRST_SENTENCE.search(flat)
                if cut is None:
                    continue
                summary, body = flat[: cut.start()], flat[cut.end():]
                if len(summary.split()) >= min_summary_words and len(body.split()) >= min_body_words:
                    objects.append((prefix + node.name, summary, body))
        found[module] = (" ".join(module_doc.split()), objects)
    return found


@validate_params(
    {
        "n_queries": [Interval(Integral, 1, None, closed="left"), None],
        "n_candidates": [Interval(Integral, 2, None, closed="left")],
        "n_hard_negatives": [Interval(Integral, 0, None, closed="left")],
        "min_objects": [Interval(Integral, 1, None, closed="left")],
        "max_objects": [Interval(Integral, 1, None, closed="left")],
        "test_size": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_docs_ranking(
    n_queries: int | None = 600,
    n_candidates: int = 20,
    *,
    n_hard_negatives: int = 10,
    min_objects: int = 15,
    max_objects: int = 40,
    test_size: float = 0.25,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Find a standard-library object's documentation from its one-line summary; modules are the concepts.

    A real ranking task that ships with Python, where the concepts carry
    relevance. Every public class, function and method of the standard
    library whose docstring has a first sentence and a body is an object;
    the modules with at least ``min_objects`` of them, and a module
    docstring, are the concepts.

    - a **query** is an object's summary (its docstring's first sentence);
    - the **items** are docstring bodies (the rest of the docstring);
      a query's candidates are its own body (relevance 2), the
      ``n_hard_negatives`` bodies most similar to the summary by tf-idf
      cosine, and random other bodies; a body of another object of the
      same module has relevance 1, any other 0;
    - the **concepts** are the modules, with their module docstrings as
      concept texts; every query and item has exactly one (gold) concept;
    - the objects are split into a training and a test part (``test_size``
      of each module) and a query's candidates come from its own part, so
      test queries and test items are never seen in training.

    Parameters
    ----------
    n_queries : int or None, default=600
        Queries drawn at random among the objects; ``None`` uses them all.
    n_candidates : int, default=20
    n_hard_negatives : int, default=10
    min_objects : int, default=15
        Modules with fewer documented objects are left out.
    max_objects : int, default=40
        At most this many objects of one module, drawn at random (tkinter
        alone has over 80).
    test_size : float, default=0.25
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        - ``frame``: DataFrame with ``qid`` (``module:object``), ``query``,
          ``item``, ``relevance`` and ``split`` (``"train"`` or ``"test"``);
        - ``target``: the relevance grades;
        - ``query_concepts``, ``item_concepts``: (n_pairs, n_concepts)
          one-hot module of each side;
        - ``concept_names``: the module names;
        - ``concept_texts``: the module docstrings;
        - ``DESCR``.

    Examples
    --------
    >>> from sklearn_interp.datasets import load_docs_ranking
    >>> data = load_docs_ranking(n_queries=50)
    >>> data.frame.columns.tolist()
    ['qid', 'query', 'item', 'relevance', 'split']
    >>> data.frame.shape[0], data.item_concepts.shape[1] == len(data.concept_names)
    (1000, True)
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ._ranking import _candidate_rows, _split_items

    rng = check_random_state(random_state)
    modules = {
        module: (module_doc, objects)
        for module, (module_doc, objects) in _documented_objects(min_summary_words=3, min_body_words=10).items()
        if len(objects) >= min_objects
    }
    if len(modules) < 2:
        raise ValueError(f"Fewer than two modules have {min_objects} documented objects; lower min_objects.")
    names, summaries, bodies, module_of, seen = [], [], [], [], set()
    concept_names = sorted(modules)
    for concept, module in enumerate(concept_names):
        objects = modules[module][1]
        chosen = np.sort(rng.permutation(len(objects))[:max_objects])
        for name, summary, body in (objects[i] for i in chosen):
            # Inherited or copied docstrings, and stock summaries ("Return the value."),
            # would put one text on both sides of the split.
            if body in seen or summary in seen:
                continue
            seen.update((summary, body))
            names.append(f"{module}:{name}")
            summaries.append(summary)
            bodies.append(body)
            module_of.append(concept)
    module_of = np.asarray(module_of)
    n_objects = len(names)
    queries = (
        np.arange(n_objects) if n_queries is None
        else np.sort(rng.choice(n_objects, min(n_queries, n_objects), replace=False))
    )
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(bodies)
    similarity = (vectorizer.transform([summaries[q] for q in queries]) @ vectorizer.transform(bodies).T).toarray()
    test = _split_items(n_objects, test_size, rng, strata=module_of)
    query_rows, item_rows = _candidate_rows(queries, similarity, test, n_candidates, n_hard_negatives, rng)
    same_module = module_of[query_rows] == module_of[item_rows]
    relevance = np.where(query_rows == item_rows, 2, same_module.astype(np.int64))
    frame = pd.DataFrame(
        {
            "qid": [names[q] for q in query_rows],
            "query": [summaries[q] for q in query_rows],
            "item": [bodies[i] for i in item_rows],
            "relevance": relevance,
            "split": np.where(test[query_rows], "test", "train"),
        }
    )
    one_hot = np.eye(len(concept_names), dtype=np.int64)
    version = ".".join(map(str, sys.version_info[:3]))
    return Bunch(
        frame=frame,
        target=relevance,
        query_concepts=one_hot[module_of[query_rows]],
        item_concepts=one_hot[module_of[item_rows]],
        concept_names=np.asarray(concept_names, dtype=object),
        concept_texts=[modules[module][0] for module in concept_names],
        DESCR=(
            f"{len(queries)} queries x {n_candidates} candidates from {n_objects} documented objects of "
            f"{len(concept_names)} modules of the Python {version} standard library."
        ),
    )
