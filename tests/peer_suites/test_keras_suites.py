"""Keras' own `MultiHeadAttention` tests, run against ours (see `_peers.py`).

Keras' wheel ships the file; the name it calls, `layers.MultiHeadAttention`, is
rebound to `keras_attn.layers.MultiHeadAttention`. `docs/migration.md` explains
each difference below to users.
"""

from keras_attn import layers
from tests.peer_suites._peers import Difference
from tests.peer_suites._peers import PeerSuite
from tests.peer_suites._peers import Rebind
from tests.peer_suites._peers import suite

_ATTENTION_AXES = Difference(
    ValueError,
    "attention runs over axis 1 of `(batch, length, features)` inputs, the layout "
    "of the fused kernels: no `attention_axes`, and queries, keys and values are "
    "rank 3",
)
_OUTPUT_SHAPE = Difference(
    ValueError,
    "`output_shape` is the number of output features (an int); Keras also takes a "
    "tuple of trailing dimensions",
)
_SUBLAYER_ATTRIBUTES = Difference(
    AttributeError,
    "the projections are the public attributes `query`, `key`, `value` and "
    "`attention_output` (their Keras sublayer names), not `_query_dense`, "
    "`query_dense`, ...; paths such as `mha/query` are Keras'",
)
_COMPUTE_ATTENTION = Difference(
    AttributeError,
    "no `_compute_attention` override point: the core is "
    "`keras_attn.ops.dot_product_attention`, chosen with `implementation=`",
)
_SEED = Difference(
    AssertionError,
    "the layer always owns its dropout seed (`seed_generator`), even at dropout 0, "
    "where Keras creates one only for a positive rate",
)
_USE_GATE = Difference(
    ValueError, "no `use_gate` (gated attention, Keras 3.13): not implemented"
)
_SLIDING_WINDOW_ATTRIBUTE = Difference(
    AttributeError,
    "the window is the public attribute `sliding_window` (as in `get_config`), "
    "not Keras' private `_sliding_window`",
)

DIFFERENCES = {
    "MultiHeadAttentionTest.test_attention_axes_negative_indexing": _ATTENTION_AXES,
    "MultiHeadAttentionTest.test_causal_only_masks_non_4d_inputs": _ATTENTION_AXES,
    **{
        f"MultiHeadAttentionTest.test_high_dim_attention_{case}": _ATTENTION_AXES
        for case in (
            "4d_inputs_1freebatch_mask2",
            "4d_inputs_1freebatch_mask3",
            "4d_inputs_1freebatch_mask4",
            "4d_inputs_2d_attention",
            "5d_inputs_2d_attention",
            "5d_inputs_2d_attention_fullmask",
        )
    },
    "MultiHeadAttentionTest.test_compute_output_shape_different_qv_last_dims": (
        _ATTENTION_AXES
    ),
    "MultiHeadAttentionTest.test_compute_output_shape_high_dim_same_proj": (
        _ATTENTION_AXES
    ),
    "MultiHeadAttentionTest.test_compute_output_shape_high_dim_different_proj": (
        _OUTPUT_SHAPE
    ),
    "MultiHeadAttentionTest.test_compute_output_shape_with_key_different_proj": (
        _OUTPUT_SHAPE
    ),
    "MultiHeadAttentionTest.test_compute_output_shape_without_key_different_proj": (
        _OUTPUT_SHAPE
    ),
    "MultiHeadAttentionTest.test_multi_head_attention_output_shape_as_tuple": (
        _OUTPUT_SHAPE
    ),
    "MultiHeadAttentionTest.test_multi_head_attention_output_shape_error": Difference(
        AssertionError,
        "the ValueError names the layer, the argument and the value received "
        "(`argument `output_shape` must be a positive integer or None; received "
        "8.0`), not Keras' `Invalid `output_shape``",
    ),
    "MultiHeadAttentionTest.test_basics": _SEED,
    "MultiHeadAttentionTest.test_basics_with_flash_attention": _SEED,
    "MultiHeadAttentionTest.test_dtype_policy_map": _SUBLAYER_ATTRIBUTES,
    "MultiHeadAttentionTest.test_quantize_int8": _SUBLAYER_ATTRIBUTES,
    "MultiHeadAttentionTest.test_causal_only_skipped_for_subclass": Difference(
        KeyError, _COMPUTE_ATTENTION.reason
    ),
    "MultiHeadAttentionTest."
    "test_compute_attention_combines_causal_and_explicit_mask_fused_fallback": (
        _COMPUTE_ATTENTION
    ),
    "MultiHeadAttentionTest."
    "test_compute_attention_combines_causal_and_explicit_mask_manual_path": (
        _COMPUTE_ATTENTION
    ),
    "MultiHeadAttentionTest.test_flash_attention_with_errors": Difference(
        AssertionError,
        'no `flash_attention` argument: `implementation="fused"` asks for the '
        "backend's fused kernel",
    ),
    "MultiHeadAttentionTest.test_initializer": _USE_GATE,
    "MultiHeadAttentionTest.test_lora": _USE_GATE,
    "MultiHeadAttentionTest.test_mha_constraints": _USE_GATE,
    "MultiHeadAttentionTest.test_masking_with_different_shapes": Difference(
        ValueError,
        "float masks are refused (an additive mask would be silently inverted); "
        "masks are boolean or 0/1 integers, True where a query may attend",
    ),
    "MultiHeadAttentionTest.test_sliding_window_serialization": (
        _SLIDING_WINDOW_ATTRIBUTE
    ),
}

MultiHeadAttentionTest = suite(
    PeerSuite(
        "keras",
        "src/layers/attention/multi_head_attention_test.py",
        "MultiHeadAttentionTest",
        {"layers": Rebind("MultiHeadAttention", layers.MultiHeadAttention)},
    ),
    DIFFERENCES,
)
