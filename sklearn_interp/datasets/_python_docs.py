"""Real English text that ships with Python: the standard library's docstrings."""

from __future__ import annotations

import ast
import re
import sys
import sysconfig
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.utils import Bunch, check_random_state

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
