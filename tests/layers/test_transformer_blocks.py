"""What `TransformerEncoder` and `TransformerDecoder` share, tested once for both.

Keras' layer harness on a block with self-attention only, their argument
validation, their refusal of float masks, the absence of Keras' "destroy the mask"
warnings with masked inputs, and, with `MultiHeadAttention`,
that every symbolic call (`keras.Input`) returns the structure, shapes and dtypes
that the eager call returns, with and without caches, scores and masks.
"""

import warnings

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import TransformerDecoder
from keras_attn.layers import TransformerEncoder
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask
from tests._keras_private import named_product

HIDDEN, HEADS, FFN = 8, 2, 16
B, T, S = 2, 4, 3
HEAD_DIM = HIDDEN // HEADS
BLOCKS = {"encoder": TransformerEncoder, "decoder": TransformerDecoder}
# How each block calls its sequence in error messages.
SEQUENCE = {"encoder": "inputs", "decoder": "decoder_sequence"}
PADDING = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)  # (B, T)


def random_sequence(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


class BlockLayerContractTest(TestCase):
    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_layer_behaviour_with_self_attention_only(self, block):
        # Keras' own harness: serialization, symbolic/eager calls, training, dtypes.
        self.run_layer_test(
            BLOCKS[block],
            init_kwargs={"intermediate_dim": FFN, "num_heads": HEADS, "dropout": 0.1},
            input_shape=(B, T, HIDDEN),
            expected_output_shape=(B, T, HIDDEN),
            expected_num_trainable_weights=16,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=2,
            supports_masking=True,
        )


class BlockValidationTest(TestCase):
    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_hidden_size_not_divisible_by_num_heads_raises(self, block):
        layer = BLOCKS[block](FFN, num_heads=4)
        with self.assertRaisesRegex(
            ValueError,
            rf"{BLOCKS[block].__name__}.*`num_heads`.*10.*`{SEQUENCE[block]}`.*"
            "received 4",
        ):
            layer.build((2, T, 10))

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_num_heads_not_divisible_by_num_key_value_heads_raises(self, block):
        with self.assertRaisesRegex(
            ValueError,
            rf"{BLOCKS[block].__name__}.*`num_heads`.*num_key_value_heads \(3\).*"
            "received 4",
        ):
            BLOCKS[block](FFN, num_heads=4, num_key_value_heads=3)

    @parameterized.named_parameters(
        named_product(
            [
                {"testcase_name": "negative", "rate": -0.1, "shown": r"-0\.1"},
                {"testcase_name": "one", "rate": 1.0, "shown": r"1\.0"},
                {"testcase_name": "above_one", "rate": 1.5, "shown": r"1\.5"},
            ],
            block=sorted(BLOCKS),
        )
    )
    def test_dropout_outside_unit_interval_raises(self, rate, shown, block):
        with self.assertRaisesRegex(
            ValueError, rf"{BLOCKS[block].__name__}.*`dropout`.*received {shown}"
        ):
            BLOCKS[block](FFN, HEADS, dropout=rate)

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_zero_intermediate_dim_raises(self, block):
        with self.assertRaisesRegex(
            ValueError, rf"{BLOCKS[block].__name__}.*`intermediate_dim`.*received 0"
        ):
            BLOCKS[block](0, HEADS)

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_rank_2_sequence_raises(self, block):
        with self.assertRaisesRegex(
            ValueError,
            rf"{BLOCKS[block].__name__}.*`{SEQUENCE[block]}`.*rank 3.*\(2, 8\)",
        ):
            BLOCKS[block](FFN, HEADS)(np.zeros((2, HIDDEN), "float32"))

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_dropout_changes_outputs_only_in_training(self, block):
        layer = BLOCKS[block](FFN, HEADS, dropout=0.5)
        x = random_sequence((B, T, HIDDEN))
        inference = ops.convert_to_numpy(layer(x, training=False))
        self.assertAllClose(layer(x, training=False), inference)
        self.assertNotAllClose(layer(x, training=True), inference)


class FloatMaskTest(TestCase):
    """An additive float mask would be inverted by a cast: it is refused."""

    ADDITIVE = np.where(PADDING, 0.0, -1e9).astype("float32")  # (B, T)

    @parameterized.named_parameters(
        ("encoder_padding_mask", "encoder", "padding_mask", ADDITIVE),
        (
            "encoder_attention_mask",
            "encoder",
            "attention_mask",
            np.zeros((B, T, T), "float32"),
        ),
        ("decoder_padding_mask", "decoder", "decoder_padding_mask", ADDITIVE),
        (
            "decoder_attention_mask",
            "decoder",
            "decoder_attention_mask",
            np.zeros((B, T, T), "float32"),
        ),
    )
    def test_float_mask_raises(self, block, argument, mask):
        layer = BLOCKS[block](FFN, HEADS)
        with self.assertRaisesRegex(
            ValueError,
            rf"{BLOCKS[block].__name__}.*`{argument}`.*boolean.*float32.*"
            r"additive_mask == 0",
        ):
            layer(random_sequence((B, T, HIDDEN)), **{argument: mask})

    def test_float_encoder_padding_mask_raises(self):
        decoder = TransformerDecoder(FFN, HEADS)
        with self.assertRaisesRegex(
            ValueError, r"TransformerDecoder.*`encoder_padding_mask`.*float32"
        ):
            decoder(
                random_sequence((B, T, HIDDEN)),
                random_sequence((B, S, HIDDEN), seed=1),
                encoder_padding_mask=np.zeros((B, S), "float32"),
            )

    def test_integer_padding_mask_equals_boolean(self):
        encoder = TransformerEncoder(FFN, HEADS)
        x = random_sequence((B, T, HIDDEN))
        self.assertAllClose(
            encoder(x, padding_mask=PADDING.astype("int32")),
            encoder(x, padding_mask=PADDING),
            rtol=0,
            atol=0,
        )


def masked_embeddings():
    """`(B, T, HIDDEN)` from `Embedding(mask_zero=True)`, the last token padding."""
    tokens = np.array([[4, 2, 7, 0], [3, 9, 1, 5]])
    return keras.layers.Embedding(10, HIDDEN, mask_zero=True)(tokens)


MASKED_CALLS = {
    "attention": (
        lambda: MultiHeadAttention(HEADS, HEAD_DIM),
        lambda layer, x: layer(x, x),
    ),
    "cross_attention": (  # separate key and value: three projections everywhere
        lambda: MultiHeadAttention(HEADS, HEAD_DIM),
        lambda layer, x: layer(x, masked_embeddings(), masked_embeddings()),
    ),
    "encoder_post_ln": (
        lambda: TransformerEncoder(FFN, HEADS),
        lambda layer, x: layer(x),
    ),
    "encoder_pre_ln": (
        lambda: TransformerEncoder(FFN, HEADS, normalize_first=True),
        lambda layer, x: layer(x),
    ),
    "decoder_only": (
        lambda: TransformerDecoder(FFN, HEADS),
        lambda layer, x: layer(x),
    ),
    "decoder_with_encoder": (
        lambda: TransformerDecoder(FFN, HEADS, normalize_first=True),
        lambda layer, x: layer(x, masked_embeddings()),
    ),
}


class MaskWarningTest(TestCase):
    """Keras warns when a layer that does not support masks gets a masked input."""

    @parameterized.named_parameters(named_product(case=sorted(MASKED_CALLS)))
    def test_masked_inputs_give_no_destroyed_mask_warning(self, case):
        make, call = MASKED_CALLS[case]
        layer = make()
        x = masked_embeddings()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outputs = call(layer, x)
        messages = [str(w.message) for w in caught]
        self.assertEqual([m for m in messages if "destroy the mask" in m], [])
        # The mask still reaches the output: the one of the queries.
        output = keras.tree.flatten(outputs)[0]
        self.assertAllEqual(get_keras_mask(output), get_keras_mask(x))


def cache(length):
    return np.zeros((B, 2, length, HEADS, HEAD_DIM), "float32")


def attention(build_shapes=((B, T, HIDDEN), (B, S, HIDDEN))):
    layer = MultiHeadAttention(HEADS, HEAD_DIM, output_shape=6)
    layer.build(*build_shapes)
    return layer


def windowed_attention():
    layer = MultiHeadAttention(HEADS, HEAD_DIM, sliding_window=2)
    layer.build((B, T, HIDDEN), (B, T, HIDDEN))
    return layer


def decoder(with_encoder, **kwargs):
    layer = TransformerDecoder(FFN, HEADS, **kwargs)
    layer.build((B, T, HIDDEN), (B, S, HIDDEN) if with_encoder else None)
    return layer


def encoder(**kwargs):
    layer = TransformerEncoder(FFN, HEADS, **kwargs)
    layer.build((B, T, HIDDEN))
    return layer


QUERY = random_sequence((B, T, HIDDEN))
TOKEN = random_sequence((B, 1, HIDDEN))
MEMORY = random_sequence((B, S, HIDDEN), seed=1)
CROSS_CACHE = random_sequence((B, 2, S, HEADS, HEAD_DIM), seed=2)
CAUSAL = np.tril(np.ones((T, T), bool))[None].repeat(B, 0)  # (B, T, T)
SEGMENTS = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], "int32")  # (B, T)

# name: (layer factory, tensor arguments, other arguments)
CALLS = {
    "attention": (attention, {"query": QUERY, "value": MEMORY}, {}),
    "attention_scores_and_mask": (
        attention,
        {"query": QUERY, "value": MEMORY, "attention_mask": np.ones((B, T, S), bool)},
        {"return_attention_scores": True},
    ),
    "attention_cache": (
        attention,
        {"query": TOKEN, "value": TOKEN, "cache": cache(T)},
        {"cache_update_index": 1, "use_causal_mask": True},
    ),
    "attention_cache_scores": (
        attention,
        {"query": TOKEN, "value": TOKEN, "cache": cache(T)},
        {"cache_update_index": 1, "return_attention_scores": True},
    ),
    "attention_precomputed_cache_scores": (
        attention,
        {"query": QUERY, "cache": CROSS_CACHE},
        {"return_attention_scores": True},
    ),
    "attention_ring_cache_scores": (  # the ring's 2 slots and the new keys
        windowed_attention,
        {"query": QUERY[:, :3], "value": QUERY[:, :3], "cache": cache(2)},
        {"cache_update_index": 5, "return_attention_scores": True},
    ),
    "attention_segments_bias_scores": (
        attention,
        {
            "query": QUERY,
            "value": QUERY,
            "segment_ids": SEGMENTS,
            "attention_bias": np.zeros((B, 1, T, T), "float32"),
        },
        {"return_attention_scores": True},
    ),
    "encoder": (encoder, {"inputs": QUERY}, {}),
    "encoder_segments_bias_scores": (
        lambda: encoder(sliding_window=2, use_attention_sinks=True),
        {
            "inputs": QUERY,
            "segment_ids": SEGMENTS,
            "attention_bias": np.zeros((B, HEADS, T, T), "float32"),
        },
        {"return_attention_scores": True},
    ),
    "decoder_only_ring_cache_scores": (
        lambda: decoder(False, sliding_window=2, logit_soft_cap=5.0),
        {"decoder_sequence": TOKEN, "self_attention_cache": cache(2)},
        {"self_attention_cache_update_index": 6, "return_attention_scores": True},
    ),
    "encoder_masks_scores": (
        encoder,
        {"inputs": QUERY, "padding_mask": PADDING, "attention_mask": CAUSAL},
        {"return_attention_scores": True},
    ),
    "decoder_only": (lambda: decoder(False), {"decoder_sequence": QUERY}, {}),
    "decoder_only_scores": (
        lambda: decoder(False),
        {"decoder_sequence": QUERY, "decoder_padding_mask": PADDING},
        {"return_attention_scores": True},
    ),
    "decoder_only_cache": (
        lambda: decoder(False),
        {"decoder_sequence": TOKEN, "self_attention_cache": cache(T)},
        {"self_attention_cache_update_index": 2},
    ),
    "decoder_only_cache_scores": (
        lambda: decoder(False),
        {"decoder_sequence": TOKEN, "self_attention_cache": cache(T)},
        {"self_attention_cache_update_index": 2, "return_attention_scores": True},
    ),
    "decoder": (
        lambda: decoder(True),
        {"decoder_sequence": QUERY, "encoder_sequence": MEMORY},
        {},
    ),
    "decoder_masks_scores": (
        lambda: decoder(True),
        {
            "decoder_sequence": QUERY,
            "encoder_sequence": MEMORY,
            "decoder_padding_mask": PADDING,
            "encoder_padding_mask": PADDING[:, :S],
        },
        {"return_attention_scores": True},
    ),
    "decoder_cache_from_encoder_sequence": (
        lambda: decoder(True),
        {
            "decoder_sequence": TOKEN,
            "encoder_sequence": MEMORY,
            "self_attention_cache": cache(T),
        },
        {"self_attention_cache_update_index": 0},
    ),
    "decoder_caches_scores": (
        lambda: decoder(True),
        {
            "decoder_sequence": TOKEN,
            "self_attention_cache": cache(T),
            "cross_attention_cache": CROSS_CACHE,
        },
        {"self_attention_cache_update_index": 3, "return_attention_scores": True},
    ),
    "decoder_cross_cache_only": (
        lambda: decoder(True),
        {"decoder_sequence": QUERY, "cross_attention_cache": CROSS_CACHE},
        {"return_attention_scores": True},
    ),
}


def structure(outputs):
    """Shapes and dtypes of `outputs`, in the same nesting (tuple or one tensor)."""
    return keras.tree.map_structure(
        lambda t: (tuple(t.shape), keras.backend.standardize_dtype(t.dtype)), outputs
    )


class SymbolicCallTest(TestCase):
    """`compute_output_spec` returns exactly what `call` returns."""

    @parameterized.named_parameters(named_product(case=sorted(CALLS)))
    def test_symbolic_call_returns_the_eager_structure(self, case):
        make, tensors, arguments = CALLS[case]
        layer = make()
        eager = layer(**tensors, **arguments)
        symbolic_inputs = {
            name: keras.Input(value.shape[1:], batch_size=B, dtype=value.dtype)
            for name, value in tensors.items()
        }
        symbolic = layer(**symbolic_inputs, **arguments)
        self.assertEqual(structure(symbolic), structure(eager))
        self.assertEqual(isinstance(symbolic, tuple), isinstance(eager, tuple))

    @parameterized.named_parameters(named_product(case=sorted(CALLS)))
    def test_compute_output_shape_is_the_output_shape(self, case):
        make, tensors, arguments = CALLS[case]
        layer = make()
        shapes = [
            tensors[name].shape
            for name in ("query", "value", "inputs", "decoder_sequence")
            if name in tensors
        ]
        output = keras.tree.flatten(layer(**tensors, **arguments))[0]
        self.assertEqual(
            tuple(layer.compute_output_shape(*shapes)), tuple(output.shape)
        )
