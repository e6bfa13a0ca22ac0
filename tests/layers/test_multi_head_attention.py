"""`MultiHeadAttention`: Keras' weight layout and numbers, masks, GQA, KV cache.

References are `keras.layers.MultiHeadAttention` and
`keras.layers.GroupQueryAttention` with copied weights, and a NumPy implementation
(`reference_attention`) where the Keras layers cannot serve.
"""

import os
import re
from unittest import mock

import keras
import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from keras_attn.layers import multi_head_attention
from keras_attn.ops import dot_product_attention
from keras_attn.ops.attention import IMPLEMENTATIONS
from tests._keras_private import TestCase
from tests._tolerances import as_float64
from tests._tolerances import assert_close_in_ulps
from tests.ops.test_attention import reference_attention


def random_sequences(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def as_numpy(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


def keras_twin(query, value, key=None, **kwargs):
    """Ours and `keras.layers.MultiHeadAttention`, built, with the same weights."""
    theirs = keras.layers.MultiHeadAttention(bias_initializer="random_normal", **kwargs)
    ours = MultiHeadAttention(**kwargs)
    theirs(query, value, key)
    ours(query, value, key)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def assert_same_outputs(test, ours, theirs, *args, rows=None, **kwargs):
    """Ours and the Keras layer give the same outputs and scores for one call."""
    ours_out, ours_scores = ours(*args, return_attention_scores=True, **kwargs)
    out, scores = theirs(*args, return_attention_scores=True, **kwargs)
    ours_out, ours_scores = as_numpy(ours_out), as_numpy(ours_scores)
    out, scores = as_numpy(out), as_numpy(scores)
    if rows is not None:  # (batch, query) pairs to compare
        ours_out, out = ours_out[rows], out[rows]
        ours_scores = ours_scores.transpose(0, 2, 1, 3)[rows]
        scores = scores.transpose(0, 2, 1, 3)[rows]
    test.assertAllClose(ours_out, out, rtol=1e-5, atol=1e-5)
    test.assertAllClose(ours_scores, scores, rtol=1e-5, atol=1e-5)


def grouped_cross_attention():
    """A grouped-query layer (4 query heads, 2 key/value heads), a target sequence
    and an encoded sequence to attend to."""
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2)
    return layer, random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)


def reference_layer(layer, query, value, mask=None, is_causal=False):
    """NumPy forward pass of a built (biased) layer: projections and attention."""
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    q = np.einsum("btd,dnh->btnh", query, wq) + bq
    k = np.einsum("bsd,dnh->bsnh", value, wk) + bk
    v = np.einsum("bsd,dnh->bsnh", value, wv) + bv
    attended, scores = reference_attention(q, k, v, mask, is_causal)
    return np.einsum("btnh,nhd->btd", attended, wo) + bo, scores


# Grouped-query cross-attention in which every size differs from every other.
GROUPED_CROSS_ATTENTION = {
    "num_heads": 4,
    "key_dim": 3,
    "value_dim": 5,
    "num_key_value_heads": 2,
    "output_shape": 7,
}


class LayerContractTest(TestCase):
    """Keras' own layer harness: serialization, symbolic/eager calls, dtypes."""

    @parameterized.named_parameters(
        {
            "testcase_name": "self_attention",
            "init_kwargs": {"num_heads": 2, "key_dim": 4},
            "input_shape": {"query_shape": (2, 5, 8), "value_shape": (2, 5, 8)},
            "expected_output_shape": (2, 5, 8),
            "expected_num_trainable_weights": 8,
        },
        {
            "testcase_name": "grouped_cross_attention_without_bias",
            "init_kwargs": {
                **GROUPED_CROSS_ATTENTION,
                "use_bias": False,
                "dropout": 0.1,
            },
            "input_shape": {
                "query_shape": (2, 5, 8),
                "value_shape": (2, 3, 6),
                "key_shape": (2, 3, 4),
            },
            "expected_output_shape": (2, 5, 7),
            "expected_num_trainable_weights": 4,
        },
    )
    def test_layer_contract(self, **arguments):
        self.run_layer_test(
            MultiHeadAttention,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            # Keras' training check calls the layer with one positional input.
            run_training_check=False,
            **arguments,
        )

    def test_trains_in_a_compiled_model(self):
        query = keras.Input((5, 8))
        value = keras.Input((3, 6))
        output = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1)(
            query, value, use_causal_mask=True
        )
        model = keras.Model([query, value], output)
        model.compile(optimizer="sgd", loss="mse")
        # The key bias shifts every logit of a query equally: it gets no gradient.
        kernels = [w for w in model.weights if "kernel" in w.path]
        before = [as_numpy(w) for w in kernels]
        data = [random_sequences(4, 5, 8), random_sequences(4, 3, 6, seed=1)]
        model.fit(data, random_sequences(4, 5, 8, seed=2), epochs=1, verbose=0)
        self.assertLen(kernels, 4)
        for old, new in zip(before, kernels):
            self.assertFalse(np.allclose(old, as_numpy(new)), msg=new.path)


class ProjectionTest(TestCase):
    """q/k/v of one tensor may run as one product; LoRA must still be applied."""

    def test_lora_projections_match_merged_kernels(self):
        x, memory = random_sequences(2, 5, 8), random_sequences(2, 3, 8, seed=1)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        layer(x, x)
        merged = MultiHeadAttention(num_heads=2, key_dim=4)
        merged(x, x)
        merged.set_weights(layer.get_weights())
        for i, name in enumerate(("query", "key", "value")):
            projection = getattr(layer, name)
            projection.enable_lora(2)
            for j, weight in enumerate(
                (projection.lora_kernel_a, projection.lora_kernel_b)
            ):
                weight.assign(random_sequences(*weight.shape, seed=10 * i + j))
            # The kernel a LoRA projection computes with: base + scale * A·B.
            getattr(merged, name).kernel.assign(as_numpy(projection.kernel))
        for value in (x, memory):  # self-attention, then shared key/value
            self.assertAllClose(layer(x, value), merged(x, value), rtol=1e-5, atol=1e-5)


class KerasMultiHeadAttentionParityTest(TestCase):
    """Same outputs as `keras.layers.MultiHeadAttention` with the same weights."""

    def test_weights_have_keras_names_shapes_and_order(self):
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6)
        ours, theirs = keras_twin(query, value, num_heads=2, key_dim=4)
        self.assertEqual(
            [w.path.split("/", 1)[1] for w in ours.weights],
            [w.path.split("/", 1)[1] for w in theirs.weights],
        )
        self.assertEqual(
            [tuple(w.shape) for w in ours.weights],
            [tuple(w.shape) for w in theirs.weights],
        )

    def test_self_attention(self):
        x = random_sequences(2, 5, 8)
        ours, theirs = keras_twin(x, x, num_heads=2, key_dim=4)
        assert_same_outputs(self, ours, theirs, x, x)

    def test_cross_attention_with_separate_key(self):
        query = random_sequences(2, 5, 8)
        value = random_sequences(2, 3, 6, seed=1)
        key = random_sequences(2, 3, 4, seed=2)
        ours, theirs = keras_twin(query, value, key, num_heads=2, key_dim=4)
        assert_same_outputs(self, ours, theirs, query, value, key)

    def test_causal_mask(self):
        x = random_sequences(2, 5, 8)
        ours, theirs = keras_twin(x, x, num_heads=2, key_dim=4)
        assert_same_outputs(self, ours, theirs, x, x, use_causal_mask=True)

    def test_explicit_attention_mask(self):
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)
        mask = np.random.default_rng(3).random((2, 5, 3)) > 0.4
        mask[:, :, 0] = True  # every query sees a key: Keras and we agree there
        ours, theirs = keras_twin(query, value, num_heads=2, key_dim=4)
        assert_same_outputs(self, ours, theirs, query, value, attention_mask=mask)

    def test_attention_mask_and_causal_mask_together(self):
        x = random_sequences(2, 5, 8)
        mask = np.random.default_rng(3).random((2, 5, 5)) > 0.4
        mask[:, :, 0] = True
        ours, theirs = keras_twin(x, x, num_heads=2, key_dim=4)
        assert_same_outputs(
            self, ours, theirs, x, x, attention_mask=mask, use_causal_mask=True
        )

    def test_output_shape(self):
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)
        ours, theirs = keras_twin(query, value, num_heads=2, key_dim=4, output_shape=10)
        self.assertEqual(tuple(ours(query, value).shape), (2, 5, 10))
        assert_same_outputs(self, ours, theirs, query, value)

    def test_without_bias(self):
        x = random_sequences(2, 5, 8)
        ours, theirs = keras_twin(x, x, num_heads=2, key_dim=4, use_bias=False)
        self.assertLen(ours.weights, 4)
        assert_same_outputs(self, ours, theirs, x, x)

    def test_keras_masks_on_unpadded_queries(self):
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)
        query_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
        value_mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
        ours, theirs = keras_twin(query, value, num_heads=2, key_dim=4)
        assert_same_outputs(
            self,
            ours,
            theirs,
            query,
            value,
            query_mask=query_mask,
            value_mask=value_mask,
            rows=np.nonzero(query_mask),
        )

    def test_padded_queries_give_the_output_bias(self):
        # Keras averages every value for a padded query; we attend nothing, so
        # only the output projection's bias remains.
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)
        query_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
        ours, _ = keras_twin(query, value, num_heads=2, key_dim=4)
        out = as_numpy(ours(query, value, query_mask=query_mask))
        bias = as_numpy(ours.attention_output.bias)
        self.assertAllClose(out[1, 3:], np.stack([bias, bias]), rtol=0, atol=1e-6)


class NumpyReferenceTest(TestCase):
    """Where `keras.layers.MultiHeadAttention` cannot serve as the reference."""

    def test_value_dim_different_from_key_dim(self):
        # Keras' own layer fails on JAX with value_dim != key_dim.
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)
        layer = MultiHeadAttention(
            num_heads=2, key_dim=4, value_dim=3, bias_initializer="random_normal"
        )
        out, scores = layer(query, value, return_attention_scores=True)
        expected, expected_scores = reference_layer(layer, query, value)
        self.assertEqual(tuple(layer.value.kernel.shape), (6, 2, 3))
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(scores, expected_scores, rtol=1e-5, atol=1e-5)

    def test_value_dim_different_from_key_dim_with_causal_mask(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(
            num_heads=2, key_dim=4, value_dim=3, bias_initializer="random_normal"
        )
        out = layer(x, x, use_causal_mask=True)
        expected, _ = reference_layer(layer, x, x, is_causal=True)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)


class GroupQueryAttentionParityTest(TestCase):
    """Same outputs as `keras.layers.GroupQueryAttention` with the same weights."""

    def twins(self, num_key_value_heads):
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 8, seed=1)
        theirs = keras.layers.GroupQueryAttention(
            head_dim=4,
            num_query_heads=4,
            num_key_value_heads=num_key_value_heads,
            bias_initializer="random_normal",
        )
        ours = MultiHeadAttention(
            num_heads=4, key_dim=4, num_key_value_heads=num_key_value_heads
        )
        theirs(query, value)
        ours(query, value)
        # Keras keeps the projections in private attributes; map them by role.
        for mine, peer in (
            (ours.query, theirs._query_dense),
            (ours.key, theirs._key_dense),
            (ours.value, theirs._value_dense),
            (ours.attention_output, theirs._output_dense),
        ):
            self.assertEqual(
                [tuple(w.shape) for w in mine.weights],
                [tuple(w.shape) for w in peer.weights],
            )
            mine.set_weights(peer.get_weights())
        return ours, theirs, query, value

    @parameterized.named_parameters(("grouped", 2), ("multi_query", 1))
    def test_same_weights_in_the_same_order(self, num_key_value_heads):
        ours, theirs, _, _ = self.twins(num_key_value_heads)
        for mine, peer in zip(ours.get_weights(), theirs.get_weights()):
            self.assertAllEqual(mine, peer)

    @parameterized.named_parameters(("grouped", 2), ("multi_query", 1))
    def test_causal_self_attention(self, num_key_value_heads):
        ours, theirs, query, _ = self.twins(num_key_value_heads)
        assert_same_outputs(self, ours, theirs, query, query, use_causal_mask=True)

    @parameterized.named_parameters(("grouped", 2), ("multi_query", 1))
    def test_cross_attention_with_attention_mask(self, num_key_value_heads):
        ours, theirs, query, value = self.twins(num_key_value_heads)
        mask = np.random.default_rng(3).random((2, 5, 3)) > 0.4
        mask[:, :, 0] = True
        assert_same_outputs(self, ours, theirs, query, value, attention_mask=mask)


class KerasMaskTest(TestCase):
    """Masks of `Embedding(mask_zero=True)` reach the attention and pass on."""

    tokens = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]], "int32")
    padding = tokens != 0

    def embedded_model(self, **call_kwargs):
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
        attention = MultiHeadAttention(num_heads=2, key_dim=4)
        y = attention(x, x, **call_kwargs)
        return keras.Model(tokens, y), attention

    def test_padded_keys_get_zero_weight(self):
        model, _ = self.embedded_model(return_attention_scores=True)
        _, scores = model(self.tokens)
        scores = as_numpy(scores)
        self.assertAllEqual(scores[1, :, :3, 3:], np.zeros((2, 3, 2)))
        self.assertAllClose(
            np.sum(scores[1, :, :3], axis=-1), np.ones((2, 3)), atol=1e-6
        )

    def test_embedding_mask_equals_explicit_attention_mask(self):
        model, attention = self.embedded_model()
        out = as_numpy(model(self.tokens))
        embeddings = model.layers[1](self.tokens)
        mask = self.padding[:, None, :] & self.padding[:, :, None]
        expected = as_numpy(attention(embeddings, embeddings, attention_mask=mask))
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-6)

    def test_output_carries_the_query_mask(self):
        model, _ = self.embedded_model()
        self.assertAllEqual(
            as_numpy(model.layers[-1].compute_mask(None, self.padding)), self.padding
        )
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
        y = MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
        pooled = keras.layers.GlobalAveragePooling1D()(y)  # uses the mask
        model = keras.Model(tokens, [y, pooled])
        out, pooled = model(self.tokens)
        out = as_numpy(out)
        self.assertAllClose(pooled[1], np.mean(out[1, :3], axis=0), atol=1e-6)
        self.assertAllClose(pooled[0], np.mean(out[0], axis=0), atol=1e-6)

    def test_key_mask_of_a_separate_key_is_used(self):
        query = random_sequences(2, 5, 8)
        value = random_sequences(2, 3, 6, seed=1)
        key = random_sequences(2, 3, 6, seed=2)
        key_mask = np.array([[1, 1, 1], [1, 0, 0]], bool)
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        _, scores = layer(
            query, value, key, key_mask=key_mask, return_attention_scores=True
        )
        self.assertAllEqual(as_numpy(scores)[1, :, :, 1:], np.zeros((2, 5, 2)))


class KeyValueCacheTest(TestCase):
    """Cached decoding equals attention over the whole sequence."""

    def decode(self, layer, x, prefill=0, **call_kwargs):
        """Run `x` through `layer` with a cache: `prefill` steps, then one by one."""
        batch, length, _ = x.shape
        cache = layer.initialize_cache(batch, length)
        outputs = []
        steps = ([(0, prefill)] if prefill else []) + [
            (i, i + 1) for i in range(prefill, length)
        ]
        for start, end in steps:
            chunk = x[:, start:end]
            out, cache = layer(
                chunk, chunk, cache=cache, cache_update_index=start, **call_kwargs
            )
            outputs.append(as_numpy(out))
        return np.concatenate(outputs, axis=1), cache

    @parameterized.named_parameters(
        ("multi_head", 2, None), ("grouped", 4, 2), ("multi_query", 4, 1)
    )
    def test_one_token_at_a_time_equals_full_causal_attention(
        self, num_heads, num_key_value_heads
    ):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(
            num_heads=num_heads, key_dim=4, num_key_value_heads=num_key_value_heads
        )
        full = as_numpy(layer(x, x, use_causal_mask=True))
        cached, _ = self.decode(layer, x, use_causal_mask=True)
        self.assertAllClose(cached, full, rtol=1e-5, atol=1e-5)

    def test_prefill_then_one_token_at_a_time(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2)
        full = as_numpy(layer(x, x, use_causal_mask=True))
        cached, _ = self.decode(layer, x, prefill=3, use_causal_mask=True)
        self.assertAllClose(cached, full, rtol=1e-5, atol=1e-5)

    def test_cache_holds_projected_keys_and_values(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2)
        layer(x, x)
        _, cache = self.decode(layer, x, use_causal_mask=True)
        self.assertEqual(tuple(cache.shape), (2, 2, 5, 2, 4))
        self.assertAllClose(cache[:, 0], layer.key(x), rtol=1e-5, atol=1e-6)
        self.assertAllClose(cache[:, 1], layer.value(x), rtol=1e-5, atol=1e-6)

    def test_unwritten_cache_slots_are_ignored_without_causal_mask(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2)
        full = as_numpy(layer(x, x, use_causal_mask=True))
        cached, _ = self.decode(layer, x)
        self.assertAllClose(cached, full, rtol=1e-5, atol=1e-5)

    def test_with_rotary_embedding(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(
            num_heads=2,
            key_dim=4,
            num_key_value_heads=1,
            rotary_embedding=RotaryEmbedding(),
        )
        full = as_numpy(layer(x, x, use_causal_mask=True))
        cached, _ = self.decode(layer, x, prefill=2, use_causal_mask=True)
        self.assertAllClose(cached, full, rtol=1e-5, atol=1e-5)

    def test_precomputed_cache_equals_cross_attention(self):
        layer, target, encoded = grouped_cross_attention()
        expected = as_numpy(layer(target, encoded))
        cache = layer.precompute_cache(encoded)
        self.assertEqual(tuple(cache.shape), (2, 2, 3, 2, 4))
        out, returned_cache = layer(target, encoded, cache=cache)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(returned_cache, cache, rtol=0, atol=0)

    def test_precomputed_cache_needs_no_value(self):
        layer, target, encoded = grouped_cross_attention()
        expected, expected_scores = layer(target, encoded, return_attention_scores=True)
        cache = layer.precompute_cache(encoded)
        out, scores, _ = layer(target, cache=cache, return_attention_scores=True)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(scores, expected_scores, rtol=1e-5, atol=1e-6)

    def test_precomputed_cache_reused_one_token_at_a_time(self):
        layer, target, encoded = grouped_cross_attention()
        expected = as_numpy(layer(target, encoded))
        cache = layer.precompute_cache(encoded)
        steps = [
            as_numpy(layer(target[:, i : i + 1], encoded, cache=cache)[0])
            for i in range(5)
        ]
        self.assertAllClose(np.concatenate(steps, axis=1), expected, atol=1e-5)


class ImplementationTest(TestCase):
    """`implementation=` chooses the path of `dot_product_attention`."""

    @parameterized.named_parameters(
        ("automatic", None), *((name, name) for name in IMPLEMENTATIONS)
    )
    def test_implementation_reaches_the_attention_core(self, implementation):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(
            num_heads=2, key_dim=4, implementation=implementation
        )
        layer(x, x)  # built: the reference reads its weights
        expected, _ = reference_layer(layer, x, x, is_causal=True)
        with mock.patch.object(
            multi_head_attention, "dot_product_attention", wraps=dot_product_attention
        ) as core:
            out = layer(x, x, use_causal_mask=True)
        self.assertEqual(core.call_args.kwargs["implementation"], implementation)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    def test_calls_with_scores_take_the_math_path(self):
        # Only the math path computes scores; a configured path gives way.
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, implementation="chunked")
        layer(x, x)
        expected, expected_scores = reference_layer(layer, x, x)
        out, scores = layer(x, x, return_attention_scores=True)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(scores, expected_scores, rtol=1e-5, atol=1e-6)

    def test_implementation_is_in_the_config(self):
        layer = MultiHeadAttention(num_heads=2, key_dim=4, implementation="chunked")
        restored = MultiHeadAttention.from_config(layer.get_config())
        self.assertEqual(restored.implementation, "chunked")


class SymbolicShapeTest(TestCase):
    def test_cross_attention_scores_are_batch_heads_queries_keys(self):
        query = keras.Input((7, 16))
        value = keras.Input((5, 12))
        out, scores = MultiHeadAttention(num_heads=3, key_dim=4)(
            query, value, return_attention_scores=True
        )
        self.assertEqual(tuple(out.shape), (None, 7, 16))
        self.assertEqual(tuple(scores.shape), (None, 3, 7, 5))

    def test_output_shape_and_unknown_lengths(self):
        query = keras.Input((None, 8))
        value = keras.Input((None, 6))
        out, scores = MultiHeadAttention(num_heads=2, key_dim=4, output_shape=6)(
            query, value, return_attention_scores=True
        )
        self.assertEqual(tuple(out.shape), (None, None, 6))
        self.assertEqual(tuple(scores.shape), (None, 2, None, None))

    def test_compute_output_shape_matches_keras(self):
        ours = MultiHeadAttention(num_heads=2, key_dim=4, output_shape=6)
        theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, output_shape=6)
        for query_shape, value_shape in (((2, 5, 8), (2, 3, 6)), ((None, 7, 8),) * 2):
            self.assertEqual(
                tuple(ours.compute_output_shape(query_shape, value_shape)),
                tuple(theirs.compute_output_shape(query_shape, value_shape)),
            )

    def test_symbolic_shapes_match_eager_shapes(self):
        layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=1)
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 6)
        out, scores = layer(query, value, return_attention_scores=True)
        spec_out, spec_scores = layer.compute_output_spec(
            keras.KerasTensor((2, 5, 8)),
            keras.KerasTensor((2, 3, 6)),
            return_attention_scores=True,
        )
        self.assertEqual(tuple(out.shape), tuple(spec_out.shape))
        self.assertEqual(tuple(scores.shape), tuple(spec_scores.shape))


class ValidationTest(TestCase):
    @parameterized.named_parameters(
        ("num_heads_zero", {"num_heads": 0}, "num_heads", "0"),
        ("num_heads_negative", {"num_heads": -2}, "num_heads", "-2"),
        ("key_dim_float", {"key_dim": 2.5}, "key_dim", "2.5"),
        ("key_dim_string", {"key_dim": "4"}, "key_dim", "'4'"),
        ("value_dim_zero", {"value_dim": 0}, "value_dim", "0"),
        (
            "heads_not_divisible_by_key_value_heads",
            {"num_heads": 4, "num_key_value_heads": 3},
            "num_heads",
            "4",
        ),
        ("dropout_negative", {"dropout": -0.1}, "dropout", "-0.1"),
        ("dropout_one", {"dropout": 1.0}, "dropout", "1.0"),
        ("output_shape_zero", {"output_shape": 0}, "output_shape", "0"),
        (
            "implementation_unknown",
            {"implementation": "flash"},
            "implementation",
            "'flash'",
        ),
    )
    def test_bad_constructor_argument_is_rejected(self, overrides, argument, value):
        arguments = {"num_heads": 2, "key_dim": 4, **overrides}
        with self.assertRaisesRegex(
            ValueError,
            rf"MultiHeadAttention.*`{argument}`.*received {re.escape(value)}",
        ):
            MultiHeadAttention(**arguments)

    def test_query_of_rank_2_is_rejected(self):
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        with self.assertRaisesRegex(
            ValueError, r"MultiHeadAttention.*`query`.*rank 3.*\(2, 8\)"
        ):
            layer(random_sequences(2, 8), random_sequences(2, 5, 8))

    def test_key_and_value_of_different_lengths_are_rejected(self):
        # As Keras' layer does; the core's paths would disagree on the result.
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 8)
        key = random_sequences(2, 4, 8)
        message = (
            r"MultiHeadAttention.*`key` and `value`.*must be equal in length.*"
            r"\(2, 4, 8\).*\(2, 3, 8\)"
        )
        with self.assertRaisesRegex(ValueError, message):
            layer(query, value, key)
        with self.assertRaisesRegex(ValueError, message):
            layer.compute_output_shape(query.shape, value.shape, key.shape)
        with self.assertRaisesRegex(ValueError, message):  # symbolic call
            inputs = [
                keras.Input(x.shape[1:], batch_size=2) for x in (query, value, key)
            ]
            layer(*inputs)

    def test_value_is_required_without_a_precomputed_cache(self):
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        x = random_sequences(2, 5, 8)
        layer(x, x)
        with self.assertRaisesRegex(
            ValueError, r"MultiHeadAttention.*`value`.*precomputed.*received None"
        ):
            layer(x)

    def test_float_attention_mask_is_rejected(self):
        # An additive mask (0 keep, -1e9 drop) would be inverted by a cast.
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        x = random_sequences(2, 5, 8)
        additive = np.where(np.tril(np.ones((5, 5))) > 0, 0.0, -1e9).astype("float32")
        with self.assertRaisesRegex(
            ValueError,
            r"MultiHeadAttention.*`attention_mask`.*boolean.*float32.*additive_mask",
        ):
            layer(x, x, attention_mask=additive)

    def test_attention_mask_that_does_not_broadcast_is_rejected(self):
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        query, value = random_sequences(2, 5, 8), random_sequences(2, 3, 8)
        with self.assertRaisesRegex(
            ValueError, r"MultiHeadAttention.*`attention_mask`.*\(2, 2, 5, 3\).*4\)"
        ):
            layer(query, value, attention_mask=np.ones((2, 5, 4), bool))


class MixedPrecisionTest(TestCase):
    def test_mixed_bfloat16_is_close_to_float32(self):
        x = random_sequences(2, 5, 8)
        keras.config.set_dtype_policy("mixed_bfloat16")
        layer = MultiHeadAttention(num_heads=2, key_dim=4)
        out = layer(x, x, use_causal_mask=True)
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        for weight in layer.weights:
            self.assertEqual(keras.backend.standardize_dtype(weight.dtype), "float32")
        keras.config.set_dtype_policy("float32")
        reference = MultiHeadAttention(num_heads=2, key_dim=4)
        reference(x, x)
        reference.set_weights(layer.get_weights())
        expected = as_float64(reference(x, x, use_causal_mask=True))
        # Every stage rounds to bfloat16 (inputs, q/k/v, weights, the attended
        # values, the output), and kernels without native bfloat16 (AVX2) round
        # partial sums too; each rounding errs by at most half an ulp of the
        # terms, which are of the output's size. Measured at the output scale:
        # 0.6-1.8 ulps with AVX-512 BF16 kernels, 2.4 with oneDNN's bfloat16
        # kernels off (TF_ENABLE_ONEDNN_OPTS=0, the AVX2 path); bound: 6.
        assert_close_in_ulps(
            out, expected, "bfloat16", ulps=6, magnitude=np.abs(expected).max()
        )

    def test_mixed_bfloat16_scores_are_bfloat16_and_sum_to_one(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, dtype="mixed_bfloat16")
        _, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
        self.assertEqual(keras.backend.standardize_dtype(scores.dtype), "bfloat16")
        totals = np.sum(as_float64(scores), axis=-1)
        # Each weight is one bfloat16 rounding of a float32 softmax weight (at
        # most u * w, u = 2**-8), so the sum errs by at most u = half an ulp of
        # 1.0, plus the float32 softmax's own roundings (a few 2**-24).
        assert_close_in_ulps(totals, np.ones_like(totals), "bfloat16", ulps=0.51)


class SavingTest(TestCase):
    def assert_round_trip(self, model, inputs):
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertAllClose(
            restored.predict(inputs, verbose=0),
            model.predict(inputs, verbose=0),
            rtol=0,
            atol=0,
        )

    def test_keras_file_round_trip(self):
        query = keras.Input((5, 8))
        value = keras.Input((3, 6))
        output = MultiHeadAttention(
            **GROUPED_CROSS_ATTENTION, bias_initializer="random_normal"
        )(query, value)
        model = keras.Model([query, value], output)
        self.assert_round_trip(
            model, [random_sequences(2, 5, 8), random_sequences(2, 3, 6, seed=1)]
        )

    def test_keras_file_round_trip_with_rotary_embedding(self):
        x = keras.Input((5, 8))
        output = MultiHeadAttention(
            num_heads=2,
            key_dim=4,
            rotary_embedding=RotaryEmbedding(),
        )(x, x, use_causal_mask=True)
        model = keras.Model(x, output)
        self.assert_round_trip(model, random_sequences(2, 5, 8))


class DropoutTest(TestCase):
    def test_dropout_only_when_training(self):
        x = random_sequences(2, 5, 8)
        layer = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=1)
        plain = MultiHeadAttention(num_heads=2, key_dim=4)
        plain(x, x)
        layer(x, x)
        plain.set_weights(layer.get_weights())
        expected = as_numpy(plain(x, x))
        self.assertAllClose(layer(x, x, training=False), expected, atol=1e-6)
        dropped = as_numpy(layer(x, x, training=True))
        self.assertGreater(np.max(np.abs(dropped - expected)), 1e-2)
