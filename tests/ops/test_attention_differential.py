"""A randomised differential test of `dot_product_attention` against NumPy.

Seeded: each of `CASES` (split into `GROUPS` tests) draws a shape (from `SHAPES`:
lengths that do not divide the block size, `T != S`, grouped and multi-query
heads), a block size, a random subset of the mask and score kinds with random
parameters, and a path, then compares the output with the dense NumPy reference.
A mismatch fails with the seed and the whole case, so that it can be replayed
with `draw_case(seed)`.
Gradients of every kind and pair are in `test_structured_attention.py`; this one
looks for forward-pass corner cases.
"""

import contextlib
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.ops import dot_product_attention
from tests.ops import _structured_reference as reference

# 500 cases in 4 groups that pytest-xdist runs side by side; set
# KERAS_ATTN_DIFFERENTIAL_CASES (and _SEED) for a longer search. On the 2-core
# AMD EPYC machine (2026-12-04) a group of 125 took 1.1 s on torch, 5 s on
# TensorFlow and 8-10 s on JAX once its eager kernels were compiled (the first
# group of each worker: 31 s).
CASES = int(os.environ.get("KERAS_ATTN_DIFFERENTIAL_CASES", "500"))
GROUPS = 4
SEED = int(os.environ.get("KERAS_ATTN_DIFFERENTIAL_SEED", "20261202"))
TOLERANCE = dict(atol=2e-5, rtol=2e-5)


# (batch, query_length, key_length, heads, kv_heads, head_dim) with blocks of 4:
# lengths that divide the block size and lengths that do not, T != S both ways,
# grouped, multi-query and full heads. A small menu keeps eager JAX's per-shape
# kernel cache warm: each new shape compiles every primitive again (four shapes
# and two block sizes took 106 s of eager JAX, these three and one 71 s).
SHAPES = (
    (2, 11, 11, 4, 2, 8),
    (1, 7, 12, 4, 1, 8),
    (2, 12, 5, 4, 4, 8),
)
CHUNK_SIZES = (4,)


def draw_case(seed):
    """One random combination: `(case, implementation, chunk_size, description)`."""
    rng = np.random.default_rng(seed)
    batch, query_length, key_length, heads, kv_heads, dim = SHAPES[
        int(rng.integers(len(SHAPES)))
    ]
    case = reference.Case(rng, batch, query_length, key_length, heads, kv_heads, dim)
    kinds = [kind for kind in reference.KINDS if rng.random() < 0.3]
    if "mask" in kinds and "padding" in kinds:
        kinds.remove("padding")  # both set `mask`
    for kind in kinds:
        reference.add_kind(case, kind, rng)
    implementation = [None, "math", "chunked", "chunked"][int(rng.integers(4))]
    chunk_size = int(rng.choice(CHUNK_SIZES))
    description = (
        f"seed={seed} kinds={kinds} implementation={implementation} "
        f"chunk_size={chunk_size} q={case.q.shape} k={case.k.shape} "
        f"options={ {k: v for k, v in case.options.items() if not callable(v)} }"
    )
    return case, implementation, chunk_size, description


def _eager_loops():
    """On JAX, run the chunked loops eagerly: compiling each random case's loops
    would take a second per case, evaluating them a few milliseconds."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.disable_jit()
    return contextlib.nullcontext()


@pytest.mark.parametrize("group", range(GROUPS))
def test_random_combinations_match_the_numpy_reference(group):
    seeds = range(SEED + group, SEED + CASES, GROUPS)
    mismatches = []
    print(f"differential test: base seed {SEED}, {len(seeds)} of {CASES} cases")
    with _eager_loops():
        for seed in seeds:
            case, implementation, chunk_size, description = draw_case(seed)
            expected = reference.reference(case)[0]
            output = dot_product_attention(
                case.q,
                case.k,
                case.v,
                implementation=implementation,
                chunk_size=chunk_size,
                **case.options,
            )
            output = ops.convert_to_numpy(output)
            if not np.allclose(output, expected, **TOLERANCE):
                error = np.max(np.abs(output - expected))
                mismatches.append(f"{description}: max abs error {error:.3g}")
    assert not mismatches, "\n".join(
        [f"{len(mismatches)} of {len(seeds)} cases differ (base seed {SEED}):"]
        + mismatches[:10]
    )
