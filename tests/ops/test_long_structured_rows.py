"""Windows and documents over several rows of 1,024 queries, against NumPy.

The short rows of `test_structured_attention.py` fit in one row of PyTorch's
fused path (`ops/_fused.py`), which takes a window or documents one row of 1,024
queries at a time, each with the key range its row of the block map visits. These
cases span three rows, the last one short, with key ranges that start and end
inside a row, `T != S`, multi-query heads and rows whose queries attend nothing.
Every backend runs them on its automatic choice and on the chunked path; PyTorch
also on the fused path, which its automatic choice takes for these masks.
"""

import keras
import numpy as np
import pytest

from keras_attn.ops import _fused
from keras_attn.ops import dot_product_attention
from tests.gradients import output_and_vjp
from tests.ops import _structured_reference as reference

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
LENGTH = 2 * _fused.ROW_QUERIES + 452  # three rows, the last one short


def _segments(batch, length, boundaries):
    ids = np.searchsorted(np.asarray(boundaries), np.arange(length), side="right")
    return np.broadcast_to(ids, (batch, length)).astype("int32")


def make_case(name):
    rng = np.random.default_rng(7)
    key_length = 1900 if name == "query and key segments" else LENGTH
    case = reference.Case(rng, 2, LENGTH, key_length, 2, 1, 8)
    options = case.options
    if name == "causal documents":
        options["is_causal"] = True
        options["segment_ids"] = _segments(2, LENGTH, [300, 1500, 1700, 2400])
    elif name == "window":
        options["sliding_window"] = 700
    elif name == "causal window and padding":
        options["is_causal"] = True
        options["sliding_window"] = 333
        lengths = np.array([LENGTH, 1800])
        options["mask"] = (np.arange(LENGTH) < lengths[:, None])[:, None, None]
    elif name == "query and key segments":
        # Queries of the second row have ids that no key has: rows of zeros.
        query_ids = _segments(2, LENGTH, [900, 2048])
        query_ids = np.where(query_ids == 1, 7, query_ids).astype("int32")
        options["segment_ids"] = (query_ids, _segments(2, key_length, [500, 1200]))
    return case


CASES = [
    "causal documents",
    "window",
    "causal window and padding",
    "query and key segments",
]
IMPLEMENTATIONS = [None, "chunked"] + (
    ["fused"] if keras.backend.backend() == "torch" else []
)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", CASES)
def test_rows_match_the_numpy_reference(name, implementation):
    case = make_case(name)
    expected, *expected_grads = reference.reference(case)

    def call(q, k, v):
        return dot_product_attention(
            q, k, v, implementation=implementation, **case.options
        )

    output, grads = output_and_vjp(call, [case.q, case.k, case.v], case.d_output)
    np.testing.assert_allclose(output, expected, **TOLERANCE)
    for axis_name, grad, wanted in zip("qkv", grads, expected_grads):
        assert np.all(np.isfinite(grad)), f"d{axis_name} is not finite"
        np.testing.assert_allclose(grad, wanted, err_msg=f"d{axis_name}", **TOLERANCE)


def test_row_key_ranges_cover_exactly_the_visited_keys():
    case = make_case("causal documents")
    pattern = _pattern(case)
    # Row 0 sees keys up to its end; row 1 starts at its first document (300)
    # rounded down to a block of 128; row 2 at 1,700 rounded down.
    assert _fused.row_key_ranges(pattern, LENGTH, LENGTH) == [
        (0, 1024, 0, 1024),
        (1024, 2048, 256, 2048),
        (2048, LENGTH, 1664, LENGTH),
    ]


def _pattern(case):
    from keras_attn.ops._pattern import AttentionPattern

    batch, length = case.q.shape[:2]
    ids = keras.ops.convert_to_tensor(case.options["segment_ids"])
    return AttentionPattern(
        length, case.k.shape[1], batch, 2, is_causal=True, segment_ids=(ids, ids)
    )
