"""Offline datasets: real data shipped with Python or a dependency, and generators."""

from ._modular import make_modular_arithmetic
from ._python_docs import load_python_docs

__all__ = ["load_python_docs", "make_modular_arithmetic"]
