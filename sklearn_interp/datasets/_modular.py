"""Modular arithmetic tables: the standard testbed for grokking."""

from __future__ import annotations

from numbers import Integral
from typing import Literal

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

_OPERATIONS = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
}


@validate_params(
    {
        "modulus": [Interval(Integral, 2, None, closed="left")],
        "operation": [StrOptions(set(_OPERATIONS))],
    },
    prefer_skip_nested_validation=True,
)
def make_modular_arithmetic(
    modulus: int = 97,
    *,
    operation: Literal["add", "subtract", "multiply"] = "add",
) -> Bunch:
    """Every pair ``(a, b)`` of residues and ``(a ∘ b) mod modulus``.

    Small networks trained on part of this table first memorise it, then,
    long after, generalise to the rest ("grokking", Power et al., 2022).

    Parameters
    ----------
    modulus : int, default=97
        The modulus ``p``; the table has ``p²`` rows.
    operation : {"add", "subtract", "multiply"}, default="add"

    Returns
    -------
    data : Bunch
        ``data``: int64 array of shape (p², 2), the operands ``a`` and
        ``b``; ``target``: int64 array of shape (p²,), the result;
        ``modulus`` and ``operation``.

    Examples
    --------
    >>> from sklearn_interp.datasets import make_modular_arithmetic
    >>> table = make_modular_arithmetic(5)
    >>> table.data[7], table.target[7]
    (array([1, 2]), np.int64(3))
    """
    a, b = np.meshgrid(np.arange(modulus), np.arange(modulus), indexing="ij")
    data = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)
    target = _OPERATIONS[operation](data[:, 0], data[:, 1]) % modulus
    return Bunch(data=data, target=target.astype(np.int64), modulus=modulus, operation=operation)
