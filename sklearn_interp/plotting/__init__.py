"""Matplotlib Displays for fitted estimators.

matplotlib is imported only when a Display draws, so importing
sklearn_interp never pays for it.
"""

from ._snmf import SNMFFeatureDisplay

__all__ = ["SNMFFeatureDisplay"]
