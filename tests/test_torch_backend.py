import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_interp import _torch
from sklearn_interp.decomposition import SNMFDecomposer


def test_auto_device_is_available():
    device = _torch.resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", 3, ""])
def test_unknown_device_names_are_value_errors(name):
    with pytest.raises(ValueError, match="Unknown device"):
        _torch.resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        _torch.resolve_device("cuda:1")


def test_device_type_never_raises():
    assert _torch.device_type("cpu") == "cpu"
    assert _torch.device_type("cuda:3") == "cuda"
    assert _torch.device_type("nonsense") == "unknown"


@pytest.mark.parametrize(
    "dtype, X, expected",
    [
        ("float32", np.zeros(2, dtype=np.float64), torch.float32),
        ("float64", np.zeros(2, dtype=np.float32), torch.float64),
        (None, np.zeros(2, dtype=np.float64), torch.float64),
        (None, np.zeros(2, dtype=np.float32), torch.float32),
        (None, torch.zeros(2, dtype=torch.float64), torch.float64),
        (None, np.zeros(2, dtype=np.int64), torch.float32),
        (None, pd.DataFrame({"a": [0.0], "b": [1.0]}), torch.float64),
        (None, pd.DataFrame({"a": [0.0], "b": np.float32([1.0])}), torch.float32),
    ],
)
def test_resolve_dtype(dtype, X, expected):
    assert _torch.resolve_dtype(dtype, X) == expected


def test_unsupported_dtype():
    with pytest.raises(ValueError, match="Unsupported dtype"):
        _torch.resolve_dtype("int8")


def test_to_tensor_accepts_numpy_pandas_lists_and_tensors(device):
    expected = np.arange(6, dtype=np.float64).reshape(3, 2)
    sources = [expected, pd.DataFrame(expected), expected.tolist(), torch.from_numpy(expected)]
    for source in sources:
        tensor = _torch.to_tensor(source, torch.device(device), torch.float32)
        assert tensor.dtype == torch.float32 and tensor.device.type == device
        np.testing.assert_array_equal(_torch.to_numpy(tensor), expected.astype(np.float32))


def test_to_tensor_copies_read_only_arrays():
    array = np.ones((2, 2))
    array.flags.writeable = False
    tensor = _torch.to_tensor(array, torch.device("cpu"), torch.float64)
    tensor += 1  # would fail or corrupt the caller's array if memory were shared
    assert array[0, 0] == 1.0


def test_generator_is_reproducible_and_seed_dependent():
    cpu = torch.device("cpu")
    draw = lambda seed: torch.rand(5, generator=_torch.make_generator(seed, cpu))  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    state = np.random.RandomState(0)
    assert torch.equal(
        torch.rand(3, generator=_torch.make_generator(state, cpu)),
        torch.rand(3, generator=_torch.make_generator(np.random.RandomState(0), cpu)),
    )


@pytest.mark.parametrize("n, size", [(0, 3), (1, 3), (7, 3), (9, 3), (5, None), (5, 100)])
def test_batch_slices_cover_every_row_once(n, size):
    covered = np.concatenate([np.arange(n)[s] for s in _torch.batch_slices(n, size)] or [[]])
    np.testing.assert_array_equal(covered, np.arange(n))


def test_tensor_in_tensor_out_numpy_otherwise(device):
    X = np.random.RandomState(0).randn(30, 6)
    snmf = SNMFDecomposer(2, sparsity=None, max_iter=20, device=device, random_state=0).fit(X)
    assert isinstance(snmf.transform(X), np.ndarray)
    codes = snmf.transform(torch.from_numpy(X))
    assert isinstance(codes, torch.Tensor) and codes.device.type == device
    np.testing.assert_allclose(_torch.to_numpy(codes), snmf.transform(X), rtol=1e-5, atol=1e-6)
    back = snmf.inverse_transform(codes)
    assert isinstance(back, torch.Tensor) and back.shape == (30, 6)


def test_fitted_attributes_are_numpy_and_caches_do_not_pickle(device):
    X = np.random.RandomState(1).randn(25, 5)
    snmf = SNMFDecomposer(2, sparsity=None, max_iter=10, device=device, random_state=0).fit(X)
    state_before = dict(vars(snmf))
    snmf.transform(X)  # fills the device cache, outside the estimator's state
    assert vars(snmf).keys() == state_before.keys()
    for name, value in vars(snmf).items():
        if name.endswith("_") and not name.startswith("_"):
            assert not isinstance(value, torch.Tensor), name
    payload = pickle.dumps(snmf)
    assert b"torch" not in payload
    restored = pickle.loads(payload)
    np.testing.assert_allclose(restored.transform(X), snmf.transform(X))
