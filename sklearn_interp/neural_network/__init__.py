"""Torch classifiers whose gradients the evaluation methods can explain."""

from ._mlp import TorchMLPClassifier, TorchModuleClassifier

__all__ = ["TorchMLPClassifier", "TorchModuleClassifier"]
