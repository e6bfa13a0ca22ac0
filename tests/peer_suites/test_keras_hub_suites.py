"""keras-hub's own layer tests, run against our layers (see `_peers.py`).

keras-hub's wheel ships no test files: set `KERAS_HUB_SOURCE` to a keras-hub
checkout to run these (its harness, `keras_hub/src/tests/test_case.py`, also needs
the `grain` package). `docs/migration.md` explains each difference below to users.
"""

from keras_attn import layers
from tests.peer_suites._peers import Difference
from tests.peer_suites._peers import PeerSuite
from tests.peer_suites._peers import suite

_SEEDS = Difference(
    AssertionError,
    "one `residual_dropout` layer serves every sub-block of a block, so a block has "
    "one dropout seed per attention layer plus one, where keras-hub has one per "
    "Dropout layer (encoder 2 against 3, decoder 2 against 3 and 3 against 5); the "
    "rest of `run_layer_test` passes with our count",
)
_SUBLAYER_ATTRIBUTES = Difference(
    AttributeError,
    "sublayers are public attributes named as their layers "
    "(`encoder.self_attention_layer_norm`), not keras-hub's private "
    "`_self_attention_layer_norm`",
)
_TABLE_ATTRIBUTE = Difference(
    AttributeError,
    "the table is the attribute `embeddings` (as in `keras.layers.Embedding`), not "
    "keras-hub's `position_embeddings`; the weight is named `embeddings` in both",
)
_ROTARY_AXES = Difference(
    ValueError,
    "`RotaryEmbedding` has one layout, `(batch, length, [heads,] dim)`: no "
    "`sequence_axis` or `feature_axis` arguments; transpose other layouts first",
)

DIFFERENCES = {
    "TransformerEncoderTest.test_layer_behaviors_with_norm_first": _SEEDS,
    "TransformerEncoderTest.test_layer_behaviors_without_norm_first": _SEEDS,
    "TransformerEncoderTest.test_training_propagation": _SUBLAYER_ATTRIBUTES,
    "TransformerDecoderTest.test_layer_behaviors_with_norm_first": _SEEDS,
    "TransformerDecoderTest.test_layer_behaviors_without_norm_first": _SEEDS,
    "TransformerDecoderTest."
    "test_layer_behaviors_with_cross_attention_with_norm_first": _SEEDS,
    "TransformerDecoderTest."
    "test_layer_behaviors_with_cross_attention_without_norm_first": _SEEDS,
    "TransformerDecoderTest.test_training_propagation": _SUBLAYER_ATTRIBUTES,
    "TransformerDecoderTest."
    "test_cache_call_is_correct_with_cross_attention": Difference(
        TypeError,
        "no `cross_attention_cache_update_index`: the cross-attention cache is the "
        "encoder's keys and values, projected once (`precompute_cross_attention_cache`"
        ", or by the first cached call from `encoder_sequence`), never filled in "
        "from an empty cache",
    ),
    "PositionEmbeddingTest.test_positions": _TABLE_ATTRIBUTE,
    "PositionEmbeddingTest.test_explicit_positions_take_precedence": _TABLE_ATTRIBUTE,
    "PositionEmbeddingTest.test_no_serving_context_matches_slice_path": (
        _TABLE_ATTRIBUTE
    ),
    "RotaryEmbeddingTest.test_layer_behaviors": _ROTARY_AXES,
    "RotaryEmbeddingTest.test_permuted_axes": _ROTARY_AXES,
}


def _keras_hub_suite(file, test_case, name, ours):
    peer = PeerSuite(
        "keras_hub", f"src/layers/modeling/{file}", test_case, {name: ours}
    )
    return suite(peer, DIFFERENCES)


TransformerEncoderTest = _keras_hub_suite(
    "transformer_encoder_test.py",
    "TransformerEncoderTest",
    "TransformerEncoder",
    layers.TransformerEncoder,
)
TransformerDecoderTest = _keras_hub_suite(
    "transformer_decoder_test.py",
    "TransformerDecoderTest",
    "TransformerDecoder",
    layers.TransformerDecoder,
)
PositionEmbeddingTest = _keras_hub_suite(
    "position_embedding_test.py",
    "PositionEmbeddingTest",
    "PositionEmbedding",
    layers.PositionEmbedding,
)
SinePositionEncodingTest = _keras_hub_suite(
    "sine_position_encoding_test.py",
    "SinePositionEncodingTest",
    "SinePositionEncoding",
    layers.SinusoidalPositionEmbedding,
)
RotaryEmbeddingTest = _keras_hub_suite(
    "rotary_embedding_test.py",
    "RotaryEmbeddingTest",
    "RotaryEmbedding",
    layers.RotaryEmbedding,
)
