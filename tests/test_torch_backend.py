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
    draw = lambda seed: _torch.rand((5,), _torch.make_generator(seed), device="cpu")  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    state = np.random.RandomState(0)
    assert torch.equal(
        _torch.rand((3,), _torch.make_generator(state), device="cpu"),
        _torch.rand((3,), _torch.make_generator(np.random.RandomState(0)), device="cpu"),
    )


def _draws(device, dtype=torch.float64):
    """One of each random draw of the backend, from one seeded generator, on ``device``."""
    generator = _torch.make_generator(7)
    weights = torch.empty(4, 3, device=device, dtype=dtype)
    return {
        "rand": _torch.rand((4, 3), generator, device=device, dtype=dtype),
        "randn": _torch.randn((4, 3), generator, device=device, dtype=dtype),
        "randint": _torch.randint(10, (6,), generator, device=device),
        "randperm": _torch.randperm(9, generator, device=device),
        "uniform_": _torch.uniform_(weights.clone(), -0.5, 0.5, generator),
        "normal_": _torch.normal_(weights.clone(), generator, 1.0, 2.0),
    }


def test_a_seed_draws_the_same_numbers_on_every_device(device):
    """The generator is a CPU one whatever the device: a seed means one model everywhere."""
    assert _torch.make_generator(0).device.type == "cpu"
    here, cpu = _draws(device), _draws("cpu")
    for name in here:
        assert here[name].device.type == torch.device(device).type, name
        # Drawn on the CPU and copied: equal bit for bit, not just to tolerance.
        assert torch.equal(here[name].cpu(), cpu[name]), name
    # The draws have the distributions their names say (a wrong one fails these).
    big = _torch.make_generator(1)
    uniform = _torch.rand((20000,), big, device="cpu", dtype=torch.float64)
    normal = _torch.normal_(torch.empty(20000, dtype=torch.float64), big, 1.0, 2.0)
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean().item() - 0.5) < 0.01
    assert abs(normal.mean().item() - 1.0) < 0.05 and abs(normal.std().item() - 2.0) < 0.05
    assert sorted(cpu["randperm"].tolist()) == list(range(9))
    assert cpu["uniform_"].abs().max() <= 0.5


def test_deterministic_settings_are_restored():
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    with _torch.deterministic_settings(num_threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_num_threads() == threads and torch.get_float32_matmul_precision() == precision
    assert not torch.are_deterministic_algorithms_enabled()


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
