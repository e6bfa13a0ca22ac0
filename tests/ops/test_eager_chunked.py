"""Eager calls of the chunked path: compiled once on JAX, same numbers everywhere.

On JAX an eager call of the chunked path runs a cached `jax.jit` program
(`keras_attn/ops/_compiled.py`); on TensorFlow and torch it runs as before. Every
backend checks the numbers of repeated eager calls against the NumPy reference;
the JAX-only assertions count the cached programs.
"""

import keras
import numpy as np
import pytest

from keras_attn.ops import _compiled
from keras_attn.ops import dot_product_attention
from tests.ops import _structured_reference as reference

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
ON_JAX = keras.backend.backend() == "jax"


def make_case(kinds, seed=0):
    rng = np.random.default_rng(seed)
    case = reference.Case(rng, 2, 11, 11, 4, 2, 8)
    for kind in kinds:
        reference.add_kind(case, kind, rng)
    return case


def chunked(case):
    options = dict(case.options, implementation="chunked", chunk_size=4)
    return keras.ops.convert_to_numpy(
        dot_product_attention(case.q, case.k, case.v, **options)
    )


def expected_output(case):
    return reference.reference(case)[0]


@pytest.mark.parametrize(
    "kinds", [("causal",), ("window", "segments", "bias", "sinks")]
)
def test_repeated_eager_calls_match_the_reference_and_compile_once(kinds):
    case = make_case(kinds)
    expected = expected_output(case)
    # Another test in this process may have compiled the same configuration.
    _compiled._program.cache_clear()
    misses = _compiled._program.cache_info().misses
    for _ in range(3):
        np.testing.assert_allclose(chunked(case), expected, **TOLERANCE)
    if ON_JAX:
        assert _compiled._program.cache_info().misses == misses + 1


def test_new_arrays_of_the_same_configuration_reuse_the_program():
    case = make_case(["window", "bias"])
    chunked(case)
    misses = _compiled._program.cache_info().misses
    rng = np.random.default_rng(1)
    case.q, case.k, case.v = (
        rng.normal(size=x.shape).astype("float32") for x in (case.q, case.k, case.v)
    )
    case.options["bias"] = rng.normal(size=case.options["bias"].shape).astype("float32")
    np.testing.assert_allclose(chunked(case), expected_output(case), **TOLERANCE)
    if ON_JAX:
        assert _compiled._program.cache_info().misses == misses


def test_a_mask_mod_that_closes_over_a_changing_value_sees_each_value():
    # A program cached with the first call's `limit` would keep it as a constant.
    case = make_case(["causal"])
    limit = [3]

    def mask_mod(batch, head, q_idx, kv_idx):
        return kv_idx < limit[0]

    case.options["mask_mod"] = mask_mod
    case.reference_options["mask_mod"] = mask_mod  # NumPy indices work the same
    outputs = []
    for value in (3, 6):
        limit[0] = value
        outputs.append(chunked(case))
        np.testing.assert_allclose(outputs[-1], expected_output(case), **TOLERANCE)
    assert not np.allclose(outputs[0], outputs[1])
