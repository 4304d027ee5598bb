"""Part-prototype networks: a classifier trained here, and the protocol the evaluators need."""

from ._network import PartPrototypeClassifier, sdfa_loss
from ._protocol import PrototypeActivationModel, TorchPrototypeAdapter

__all__ = ["PartPrototypeClassifier", "PrototypeActivationModel", "TorchPrototypeAdapter", "sdfa_loss"]
