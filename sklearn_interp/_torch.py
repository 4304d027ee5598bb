"""The one torch backend of sklearn_interp.

Every estimator resolves its device, dtype and random state here, converts
its inputs and outputs here, and batches its work here, so that these rules
are written once:

* ``device="auto"`` means CUDA when available, else CPU; an explicit device
  that is not available is a ``ValueError``, never a torch traceback.
* A ``torch.Tensor`` in gives a tensor out, on the estimator's device (no
  host round trip on a GPU); anything else gives NumPy.
* ``random_state`` (``None``, an int or a ``RandomState``) becomes a seeded
  ``torch.Generator`` on the CPU; every random draw (initial weights, masks,
  permutations, noise) is made on it and moved to the device. So the same
  seed gives the same starting point on every device, results that agree
  across devices to floating-point tolerance, and bitwise-equal results on
  one device at a fixed thread count (see :func:`deterministic_settings`).
"""

from __future__ import annotations

import contextlib
import os
import re
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
}
_NUMPY_DTYPES = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int64: np.int64,
}
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def available_devices():
    """Names of the devices torch can use on this machine.

    Returns
    -------
    devices : list of str
        ``"cpu"`` first, then ``"cuda"`` when CUDA is present and ``"mps"``
        when Apple's Metal backend is present.

    Examples
    --------
    >>> from sklearn_interp._torch import available_devices
    >>> available_devices()[0]
    'cpu'
    """
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if _mps_available():
        devices.append("mps")
    return devices


def _mps_available():
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device="auto"):
    """Turn a ``device`` parameter into an available ``torch.device``.

    Parameters
    ----------
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If the name is not a device, or names one this machine lacks.

    Examples
    --------
    >>> from sklearn_interp._torch import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not _DEVICE_PATTERN.match(device):
        raise ValueError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine; use device='cpu' or device='auto'."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are present."
            )
    if device == "mps" and not _mps_available():
        raise ValueError(
            "device='mps' was requested but the MPS backend is not available "
            "on this machine; use device='cpu' or device='auto'."
        )
    return torch.device(device)


def device_type(device):
    """The kind of device (``"cpu"``, ``"cuda"``, ``"mps"``) a parameter names.

    Unlike :func:`resolve_device` it never raises; an unknown name gives
    ``"unknown"``. Used where no error may be raised, such as in tags.
    """
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = _DEVICE_PATTERN.match(name)
    return match.group(1).split(":")[0] if match else "unknown"


def resolve_dtype(dtype, X=None):
    """Turn a ``dtype`` parameter into a torch floating dtype.

    Parameters
    ----------
    dtype : {"float32", "float64"} or None
        ``None`` follows ``X`` (float64 stays float64, anything else becomes
        float32).
    X : array-like or torch.Tensor, default=None
        The input whose dtype ``None`` follows.

    Returns
    -------
    dtype : torch.dtype
    """
    if dtype is None:
        source = getattr(X, "dtype", None)
        if source is None and hasattr(X, "dtypes"):
            # A DataFrame: float64 when every column is.
            column_dtypes = list(X.dtypes)
            source = np.float64 if column_dtypes and all(d == np.float64 for d in column_dtypes) else None
        is_double = source in (np.float64, torch.float64) or (
            isinstance(source, np.dtype) and source == np.float64
        )
        return torch.float64 if is_double else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    try:
        return _DTYPES[str(np.dtype(dtype))]
    except (TypeError, KeyError):
        raise ValueError(
            f"Unsupported dtype {dtype!r}: use 'float32', 'float64' or None."
        ) from None


def check_device_dtype(device, dtype):
    """Raise a clear error for a dtype the device cannot hold.

    Apple's MPS backend has no float64; torch would fail deep inside a
    conversion.

    Examples
    --------
    >>> import torch
    >>> from sklearn_interp._torch import check_device_dtype
    >>> check_device_dtype(torch.device("mps"), torch.float64)
    Traceback (most recent call last):
    ...
    ValueError: The MPS device does not support float64; use dtype='float32'.
    """
    if torch.device(device).type == "mps" and dtype == torch.float64:
        raise ValueError("The MPS device does not support float64; use dtype='float32'.")


def numpy_dtype(dtype):
    """The NumPy dtype matching a torch dtype (float32, float64 or int64)."""
    return _NUMPY_DTYPES[dtype]


def is_tensor(X):
    """Whether ``X`` is a torch tensor (its outputs will be tensors too)."""
    return isinstance(X, torch.Tensor)


def to_tensor(X, device, dtype):
    """Convert NumPy, pandas, array-likes or tensors to a dense tensor.

    Parameters
    ----------
    X : array-like, pandas object or torch.Tensor
    device : torch.device
    dtype : torch.dtype

    Returns
    -------
    tensor : torch.Tensor on ``device`` with ``dtype``. Shares memory with
        ``X`` when no copy is needed.
    """
    if isinstance(X, torch.Tensor):
        return X.detach().to(device=device, dtype=dtype)
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    array = np.asarray(X, dtype=numpy_dtype(dtype))
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device)


def to_numpy(tensor):
    """Detach a tensor and return it as a NumPy array on the host."""
    return tensor.detach().cpu().numpy()


def as_numpy(values):
    """A tensor (from any device) or any array-like as a NumPy array."""
    return to_numpy(values) if is_tensor(values) else np.asarray(values)


def to_output(tensor, as_tensor):
    """Return ``tensor`` itself (a tensor input) or as NumPy (anything else)."""
    return tensor if as_tensor else to_numpy(tensor)


def draw_seeds(random_state, size=None):
    """Integer seeds drawn from ``random_state``, as scikit-learn's estimators draw them.

    Parameters
    ----------
    random_state : None, int or RandomState
        ``None`` draws from NumPy's global state; an int or a ``RandomState``
        gives reproducible seeds.
    size : int, tuple of int or None, default=None
        ``None`` gives one ``int``; otherwise an int array of that shape.

    Examples
    --------
    >>> from sklearn_interp._torch import draw_seeds
    >>> draw_seeds(0) == draw_seeds(0), draw_seeds(0, size=3).shape
    (True, (3,))
    """
    seeds = check_random_state(random_state).randint(np.iinfo(np.int32).max, size=size)
    return int(seeds) if size is None else seeds


def make_generator(random_state):
    """A CPU ``torch.Generator`` seeded from ``random_state``.

    ``None`` draws a fresh seed from NumPy's global state, as scikit-learn
    does; an int or a ``RandomState`` gives a reproducible generator.

    The generator always lives on the CPU, whatever the estimator's device:
    a CUDA generator seeded alike draws other numbers, so a seed would mean
    another model on a GPU. Draw through :func:`rand`, :func:`randn`,
    :func:`randint`, :func:`randperm`, :func:`uniform_` and :func:`normal_`,
    which draw here and move the result to the device.

    Examples
    --------
    >>> from sklearn_interp import _torch
    >>> a = _torch.rand((3,), _torch.make_generator(0), device="cpu")
    >>> b = _torch.rand((3,), _torch.make_generator(0), device="cpu")
    >>> bool(torch.equal(a, b))
    True
    """
    seed = draw_seeds(random_state)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator


def step_generator(seed, step):
    """A CPU ``torch.Generator`` for one training step, seeded by ``(seed, step)``.

    Nets that draw noise inside skorch's loop keep two integers instead of a
    generator, so they pickle, and each step's draws are reproducible.

    Examples
    --------
    >>> from sklearn_interp import _torch
    >>> a = _torch.rand((2,), _torch.step_generator(3, 0), device="cpu")
    >>> b = _torch.rand((2,), _torch.step_generator(3, 1), device="cpu")
    >>> bool(torch.equal(a, b))
    False
    """
    return make_generator(np.random.RandomState([seed, step]))


# Random draws: on the CPU generator, then moved, so that a seed gives the
# same numbers on every device (the seeding promise of the module docstring).


def rand(shape, generator, *, device, dtype=torch.float32):
    """U[0, 1) values of ``shape`` drawn from a CPU ``generator``, on ``device``."""
    return torch.rand(shape, generator=generator, dtype=dtype).to(device)


def randn(shape, generator, *, device, dtype=torch.float32):
    """Standard normal values of ``shape`` drawn from a CPU ``generator``, on ``device``."""
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def randint(high, shape, generator, *, device):
    """Integers in ``[0, high)`` of ``shape`` drawn from a CPU ``generator``, on ``device``."""
    return torch.randint(high, shape, generator=generator).to(device)


def randperm(n, generator, *, device):
    """A random permutation of ``range(n)`` drawn from a CPU ``generator``, on ``device``."""
    return torch.randperm(n, generator=generator).to(device)


def uniform_(tensor, low, high, generator):
    """Fill ``tensor`` in place with U[low, high) values drawn from a CPU ``generator``."""
    with torch.no_grad():
        draw = torch.empty(tensor.shape, dtype=tensor.dtype).uniform_(low, high, generator=generator)
        return tensor.copy_(draw)


def normal_(tensor, generator, mean=0.0, std=1.0):
    """Fill ``tensor`` in place with N(mean, std²) values drawn from a CPU ``generator``."""
    with torch.no_grad():
        draw = torch.empty(tensor.shape, dtype=tensor.dtype).normal_(mean, std, generator=generator)
        return tensor.copy_(draw)


@contextlib.contextmanager
def deterministic_settings(num_threads=None):
    """Settings under which torch results are reproducible, restored on exit.

    * float32 matrix products and convolutions in full float32 (TF32 off):
      TF32 keeps 10 mantissa bits, so CUDA results would differ from the
      CPU's by about 1e-3 instead of float32's 1e-6;
    * deterministic algorithms (cuDNN, scatter-adds), so two runs on one GPU
      agree bitwise; ``CUBLAS_WORKSPACE_CONFIG`` is set for cuBLAS when unset;
    * ``num_threads`` torch threads when given: a CPU sum split over another
      number of threads adds in another order, so bitwise equality holds
      only at a fixed thread count.

    What is promised: under these settings the same ``random_state`` gives
    bitwise-equal results on one device at one thread count, and results
    equal to floating-point tolerance (about 1e-5 relative in float32)
    across devices, thread counts and batch compositions.

    Examples
    --------
    >>> import torch
    >>> from sklearn_interp._torch import deterministic_settings
    >>> with deterministic_settings(num_threads=1):
    ...     torch.get_num_threads()
    1
    """
    saved = {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved["matmul_tf32"]
        torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]
        torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]
        torch.set_float32_matmul_precision(saved["precision"])
        torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
        torch.set_num_threads(saved["threads"])


def batch_slices(n_samples, batch_size):
    """Slices covering ``range(n_samples)`` in chunks of ``batch_size``.

    ``batch_size=None`` gives one slice over everything.

    Examples
    --------
    >>> from sklearn_interp._torch import batch_slices
    >>> batch_slices(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if batch_size is None or batch_size >= n_samples:
        return [slice(0, n_samples)]
    if not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return [
        slice(start, min(start + batch_size, n_samples))
        for start in range(0, n_samples, batch_size)
    ]


def progress(iterable, *, verbose, desc, total=None):
    """Wrap ``iterable`` in a tqdm progress bar when ``verbose >= 1``."""
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)

