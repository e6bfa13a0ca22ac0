"""Test-wide setup: report the backend, seed every test, restore the dtype policy.

Under pytest-xdist each worker keeps to one thread: `tox` runs two workers on two
cores, and two-thread OpenMP pools per worker oversubscribe the cores (measured:
a torch training step of the digits ViT took 1.6 s with two threads next to other
busy processes, 0.12 s with one). Subprocesses started by tests inherit the setting.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import pytest  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER") and keras.backend.backend() == "torch":
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed_and_restore_dtype_policy():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
