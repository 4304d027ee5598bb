"""Matplotlib Displays for fitted estimators.

matplotlib is imported only when a Display draws, so importing
sklearn_interp never pays for it.
"""

from ._one_se import plot_one_se
from ._snmf import SNMFFeatureDisplay

__all__ = ["SNMFFeatureDisplay", "plot_one_se"]
