"""What the README promises of every public estimator, checked by walking them all."""

import importlib
import inspect
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor

import sklearn_interp
from sklearn_interp.evaluation import ConsistencyScorer
from test_common import ARRAY_ESTIMATORS

SUBPACKAGES = [
    "activations", "calibration", "decomposition", "evaluation", "forecasting", "io", "manifold",
    "neural_network", "prototypes", "ranking",
]
THE_EIGHT = [
    "SNMFDecomposer", "MatchingPursuitSAE", "LocalIDEstimator", "ChannelClusterForecaster",
    "SDMCalibrator", "SESARanker", "ConsistencyScorer", "DiffROAR",
]


def _public_estimators():
    for package in SUBPACKAGES:
        module = importlib.import_module(f"sklearn_interp.{package}")
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, BaseEstimator):
                yield value


PUBLIC_ESTIMATORS = sorted(set(_public_estimators()), key=lambda cls: cls.__name__)

# The exceptions the README names, with why: estimators that draw no random
# numbers take no random_state; those whose work is one pass over the data or a
# few forward passes of a model someone else trained take no verbose; ConsistencyScorer computes in the
# dtype of the model it scores.
NO_RANDOM_STATE = {
    "DiffMeanDirections", "TransformerActivations", "SentenceEmbeddings", "TorchModuleClassifier",
    "TorchPrototypeAdapter", "PretrainedSAE",
}
NO_VERBOSE = {
    "AttributionMasker", "ConsistencyScorer", "DiffMeanDirections", "TorchModuleClassifier", "TorchPrototypeAdapter",
    "PretrainedSAE",
}
NO_DTYPE = {"ConsistencyScorer"}


def test_the_eight_methods_import_from_the_top_level():
    for name in THE_EIGHT:
        assert name in sklearn_interp.__all__
        assert issubclass(getattr(sklearn_interp, name), BaseEstimator)


@pytest.mark.parametrize("name", THE_EIGHT)
def test_each_of_the_eight_has_fit_transform_and_score(name):
    cls = getattr(sklearn_interp, name)
    for method in ("fit", "transform", "fit_transform", "score", "get_feature_names_out"):
        assert callable(getattr(cls, method, None)), (name, method)


@pytest.mark.parametrize("cls", PUBLIC_ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_estimator_takes_the_common_parameters(cls):
    parameters = inspect.signature(cls.__init__).parameters
    assert "device" in parameters and parameters["device"].default == "auto"
    for name, exceptions in (("random_state", NO_RANDOM_STATE), ("verbose", NO_VERBOSE), ("dtype", NO_DTYPE)):
        assert (name in parameters) == (cls.__name__ not in exceptions), (cls.__name__, name)


_TENSOR_METHODS = ("transform", "decision_function", "predict_proba", "score_samples")


@pytest.mark.parametrize("estimator", ARRAY_ESTIMATORS, ids=[f"{type(e).__name__}-{i}" for i, e in enumerate(ARRAY_ESTIMATORS)])
def test_a_tensor_in_gives_a_tensor_out_on_the_device(estimator, device):
    """README: transform, decision_function, predict_proba, score_samples and a
    regressor's predict give a tensor on the estimator's device for a tensor;
    a classifier's predict gives its labels (any type) as NumPy."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = X @ [1.0, -0.5, 0.2, 0.0] if is_regressor(estimator) else (X[:, 0] > 0).astype(int)
    estimator = clone(estimator).set_params(device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        estimator.fit(X, y)
    tensor = torch.as_tensor(X, device=device)
    methods = [m for m in _TENSOR_METHODS if hasattr(estimator, m)]
    if isinstance(estimator, ConsistencyScorer):
        methods.remove("transform")  # needs part keypoints: test_consistency.py gives them and checks the tensor
    if is_regressor(estimator):
        methods.append("predict")
    for method in methods:
        out = getattr(estimator, method)(tensor)
        assert isinstance(out, torch.Tensor) and out.device.type == torch.device(device).type, method
        assert isinstance(getattr(estimator, method)(X), np.ndarray), method
    if is_classifier(estimator):
        assert isinstance(estimator.predict(tensor), np.ndarray)


def test_the_estimators_trained_by_gradient_descent_take_callbacks():
    """README: the seven estimators trained with skorch take ``callbacks`` (test_lid_tracker runs them)."""
    taking = {cls.__name__ for cls in PUBLIC_ESTIMATORS if "callbacks" in inspect.signature(cls.__init__).parameters}
    assert taking == {
        "MatchingPursuitSAE", "TopKSAE", "TorchMLPClassifier", "SDMCalibrator", "PartPrototypeClassifier",
        "ChannelClusterForecaster", "SESARanker",
    }


# Every subpackage, including those that hold no estimator.
ALL_SUBPACKAGES = SUBPACKAGES + ["datasets", "intervention", "model_selection", "plotting"]


def _public_callables():
    for package in ALL_SUBPACKAGES:
        module = importlib.import_module(f"sklearn_interp.{package}")
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                for attribute, member in vars(value).items():
                    member = getattr(member, "__func__", member)
                    public = attribute == "__init__" or not attribute.startswith("_")
                    if inspect.isfunction(member) and public and member.__module__.startswith("sklearn_interp"):
                        yield f"{package}.{name}.{attribute}", member
            elif inspect.isfunction(value):  # not the make_scorer objects
                yield f"{package}.{name}", value


def _names_for_annotations():
    # What the modules import only for type checkers (under TYPE_CHECKING).
    import scipy.sparse
    import skorch
    import transformers
    from matplotlib.axes import Axes
    from sklearn.model_selection import BaseCrossValidator

    from sklearn_interp.activations import TransformerActivations

    return {"scipy": scipy, "skorch": skorch, "transformers": transformers, "Axes": Axes,
            "BaseCrossValidator": BaseCrossValidator, "TransformerActivations": TransformerActivations}


def test_the_public_api_is_annotated_and_the_annotations_resolve():
    """py.typed promises annotations: every parameter and return of every public callable."""
    import typing

    extra = _names_for_annotations()
    missing, unresolved = [], []
    for qualname, function in _public_callables():
        function = inspect.unwrap(function)
        signature = inspect.signature(function)
        for parameter in signature.parameters.values():
            if parameter.name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty:
                missing.append(f"{qualname}({parameter.name})")
        if signature.return_annotation is inspect.Signature.empty:
            missing.append(f"{qualname} -> ?")
        try:
            typing.get_type_hints(function, globalns={**function.__globals__, **extra})
        except Exception as error:  # any failure to evaluate an annotation is the finding
            unresolved.append(f"{qualname}: {error!r}")
    assert not missing, f"{len(missing)} unannotated: {missing}"
    assert not unresolved, unresolved
