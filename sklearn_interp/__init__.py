"""sklearn_interp: recent interpretability methods as scikit-learn estimators.

Each method is a scikit-learn estimator computed in torch, on CPU or GPU,
in a public subpackage per family:

* :mod:`sklearn_interp.decomposition` -- :class:`~sklearn_interp.decomposition.SNMFDecomposer`,
  :class:`~sklearn_interp.decomposition.MatchingPursuitSAE`
* :mod:`sklearn_interp.calibration` -- :class:`~sklearn_interp.calibration.SDMCalibrator`
* :mod:`sklearn_interp.evaluation` -- :class:`~sklearn_interp.evaluation.DiffROAR`,
  :class:`~sklearn_interp.evaluation.ConsistencyScorer`
* :mod:`sklearn_interp.manifold` -- :class:`~sklearn_interp.manifold.LocalIDEstimator`
* :mod:`sklearn_interp.forecasting` -- :class:`~sklearn_interp.forecasting.ChannelClusterForecaster`
* :mod:`sklearn_interp.ranking` -- :class:`~sklearn_interp.ranking.SESARanker`
* :mod:`sklearn_interp.prototypes` -- :class:`~sklearn_interp.prototypes.PartPrototypeClassifier`
* :mod:`sklearn_interp.neural_network` -- torch classifiers whose gradients can be explained
* :mod:`sklearn_interp.activations` -- :class:`~sklearn_interp.activations.TransformerActivations`
* :mod:`sklearn_interp.datasets` -- offline real data
* :mod:`sklearn_interp.testing` -- Hypothesis strategies for property tests
"""

from .calibration import SDMCalibrator
from .decomposition import MatchingPursuitSAE, SNMFDecomposer
from .evaluation import ConsistencyScorer, DiffROAR
from .forecasting import ChannelClusterForecaster
from .manifold import LocalIDEstimator
from .ranking import SESARanker

__version__ = "0.1.0"

__all__ = [
    "ChannelClusterForecaster",
    "ConsistencyScorer",
    "DiffROAR",
    "LocalIDEstimator",
    "MatchingPursuitSAE",
    "SDMCalibrator",
    "SESARanker",
    "SNMFDecomposer",
    "__version__",
]
