"""Test-wide setup: threads, JAX's compilation cache, seeds, global dtype state.

Under pytest-xdist each worker keeps to one thread: `tox` runs two workers on two
cores, and two-thread OpenMP pools per worker oversubscribe the cores (measured:
a torch training step of the digits ViT took 1.6 s with two threads next to other
busy processes, 0.12 s with one). Subprocesses started by tests inherit the setting.

On JAX, `KERAS_ATTN_JAX_CACHE_DIR` (or JAX's own `JAX_COMPILATION_CACHE_DIR`)
turns on JAX's persistent compilation cache, shared by the xdist workers of a run:
a program another worker (or an earlier run) compiled is read from disk.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import pytest  # noqa: E402

from tests._keras_private import global_state  # noqa: E402

# `pytester` runs a small test session inside a test: tests/training/
# test_global_dtype_state.py checks this file's fixture with it.
pytest_plugins = ["pytester"]

if os.environ.get("PYTEST_XDIST_WORKER") and keras.backend.backend() == "torch":
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _configure_jax_compilation_cache():
    cache_dir = os.environ.get("KERAS_ATTN_JAX_CACHE_DIR") or os.environ.get(
        "JAX_COMPILATION_CACHE_DIR"
    )
    if keras.backend.backend() != "jax" or not cache_dir:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    # The defaults cache only programs that compile for 1 s or more and entries
    # above a size tuned for network filesystems; the test programs are small
    # and compile in milliseconds to a second, so cache every one of them.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_configure_jax_compilation_cache()


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed_and_restore_dtype_policy():
    """Seed every test; afterwards restore floatx and the global dtype policy.

    The teardown runs whether the test passed, failed or raised, so a test that
    calls `keras.config.set_dtype_policy("mixed_bfloat16")` or `set_floatx` leaves
    no trace on the next one. The policy is restored as it was (usually unset,
    which means "follow floatx"), not pinned to float32.
    """
    keras.utils.set_random_seed(0)
    floatx = keras.config.floatx()
    policy = global_state.get_global_attribute("dtype_policy")
    yield
    keras.config.set_floatx(floatx)
    global_state.set_global_attribute("dtype_policy", policy)
