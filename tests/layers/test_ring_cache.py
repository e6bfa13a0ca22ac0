"""Ring-buffer KV caches of sliding-window attention: cached equals uncached.

A layer with `sliding_window=W` caches `R = min(W, max_length)` slots; slot `s`
holds the newest position `p < t` with `p ≡ s (mod R)` before a step at `t`. The
pure functions of `_kv_cache` are checked against NumPy written from that
definition; `MultiHeadAttention`, `TransformerDecoder` stacks and
`keras_attn.generation.generate` against the uncached windowed forward pass, with
prompts longer than the window, steps longer than the ring, and 20+ tokens so
the ring wraps several times.
"""

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops
from keras_hub import samplers

from keras_attn.generation import generate
from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from keras_attn.layers import TransformerDecoder
from keras_attn.layers import _kv_cache
from tests._keras_private import TestCase
from tests._tiny_models import randomize

WINDOW, LENGTH, FEATURES = 4, 22, 8
# A prefill longer than the window, single tokens, and steps longer than the ring.
STEPS = (9, 1, 1, 3, 1, 5, 1, 1)


def random_sequences(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_ring_positions(start, ring_length):
    """For each slot, the newest position `p < start` with `p % R == s`, or -1."""
    held = np.full(ring_length, -1)
    for p in range(start):
        held[p % ring_length] = p
    return held


class RingArithmeticTest(TestCase):
    @parameterized.named_parameters(
        ("ring_of_1", 1), ("ring_of_3", 3), ("ring_of_4", 4)
    )
    def test_slot_positions(self, ring_length):
        for start in range(12):
            held = ops.convert_to_numpy(_kv_cache.ring_positions(start, ring_length))
            expected = numpy_ring_positions(start, ring_length)
            self.assertAllEqual(np.where(held >= 0, held, -1), expected)

    def test_writes_keep_the_newest_position_in_each_slot(self):
        ring_length, keys = 3, random_sequences(1, 14, 1, 2)
        cache = ops.zeros((1, 2, ring_length, 1, 2))
        start = 0
        for length in (1, 5, 2, 1, 4, 1):  # some steps longer than the ring
            k = keys[:, start : start + length]
            cache = _kv_cache.ring_write(cache, k, 2 * k, start, None)
            start += length
            held = numpy_ring_positions(start, ring_length)
            for slot, position in enumerate(held):
                if position < 0:
                    continue  # not written yet
                self.assertAllClose(cache[:, 0, slot], keys[:, position])
                self.assertAllClose(cache[:, 1, slot], 2 * keys[:, position])

    @parameterized.named_parameters(("causal", True), ("bidirectional", False))
    def test_mask_follows_true_positions(self, causal):
        ring_length, window = 4, 3
        for start, length in ((0, 2), (2, 1), (5, 1), (9, 6)):
            got = ops.convert_to_numpy(
                _kv_cache.ring_mask(start, length, ring_length, window, causal)
            )[0, 0]
            queries = start + np.arange(length)
            keys = np.concatenate([numpy_ring_positions(start, ring_length), queries])
            offset = queries[:, None] - keys[None, :]
            expected = (keys[None, :] >= 0) & (np.abs(offset) < window)
            if causal:
                expected &= offset >= 0
            self.assertAllEqual(got, expected)

    def test_cache_length_is_the_window_or_the_maximum_length(self):
        self.assertEqual(_kv_cache.cache_length(10, None), 10)
        self.assertEqual(_kv_cache.cache_length(10, 4), 4)
        self.assertEqual(_kv_cache.cache_length(3, 4), 3)


def decode_in_steps(layer, x, steps=STEPS, **call_kwargs):
    """`x` through `layer` with its cache in steps of the given lengths."""
    cache = layer.initialize_cache(x.shape[0], x.shape[1])
    outputs, start = [], 0
    for length in steps:
        chunk = x[:, start : start + length]
        out, new_cache = layer(
            chunk, chunk, cache=cache, cache_update_index=start, **call_kwargs
        )
        assert tuple(new_cache.shape) == tuple(cache.shape)  # constant memory
        outputs.append(ops.convert_to_numpy(out))
        cache, start = new_cache, start + length
    return np.concatenate(outputs, axis=1), cache


class MultiHeadAttentionRingCacheTest(TestCase):
    @parameterized.named_parameters(
        ("multi_head", {"num_heads": 2, "key_dim": 4}),
        (
            "grouped_rotary",
            {
                "num_heads": 4,
                "key_dim": 4,
                "num_key_value_heads": 2,
                "rotary_embedding": RotaryEmbedding(),
            },
        ),
        (
            "multi_query_sinks_soft_cap",
            {
                "num_heads": 4,
                "key_dim": 4,
                "num_key_value_heads": 1,
                "use_attention_sinks": True,
                "logit_soft_cap": 2.0,
            },
        ),
    )
    def test_cached_steps_equal_the_windowed_forward_pass(self, kwargs):
        x = 2.0 * random_sequences(2, LENGTH, FEATURES)
        layer = MultiHeadAttention(sliding_window=WINDOW, **kwargs)
        layer(x, x)
        if layer.attention_sinks is not None:
            layer.attention_sinks.assign(np.linspace(-1, 1, 4).astype("float32"))
        expected = ops.convert_to_numpy(layer(x, x, use_causal_mask=True))
        cached, cache = decode_in_steps(layer, x, use_causal_mask=True)
        self.assertEqual(tuple(cache.shape), (2, 2, WINDOW, layer.kv_heads, 4))
        self.assertAllClose(cached, expected, rtol=1e-5, atol=1e-5)

    def test_ring_holds_the_last_keys_at_their_slots(self):
        x = random_sequences(2, LENGTH, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=WINDOW)
        layer(x, x)
        _, cache = decode_in_steps(layer, x, use_causal_mask=True)
        keys = ops.convert_to_numpy(layer.key(x))
        for slot, position in enumerate(numpy_ring_positions(LENGTH, WINDOW)):
            self.assertAllClose(cache[:, 0, slot], keys[:, position], atol=1e-6)

    def test_without_causal_mask_one_token_at_a_time_sees_only_the_past(self):
        x = random_sequences(2, LENGTH, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=WINDOW)
        expected = ops.convert_to_numpy(layer(x, x, use_causal_mask=True))
        cached, _ = decode_in_steps(layer, x, steps=(1,) * LENGTH)
        self.assertAllClose(cached, expected, rtol=1e-5, atol=1e-5)

    def test_short_maximum_length_gives_a_shorter_ring(self):
        layer = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=8)
        layer.build((1, 3, FEATURES), (1, 3, FEATURES))
        self.assertEqual(tuple(layer.initialize_cache(1, 3).shape), (1, 2, 3, 2, 4))
        plain = MultiHeadAttention(num_heads=2, key_dim=4)
        plain.build((1, 3, FEATURES), (1, 3, FEATURES))
        self.assertEqual(tuple(plain.initialize_cache(1, 30).shape), (1, 2, 30, 2, 4))

    def test_scores_cover_the_ring_and_the_new_keys(self):
        x = random_sequences(2, 6, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=WINDOW)
        layer(x, x)
        cache = layer.initialize_cache(2, 6)
        _, scores, _ = layer(
            x[:, :3],
            x[:, :3],
            cache=cache,
            cache_update_index=0,
            use_causal_mask=True,
            return_attention_scores=True,
        )
        self.assertEqual(tuple(scores.shape), (2, 2, 3, WINDOW + 3))
        spec = layer.compute_output_spec(
            keras.KerasTensor((2, 3, FEATURES)),
            keras.KerasTensor((2, 3, FEATURES)),
            return_attention_scores=True,
            cache=keras.KerasTensor(cache.shape),
            cache_update_index=0,
        )
        self.assertEqual(tuple(spec[1].shape), tuple(scores.shape))
        self.assertAllClose(
            np.sum(ops.convert_to_numpy(scores), -1), np.ones((2, 2, 3))
        )

    @parameterized.named_parameters(
        ("attention_mask", "attention_mask", np.ones((2, 1, 5), bool)),
        ("attention_bias", "attention_bias", np.zeros((2, 1, 1, 5), "float32")),
    )
    def test_masks_and_biases_over_ring_slots_are_rejected(self, argument, value):
        x = random_sequences(2, 1, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=WINDOW)
        layer(x, x)
        with self.assertRaisesRegex(
            ValueError, rf"MultiHeadAttention.*`{argument}`.*ring-buffer cache"
        ):
            layer(
                x,
                x,
                cache=layer.initialize_cache(2, 8),
                cache_update_index=0,
                **{argument: value},
            )


VOCABULARY, PADDING, START = 11, 0, 1
DECODER = {
    "intermediate_dim": 16,
    "num_heads": 2,
    "sliding_window": WINDOW,
    "logit_soft_cap": 3.0,
    "use_attention_sinks": True,
    "normalize_first": True,
}


class WindowedLanguageModel(keras.Model):
    """A decoder-only model of three windowed blocks with the decoding protocol
    of `keras_attn.models.EncoderDecoderModel` (its "source" is unused)."""

    padding_id, decoder_vocabulary_size = PADDING, VOCABULARY

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(VOCABULARY, FEATURES)
        self.blocks = [
            TransformerDecoder(**DECODER, rotary_embedding=RotaryEmbedding())
            for _ in range(3)
        ]
        self.head = keras.layers.Dense(VOCABULARY)

    def call(self, token_ids):
        return self._decode(token_ids, None)[0]

    def encode(self, inputs, training=None):
        return ops.zeros((ops.shape(inputs)[0], 1, FEATURES)), None

    def initialize_caches(self, encoder_sequence, encoder_padding_mask, max_length):
        batch = ops.shape(encoder_sequence)[0]
        return tuple(block.initialize_cache(batch, max_length) for block in self.blocks)

    def _decode(
        self,
        token_ids,
        encoder_sequence=None,
        encoder_padding_mask=None,
        caches=None,
        start_index=0,
        training=None,
    ):
        x = self.embedding(token_ids)
        if caches is None:
            padding_mask = ops.not_equal(token_ids, PADDING)
            for block in self.blocks:
                x = block(x, decoder_padding_mask=padding_mask)
            return self.head(x), None
        updated = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(
                x,
                self_attention_cache=cache,
                self_attention_cache_update_index=start_index,
            )
            updated.append(cache)
        return self.head(x), tuple(updated)


def language_model():
    model = WindowedLanguageModel()
    model(np.ones((1, 2), "int32"))
    return randomize(model, scale=1.0, seed=2)


def random_tokens(batch, length, seed=0):
    return np.random.default_rng(seed).integers(2, VOCABULARY, (batch, length), "int32")


class WindowedDecoderGenerationTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = language_model()

    def test_ring_caches_have_the_window_length(self):
        caches = self.model.initialize_caches(ops.zeros((2, 1, FEATURES)), None, 30)
        for cache in caches:
            self.assertEqual(tuple(cache.shape), (2, 2, WINDOW, 2, 4))

    def test_cached_logits_equal_the_uncached_windowed_forward_pass(self):
        tokens = random_tokens(2, LENGTH)
        expected = ops.convert_to_numpy(self.model(tokens))
        caches = self.model.initialize_caches(ops.zeros((2, 1, FEATURES)), None, LENGTH)
        logits, start = [], 0
        for length in STEPS:
            step_logits, caches = self.model._decode(
                tokens[:, start : start + length],
                None,
                caches=caches,
                start_index=start,
            )
            logits.append(ops.convert_to_numpy(step_logits))
            start += length
        self.assertAllClose(np.concatenate(logits, axis=1), expected, atol=1e-4)

    @parameterized.named_parameters(
        ("greedy", samplers.GreedySampler),
        ("random", lambda: samplers.RandomSampler(seed=5)),
    )
    def test_generate_with_ring_caches_gives_the_uncached_tokens(self, sampler):
        # `generate` steps one token at a time, its index growing past the ring.
        source = random_tokens(3, 2)
        cached, uncached = (
            ops.convert_to_numpy(
                generate(
                    self.model,
                    source,
                    start_token_id=START,
                    max_length=24,
                    sampler=sampler(),  # a fresh one: the same draws
                    use_cache=use_cache,
                )
            )
            for use_cache in (True, False)
        )
        self.assertAllEqual(cached, uncached)
        self.assertGreater(len(np.unique(cached[:, 1:])), 2)  # not one repeated token

    def test_prompt_longer_than_the_window_prefilled_then_sampled(self):
        prompt_length, max_length = 8, 22
        prompt = np.zeros((2, max_length), "int32")
        prompt[:, :prompt_length] = random_tokens(2, prompt_length, seed=1)
        given = np.arange(max_length)[None, :] < prompt_length
        given = np.broadcast_to(given, prompt.shape)
        model = self.model

        def cached_next(tokens, caches, index):
            previous = ops.slice(tokens, (0, index - 1), (2, 1))
            logits, caches = model._decode(
                previous, None, caches=caches, start_index=index - 1
            )
            return logits[:, 0], None, caches

        def uncached_next(tokens, caches, index):
            logits = model(tokens)
            return ops.take(logits, index - 1, axis=1), None, caches

        caches = model.initialize_caches(ops.zeros((2, 1, FEATURES)), None, max_length)
        # Positions 0 .. 6 in one call; the sampler feeds position 7 onwards.
        _, caches = model._decode(
            prompt[:, : prompt_length - 1], None, caches=caches, start_index=0
        )
        cached = samplers.GreedySampler()(
            cached_next,
            prompt,
            cache=caches,
            index=prompt_length,
            mask=given,
            model=model,
        )
        uncached = samplers.GreedySampler()(
            uncached_next, prompt, index=prompt_length, mask=given, model=model
        )
        self.assertAllEqual(
            ops.convert_to_numpy(cached), ops.convert_to_numpy(uncached)
        )
