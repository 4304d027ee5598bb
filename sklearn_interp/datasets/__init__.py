"""Offline datasets: real data shipped with Python or a dependency."""

from ._python_docs import load_python_docs

__all__ = ["load_python_docs"]
