"""`MultiHeadAttention`'s sliding window, soft cap, sinks, segment ids, logit bias
and rotary positions: NumPy references, Keras' harness, saving, keras-hub's Gemma
attention as a peer, and the refusal of bad input.

The reference (`_attention_reference.py`) copies the layer's projection weights and
builds what may attend from positions in NumPy.
"""

import os
import re

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops
from keras_hub.src.models.gemma.gemma_attention import CachedGemmaAttention

from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from tests._keras_private import TestCase
from tests.layers import _attention_reference as reference

B, T, FEATURES = 2, 7, 8
GROUPED = {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 2}
SEGMENTS = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 2, 2]], "int32")
SINKS = np.array([0.5, -1.0, 2.0, 0.0], "float32")


def random_sequences(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def built_layer(x, **kwargs):
    """A grouped-query layer with random biases, built on `x`; random sinks."""
    layer = MultiHeadAttention(
        **{**GROUPED, "bias_initializer": "random_normal", **kwargs}
    )
    layer(x, x)
    if layer.attention_sinks is not None:
        layer.attention_sinks.assign(SINKS)
    return layer


class NumpyReferenceTest(TestCase):
    """Each argument alone and all together, against the NumPy layer."""

    def assert_matches(self, layer, x, allowed, call_kwargs, **reference_kwargs):
        out, scores = layer(x, x, return_attention_scores=True, **call_kwargs)
        expected, expected_scores = reference.layer_attention(
            layer, x, x, allowed, **reference_kwargs
        )
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(scores, expected_scores, rtol=1e-5, atol=1e-6)
        # Without scores the automatic choice may take another path.
        self.assertAllClose(layer(x, x, **call_kwargs), expected, atol=1e-5)

    @parameterized.named_parameters(("causal", True), ("bidirectional", False))
    def test_sliding_window(self, causal):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x, sliding_window=3)
        allowed = reference.allowed_pairs(T, causal=causal, window=3)
        self.assert_matches(layer, x, allowed, {"use_causal_mask": causal})

    def test_window_of_one_attends_only_itself(self):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x, sliding_window=1)
        _, scores = layer(x, x, return_attention_scores=True)
        expected = np.broadcast_to(np.eye(T), (B, 4, T, T))
        self.assertAllClose(scores, expected, atol=1e-6)

    def test_logit_soft_cap(self):
        x = 4.0 * random_sequences(B, T, FEATURES)  # logits well beyond the cap
        layer = built_layer(x, logit_soft_cap=2.0)
        allowed = reference.allowed_pairs(T, causal=True)
        self.assert_matches(layer, x, allowed, {"use_causal_mask": True}, soft_cap=2.0)

    def test_attention_sinks(self):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x, use_attention_sinks=True)
        allowed = reference.allowed_pairs(T, causal=True)
        self.assert_matches(layer, x, allowed, {"use_causal_mask": True})
        _, scores = layer(x, x, return_attention_scores=True)
        self.assertTrue(np.all(np.sum(ops.convert_to_numpy(scores), -1) < 1.0))

    def test_segment_ids(self):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x)
        allowed = reference.allowed_pairs(T, causal=True, query_segments=SEGMENTS)
        call_kwargs = {"use_causal_mask": True, "segment_ids": SEGMENTS}
        self.assert_matches(layer, x, allowed, call_kwargs)

    def test_segment_id_pair_in_cross_attention(self):
        query, memory = random_sequences(B, T, FEATURES), random_sequences(B, 3, 6)
        layer = MultiHeadAttention(**GROUPED, bias_initializer="random_normal")
        key_segments = np.array([[0, 1, 1], [2, 2, 2]], "int32")
        out = layer(query, memory, segment_ids=(SEGMENTS, key_segments))
        allowed = reference.allowed_pairs(
            T, 3, query_segments=SEGMENTS, key_segments=key_segments
        )
        expected, _ = reference.layer_attention(layer, query, memory, allowed)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    def test_attention_bias(self):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x)
        bias = random_sequences(1, 4, T, T, seed=3)
        allowed = reference.allowed_pairs(T, causal=True)
        call_kwargs = {"use_causal_mask": True, "attention_bias": bias}
        self.assert_matches(layer, x, allowed, call_kwargs, bias=bias)

    def test_positions_restart_per_packed_document(self):
        x = random_sequences(B, T, FEATURES)
        layer = built_layer(x, rotary_embedding=RotaryEmbedding())
        # Each document starts at position 0, and sees only itself.
        positions = np.array([[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 0, 1]])
        allowed = reference.allowed_pairs(T, causal=True, query_segments=SEGMENTS)
        call_kwargs = {
            "use_causal_mask": True,
            "segment_ids": SEGMENTS,
            "positions": positions,
        }
        self.assert_matches(
            layer, x, allowed, call_kwargs, positions=(positions, positions)
        )
        # A packed document gives what it gives alone, at positions 0, 1, ...
        alone = layer(x[:1, 3:], x[:1, 3:], use_causal_mask=True)
        packed = layer(
            x[:1],
            x[:1],
            use_causal_mask=True,
            segment_ids=SEGMENTS[:1],
            positions=positions[:1],
        )
        self.assertAllClose(packed[:, 3:], alone, atol=1e-5)

    def test_every_argument_together(self):
        x = 3.0 * random_sequences(B, T, FEATURES)
        layer = built_layer(
            x,
            sliding_window=2,
            logit_soft_cap=3.0,
            use_attention_sinks=True,
            rotary_embedding=RotaryEmbedding(),
        )
        bias = random_sequences(B, 1, T, T, seed=4)
        mask = np.random.default_rng(5).random((B, T, T)) > 0.3
        allowed = mask & reference.allowed_pairs(
            T, causal=True, window=2, query_segments=SEGMENTS
        )
        call_kwargs = {
            "use_causal_mask": True,
            "attention_mask": mask,
            "segment_ids": SEGMENTS,
            "attention_bias": bias,
        }
        self.assert_matches(
            layer,
            x,
            allowed,
            call_kwargs,
            bias=bias,
            soft_cap=3.0,
            positions=(np.arange(T), np.arange(T)),
        )


class LayerContractTest(TestCase):
    def test_layer_contract_with_window_soft_cap_sinks_segments_and_bias(self):
        self.run_layer_test(
            MultiHeadAttention,
            init_kwargs={
                "num_heads": 2,
                "key_dim": 4,
                "sliding_window": 2,
                "logit_soft_cap": 10.0,
                "use_attention_sinks": True,
            },
            input_shape={"query_shape": (2, 5, 8), "value_shape": (2, 5, 8)},
            call_kwargs={
                "use_causal_mask": True,
                "segment_ids": np.array([[0, 0, 1, 1, 1]] * 2, "int32"),
                "attention_bias": random_sequences(2, 1, 5, 5),
            },
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=9,  # 8 of the projections, the sinks
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            run_training_check=False,  # Keras' check passes one positional input
        )

    def test_sinks_come_after_the_projections_and_keep_keras_layout_without(self):
        x = random_sequences(B, T, FEATURES)
        theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        theirs(x, x)
        ours = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=3)
        ours(x, x)
        ours.set_weights(theirs.get_weights())  # no sinks: Keras' layout
        with_sinks = MultiHeadAttention(
            num_heads=2, key_dim=4, use_attention_sinks=True
        )
        with_sinks(x, x)
        self.assertEqual(
            with_sinks.attention_sinks.path.split("/")[-1], "attention_sinks"
        )
        self.assertEqual(tuple(with_sinks.attention_sinks.shape), (2,))
        self.assertAllEqual(with_sinks.attention_sinks, np.zeros(2))
        sublayer_weights = [
            w.path
            for w in with_sinks.weights
            if w.path != with_sinks.attention_sinks.path
        ]
        self.assertEqual(
            [w.split("/", 1)[1] for w in sublayer_weights],
            [w.path.split("/", 1)[1] for w in theirs.weights],
        )

    def test_sinks_are_trained(self):
        query = keras.Input((5, 8))
        output = MultiHeadAttention(num_heads=2, key_dim=4, use_attention_sinks=True)(
            query, query, use_causal_mask=True
        )
        model = keras.Model(query, output)
        model.compile(optimizer="sgd", loss="mse")
        sinks = next(w for w in model.weights if "attention_sinks" in w.path)
        model.fit(
            random_sequences(4, 5, 8), random_sequences(4, 5, 8, seed=1), verbose=0
        )
        self.assertGreater(np.max(np.abs(ops.convert_to_numpy(sinks))), 0.0)

    def test_config_round_trip(self):
        layer = MultiHeadAttention(
            num_heads=2,
            key_dim=4,
            sliding_window=3,
            logit_soft_cap=30.0,
            use_attention_sinks=True,
        )
        config = layer.get_config()
        restored = MultiHeadAttention.from_config(config)
        for name in ("sliding_window", "logit_soft_cap", "use_attention_sinks"):
            self.assertEqual(getattr(restored, name), getattr(layer, name))
        self.assertEqual(restored.get_config(), config)

    def test_keras_file_round_trip_gives_identical_outputs(self):
        x = keras.Input((T, FEATURES))
        output = MultiHeadAttention(
            **GROUPED,
            sliding_window=3,
            logit_soft_cap=2.0,
            use_attention_sinks=True,
            rotary_embedding=RotaryEmbedding(),
        )(x, x, use_causal_mask=True)
        model = keras.Model(x, output)
        next(w for w in model.weights if "attention_sinks" in w.path).assign(SINKS)
        path = os.path.join(self.get_temp_dir(), "structured.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        data = 3.0 * random_sequences(B, T, FEATURES)
        self.assertAllClose(
            restored.predict(data, verbose=0), model.predict(data, verbose=0), atol=0
        )


class GemmaAttentionParityTest(TestCase):
    """keras-hub's Gemma (2) attention with its weights copied into ours.

    Its q/k/v kernels are `(heads, features, head_dim)` ("btd,ndh->btnh"), ours
    Keras' `(features, heads, head_dim)`: they copy with a transpose of the
    first two axes. It has no biases (ours: `use_bias=False`). Its rotary
    embedding interleaves the two halves of the rotated features afterwards,
    the same permutation for queries and keys, so every dot product, and the
    output, equals ours with rotate-half RoPE.
    """

    def twins(self, **gemma_kwargs):
        theirs = CachedGemmaAttention(
            head_dim=4, num_query_heads=4, num_key_value_heads=2, **gemma_kwargs
        )
        theirs.build((B, T, FEATURES))
        window = gemma_kwargs.get("sliding_window_size")
        ours = MultiHeadAttention(
            **GROUPED,
            use_bias=False,
            rotary_embedding=RotaryEmbedding(max_wavelength=10000),
            sliding_window=window
            if gemma_kwargs.get("use_sliding_window_attention")
            else None,
            logit_soft_cap=gemma_kwargs.get("logit_soft_cap"),
        )
        x = random_sequences(B, T, FEATURES)
        ours(x, x)
        rng = np.random.default_rng(7)
        for mine, peer in (
            (ours.query, theirs.query_dense),
            (ours.key, theirs.key_dense),
            (ours.value, theirs.value_dense),
            (ours.attention_output, theirs.output_dense),
        ):
            kernel = rng.normal(size=peer.kernel.shape).astype("float32")
            peer.kernel.assign(kernel)
            if peer is not theirs.output_dense:
                kernel = kernel.transpose(1, 0, 2)  # (N, D, H) -> (D, N, H)
            self.assertEqual(tuple(mine.kernel.shape), kernel.shape)
            mine.kernel.assign(kernel)
        return ours, theirs

    @parameterized.named_parameters(
        (
            "sliding_window",
            {"use_sliding_window_attention": True, "sliding_window_size": 3},
        ),
        ("logit_soft_cap", {"logit_soft_cap": 2.0}),
        (
            "both",
            {
                "use_sliding_window_attention": True,
                "sliding_window_size": 2,
                "logit_soft_cap": 1.5,
            },
        ),
    )
    def test_same_outputs_as_gemma_attention(self, gemma_kwargs):
        ours, theirs = self.twins(**gemma_kwargs)
        x = random_sequences(B, T, FEATURES, seed=1)
        causal = np.broadcast_to(np.tril(np.ones((T, T), bool)), (B, T, T))
        expected = theirs(x, attention_mask=causal)
        self.assertAllClose(
            ours(x, x, use_causal_mask=True), expected, rtol=1e-5, atol=1e-5
        )


class ValidationTest(TestCase):
    @parameterized.named_parameters(
        ("window_zero", {"sliding_window": 0}, "sliding_window", "0"),
        ("window_negative", {"sliding_window": -2}, "sliding_window", "-2"),
        ("window_float", {"sliding_window": 2.5}, "sliding_window", "2.5"),
        ("soft_cap_zero", {"logit_soft_cap": 0.0}, "logit_soft_cap", "0.0"),
        ("soft_cap_negative", {"logit_soft_cap": -1}, "logit_soft_cap", "-1"),
        ("soft_cap_string", {"logit_soft_cap": "30"}, "logit_soft_cap", "'30'"),
        ("sinks_int", {"use_attention_sinks": 1}, "use_attention_sinks", "1"),
        (
            "sinks_string",
            {"use_attention_sinks": "yes"},
            "use_attention_sinks",
            "'yes'",
        ),
    )
    def test_bad_constructor_argument_is_rejected(self, overrides, argument, value):
        with self.assertRaisesRegex(
            ValueError,
            rf"MultiHeadAttention 'named'.*`{argument}`.*received {re.escape(value)}",
        ):
            MultiHeadAttention(num_heads=2, key_dim=4, name="named", **overrides)

    @parameterized.named_parameters(
        ("too_short", np.zeros((B, T - 1), "int32"), r"\(2, 6\)"),
        ("rank_3", np.zeros((B, T, 1), "int32"), r"\(2, 7, 1\)"),
        ("float", np.zeros((B, T), "float32"), r"float32"),
    )
    def test_bad_segment_ids_are_rejected_naming_the_layer(self, ids, shown):
        x = random_sequences(B, T, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, name="named")
        with self.assertRaisesRegex(
            ValueError,
            rf"MultiHeadAttention 'named'.*`segment_ids`.*\(2, 7\).*received.*{shown}",
        ):
            layer(x, x, segment_ids=ids)

    def test_one_segment_id_tensor_in_cross_attention_is_rejected(self):
        query, memory = random_sequences(B, T, FEATURES), random_sequences(B, 3, 6)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        with self.assertRaisesRegex(ValueError, r"`segment_ids`.*or a pair"):
            layer(query, memory, segment_ids=SEGMENTS)

    def test_bias_that_does_not_broadcast_is_rejected(self):
        x = random_sequences(B, T, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        with self.assertRaisesRegex(
            ValueError,
            r"MultiHeadAttention.*`attention_bias`.*\(2, 2, 7, 7\).*\(3, 7\)",
        ):
            layer(x, x, attention_bias=np.zeros((3, T), "float32"))
        with self.assertRaisesRegex(ValueError, r"`attention_bias`.*bool"):
            layer(x, x, attention_bias=np.ones((T, T), bool))

    def test_positions_without_rotary_embedding_are_rejected(self):
        x = random_sequences(B, T, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        with self.assertRaisesRegex(
            ValueError, r"MultiHeadAttention.*`positions`.*rotary_embedding"
        ):
            layer(x, x, positions=np.arange(T))

    def test_segment_ids_with_a_cache_are_rejected(self):
        x = random_sequences(B, 1, FEATURES)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        cache = layer.initialize_cache(B, 4)
        with self.assertRaisesRegex(ValueError, r"`segment_ids`.*None with `cache`"):
            layer(x, x, cache=cache, cache_update_index=0, segment_ids=SEGMENTS[:, :1])
