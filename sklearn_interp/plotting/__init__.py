"""Matplotlib Displays for fitted estimators, and static HTML feature dashboards.

matplotlib is imported only when a Display draws, so importing
sklearn_interp never pays for it; the dashboards need no matplotlib.
"""

from ._dashboard import FeatureDashboard
from ._one_se import plot_one_se
from ._snmf import SNMFFeatureDisplay

__all__ = ["FeatureDashboard", "SNMFFeatureDisplay", "plot_one_se"]
