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

DEVICES = available_devices()

# Under pytest-xdist every worker has a core of its own: one torch thread
# each, instead of every worker's thread pool competing for every core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device torch can use here: CPU always, CUDA or MPS when present."""
    return request.param
