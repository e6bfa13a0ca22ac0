"""`TransformerEncoder`/`TransformerDecoder` pass the attention options on.

The constructor's `sliding_window`, `logit_soft_cap`, `use_attention_sinks` and
`rotary_embedding` reach the self-attention only (never the decoder's
cross-attention); the call's `segment_ids`, `attention_bias` and `positions` reach
it too. Each is checked by a behaviour with an independent reference: a window
equals its banded mask, a bias of -1e9 equals a mask, a packed row equals its
documents run alone.
"""

import os

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.layers import RotaryEmbedding
from keras_attn.layers import TransformerDecoder
from keras_attn.layers import TransformerEncoder
from tests._keras_private import TestCase
from tests._keras_private import named_product
from tests._tiny_models import randomize

HIDDEN, HEADS, FFN = 8, 2, 16
B, T, S = 2, 7, 5
BLOCKS = {"encoder": TransformerEncoder, "decoder": TransformerDecoder}
OPTIONS = {
    "sliding_window": 3,
    "logit_soft_cap": 2.0,
    "use_attention_sinks": True,
}


def random_sequence(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def built(block, with_encoder=False, **kwargs):
    """A block with random weights (sinks too), built on `(B, T, HIDDEN)`."""
    layer = BLOCKS[block](FFN, HEADS, normalize_first=True, **kwargs)
    layer.build((B, T, HIDDEN), *([(B, S, HIDDEN)] if with_encoder else []))
    for i, weight in enumerate(layer.weights):
        rng = np.random.default_rng(i)
        weight.assign(0.5 * rng.normal(size=weight.shape).astype("float32"))
    return layer


def banded(causal, window=OPTIONS["sliding_window"]):
    offset = np.arange(T)[:, None] - np.arange(T)[None, :]
    band = np.abs(offset) < window
    return np.broadcast_to(band & (offset >= 0) if causal else band, (B, T, T))


class ConstructorOptionsTest(TestCase):
    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_options_reach_the_self_attention(self, block):
        rotary = RotaryEmbedding(max_wavelength=100)
        layer = built(
            block, with_encoder=block == "decoder", rotary_embedding=rotary, **OPTIONS
        )
        attention = layer.self_attention
        for name, value in OPTIONS.items():
            self.assertEqual(getattr(attention, name), value)
        self.assertEqual(attention.rotary_embedding.max_wavelength, 100)
        self.assertEqual(tuple(attention.attention_sinks.shape), (HEADS,))
        if block == "decoder":  # the cross-attention keeps none of them
            cross = layer.cross_attention
            self.assertIsNone(cross.sliding_window)
            self.assertIsNone(cross.logit_soft_cap)
            self.assertIsNone(cross.attention_sinks)
            self.assertIsNone(cross.rotary_embedding)

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_layer_contract_with_the_options(self, block):
        self.run_layer_test(
            BLOCKS[block],
            init_kwargs={
                "intermediate_dim": FFN,
                "num_heads": HEADS,
                "dropout": 0.1,
                "rotary_embedding": RotaryEmbedding(),
                **OPTIONS,
            },
            input_shape=(B, T, HIDDEN),
            call_kwargs={"segment_ids": np.array([[0, 0, 0, 1, 1, 1, 1]] * B)},
            expected_output_shape=(B, T, HIDDEN),
            expected_num_trainable_weights=17,  # 16, and the sinks
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=2,
            supports_masking=True,
        )

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_config_round_trip(self, block):
        layer = BLOCKS[block](
            FFN, HEADS, rotary_embedding=RotaryEmbedding(scaling_factor=2.0), **OPTIONS
        )
        config = layer.get_config()
        restored = BLOCKS[block].from_config(config)
        self.assertEqual(restored.get_config(), config)
        self.assertEqual(restored.rotary_embedding.scaling_factor, 2.0)

    @parameterized.named_parameters(
        named_product(
            [
                {
                    "testcase_name": "window",
                    "overrides": {"sliding_window": 0},
                    "argument": "sliding_window",
                },
                {
                    "testcase_name": "soft_cap",
                    "overrides": {"logit_soft_cap": -2.0},
                    "argument": "logit_soft_cap",
                },
                {
                    "testcase_name": "sinks",
                    "overrides": {"use_attention_sinks": None},
                    "argument": "use_attention_sinks",
                },
            ],
            block=sorted(BLOCKS),
        )
    )
    def test_bad_option_names_the_block(self, overrides, argument, block):
        with self.assertRaisesRegex(
            ValueError, rf"{BLOCKS[block].__name__} 'named'.*`{argument}`"
        ):
            BLOCKS[block](FFN, HEADS, name="named", **overrides)

    def test_keras_file_round_trip_gives_identical_outputs(self):
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(12, HIDDEN)(tokens)
        x = TransformerDecoder(
            FFN, HEADS, rotary_embedding=RotaryEmbedding(), **OPTIONS
        )(x)
        model = randomize(keras.Model(tokens, keras.layers.Dense(12)(x)), scale=0.5)
        path = os.path.join(self.get_temp_dir(), "decoder.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        data = np.random.default_rng(0).integers(0, 12, (B, T))
        self.assertAllClose(
            restored.predict(data, verbose=0), model.predict(data, verbose=0), atol=0
        )


class CallArgumentsTest(TestCase):
    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_window_equals_its_banded_mask_and_spares_the_cross_attention(self, block):
        with_encoder = block == "decoder"
        windowed = built(block, with_encoder, sliding_window=3)
        plain = built(block, with_encoder)
        x = random_sequence((B, T, HIDDEN))
        if block == "encoder":
            expected = plain(x, attention_mask=banded(causal=False))
            got = windowed(x)
        else:  # an encoder sequence longer than the window: seen whole
            memory = random_sequence((B, S, HIDDEN), seed=1)
            expected = plain(x, memory, decoder_attention_mask=banded(causal=True))
            got = windowed(x, memory)
        self.assertAllClose(got, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_large_negative_bias_equals_a_mask(self, block):
        layer = built(block, use_attention_sinks=True, logit_soft_cap=None)
        x = random_sequence((B, T, HIDDEN))
        mask = np.random.default_rng(3).random((B, T, T)) > 0.4
        mask[:, :, 0] = True
        bias = np.where(mask, 0.0, -1e9).astype("float32")[:, None]  # (B, 1, T, T)
        argument = "attention_mask" if block == "encoder" else "decoder_attention_mask"
        self.assertAllClose(
            layer(x, attention_bias=bias), layer(x, **{argument: mask}), atol=1e-5
        )

    @parameterized.named_parameters(named_product(block=sorted(BLOCKS)))
    def test_packed_documents_equal_the_documents_alone(self, block):
        layer = built(block, rotary_embedding=RotaryEmbedding(), **OPTIONS)
        x = random_sequence((1, T, HIDDEN))
        segments = np.array([[0, 0, 0, 1, 1, 1, 1]])
        positions = np.array([[0, 1, 2, 0, 1, 2, 3]])
        packed = layer(x, segment_ids=segments, positions=positions)
        alone = ops.concatenate([layer(x[:, :3]), layer(x[:, 3:])], axis=1)
        self.assertAllClose(packed, alone, rtol=1e-5, atol=1e-5)
        # The positions reach the rotation: spread out, they change the outputs.
        spread = layer(x, segment_ids=segments, positions=2 * positions)
        self.assertNotAllClose(spread, alone)


def decode_with_cache(decoder, x, memory, steps):
    cache = decoder.initialize_cache(x.shape[0], x.shape[1])
    cross_cache = decoder.precompute_cross_attention_cache(memory)
    outputs, start = [], 0
    for length in steps:
        y, cache, _ = decoder(
            x[:, start : start + length],
            self_attention_cache=cache,
            self_attention_cache_update_index=start,
            cross_attention_cache=cross_cache,
        )
        outputs.append(ops.convert_to_numpy(y))
        start += length
    return np.concatenate(outputs, axis=1), cache


class DecoderRingCacheTest(TestCase):
    def test_cached_decoding_with_cross_attention_equals_the_full_pass(self):
        decoder = built(
            "decoder", with_encoder=True, rotary_embedding=RotaryEmbedding(), **OPTIONS
        )
        x = random_sequence((B, 12, HIDDEN))
        memory = random_sequence((B, S, HIDDEN), seed=1)
        expected = decoder(x, memory)
        cached, cache = decode_with_cache(decoder, x, memory, (5, 1, 1, 4, 1))
        self.assertEqual(tuple(cache.shape), (B, 2, 3, HEADS, HIDDEN // HEADS))
        self.assertAllClose(cached, expected, rtol=1e-5, atol=1e-5)

    def test_ring_decoding_inside_while_loop_equals_the_full_pass(self):
        # Under JAX the loop is traced: the cache index is a tensor there.
        decoder = built("decoder", rotary_embedding=RotaryEmbedding(), **OPTIONS)
        x = random_sequence((B, 10, HIDDEN))
        expected = decoder(x)

        def step(i, outputs, cache):
            token = ops.slice(x, (0, i, 0), (B, 1, HIDDEN))
            y, cache = decoder(
                token, self_attention_cache=cache, self_attention_cache_update_index=i
            )
            return i + 1, ops.slice_update(outputs, (0, i, 0), y), cache

        _, actual, _ = ops.while_loop(
            lambda i, outputs, cache: i < 10,
            step,
            (0, ops.zeros((B, 10, HIDDEN)), decoder.initialize_cache(B, 10)),
        )
        self.assertAllClose(actual, expected, rtol=1e-5, atol=1e-5)

    def test_padding_mask_with_a_ring_cache_is_rejected(self):
        decoder = built("decoder", sliding_window=3)
        x = random_sequence((B, 1, HIDDEN))
        with self.assertRaisesRegex(
            ValueError, r"MultiHeadAttention.*`attention_mask`.*ring-buffer cache"
        ):
            decoder(
                x,
                decoder_padding_mask=np.ones((B, 1), bool),
                self_attention_cache=decoder.initialize_cache(B, T),
                self_attention_cache_update_index=0,
            )
