"""keras_attn models on each backend's distribution engine give single-device numbers.

Each scenario runs in a subprocess (device counts and process groups must not leak
into this one) and is compared with a single-device run of the same steps from the
same weights. A scenario needs its own backend, so it runs once, under the tox
environment of that backend, rather than three times.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Float32 sums split over devices add up in another order: the measured losses
# differ by at most 2e-7 relative (JAX, TensorFlow and torch alike).
RTOL = 1e-5


def run_scenario(script, backend, **env):
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **env,
    }
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [
        line for line in completed.stdout.splitlines() if line.startswith("RESULT ")
    ]
    assert completed.returncode == 0 and lines, completed.stdout + completed.stderr
    return json.loads(lines[-1][len("RESULT ") :])


def only_on(backend):
    return pytest.mark.skipif(
        keras.backend.backend() != backend,
        reason=f"runs the {backend} engine in a subprocess; covered in the "
        f"{backend} tox environment",
    )


def free_port():
    with socket.socket() as connection:
        connection.bind(("127.0.0.1", 0))
        return connection.getsockname()[1]


@pytest.fixture(scope="session")
def jax_result(tmp_path_factory):
    """The JAX scenario's result, computed once even under pytest-xdist."""

    def run():
        return run_scenario(
            "_jax_model_parallel.py",
            "jax",
        )

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return run()
    # Workers share the parent of their base temporary directory (the
    # pytest-xdist recipe for session data); the first one runs the scenario.
    from filelock import FileLock  # a dependency of torch and of tox

    path = tmp_path_factory.getbasetemp().parent / "jax_model_parallel.json"
    with FileLock(f"{path}.lock"):
        if not path.is_file():
            path.write_text(json.dumps(run()))
        return json.loads(path.read_text())


@only_on("jax")
@pytest.mark.parametrize("model", ["vision_transformer", "transformer", "causal_lm"])
def test_model_parallel_fit_gives_single_device_losses(jax_result, model):
    assert jax_result["devices"] == 8
    losses = jax_result[model]
    np.testing.assert_allclose(losses["model_parallel"], losses["single"], rtol=RTOL)


@only_on("jax")
def test_data_parallel_fit_gives_single_device_losses(jax_result):
    losses = jax_result["vision_transformer"]
    np.testing.assert_allclose(losses["data_parallel"], losses["single"], rtol=RTOL)


@only_on("jax")
@pytest.mark.parametrize(
    "model, sharded",
    [("vision_transformer", 15), ("transformer", 17), ("causal_lm", 15)],
)
def test_variables_are_sharded_as_the_layout_map_says(jax_result, model, sharded):
    # ViT: 2 blocks x (q, k, v, out, ff in, ff out) + positions, class token,
    # patch projection. Transformer: 1 encoder block x 6 + 1 decoder block x 10
    # + the shared token embedding. CausalLM: 2 blocks x 6 + the token, output
    # and position embeddings.
    losses = jax_result[model]
    assert losses["sharding_mismatches"] == []
    assert losses["sharded_variables"] == sharded


@only_on("jax")
def test_kv_caches_are_sharded_over_heads_and_batch(jax_result):
    expected = ["batch", "None", "None", "model", "None"]
    assert jax_result["cache"] == {
        "self_attention": expected,
        "cross_attention": expected,
    }


@only_on("jax")
def test_causal_lm_caches_are_sharded_and_give_single_device_logits(jax_result):
    assert jax_result["causal_lm_cache"] == ["batch", "None", "None", "model", "None"]
    assert jax_result["causal_lm_cached_difference"] < 1e-5


@only_on("jax")
def test_sharded_generation_gives_single_device_tokens(jax_result):
    assert jax_result["generate_equal"]


@only_on("jax")
def test_model_parallel_names_the_variable_that_does_not_divide(jax_result):
    message = jax_result["checked_error"]
    assert "'encoder_layer_0/self_attention/query/kernel'" in message
    assert "mesh axis 'model' (size 4)" in message


@only_on("tensorflow")
def test_mirrored_strategy_fit_gives_single_device_losses():
    result = run_scenario("_tf_mirrored.py", "tensorflow")
    assert result["replicas"] == 2
    np.testing.assert_allclose(result["mirrored"], result["single"], rtol=RTOL)


@only_on("torch")
def test_ddp_steps_give_single_process_losses_and_equal_weights():
    result = run_scenario("_torch_ddp.py", "torch", MASTER_PORT=str(free_port()))
    np.testing.assert_allclose(result["ddp"], result["single"], rtol=RTOL)
    assert result["ddp_rank1"] == result["ddp"]
    assert result["rank_weight_difference"] == 0.0
    # Adam divides by the gradients' scale, so reordered sums move weights more
    # than losses; still far below one step (learning rate 1e-2).
    assert result["single_weight_difference"] < 1e-3
