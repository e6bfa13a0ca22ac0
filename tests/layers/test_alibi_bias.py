import math
import os
import warnings

import keras
import keras_hub
import numpy as np

from keras_attn.layers.alibi_bias import AlibiBias
from keras_attn.ops import dot_product_attention
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask
from tests.gradients import gradients


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def paper_slopes(num_heads, alibi_bias_max=8):
    """The slopes as the ALiBi paper's code computes them: a geometric sequence
    for a power of two, else that of the power below plus every other slope of
    twice as many heads."""

    def power_of_two(n):
        start = 2.0 ** (-alibi_bias_max / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return np.array(power_of_two(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    rest = paper_slopes(2 * closest, alibi_bias_max)[0::2][: num_heads - closest]
    return np.concatenate([power_of_two(closest), rest])


def numpy_alibi(num_heads, query_positions, key_positions, alibi_bias_max=8):
    """`-m_h * |q_i - k_j|`, float64 `(1 or B, H, T, S)`."""
    q = np.atleast_2d(np.asarray(query_positions, "float64"))  # (b, T)
    k = np.atleast_2d(np.asarray(key_positions, "float64"))  # (b, S)
    distance = np.abs(q[:, :, None] - k[:, None, :])  # (b, T, S)
    slopes = paper_slopes(num_heads, alibi_bias_max)
    return -slopes[None, :, None, None] * distance[:, None]


def numpy_biased_attention(query, key, value, bias, is_causal=False):
    """NumPy `softmax(QKᵀ/sqrt(D) + bias)V` in float64, `(B, T, H, D)`."""
    query, key, value = (np.asarray(x, "float64") for x in (query, key, value))
    logits = np.einsum("bthd,bshd->bhts", query, key) / np.sqrt(query.shape[-1])
    logits = logits + np.asarray(bias, "float64")
    if is_causal:
        causal = np.tril(np.ones(logits.shape[-2:], bool))
        logits = np.where(causal, logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", weights, value)


def attention(is_causal, implementation, **options):
    """`(q, k, v) -> dot_product_attention(...)` of one path, blocks of 4."""

    def attend(query, key, value):
        return dot_product_attention(
            query,
            key,
            value,
            is_causal=is_causal,
            implementation=implementation,
            chunk_size=4,
            **options,
        )

    return attend


class AlibiBiasTest(TestCase):
    def test_layer_behaviour(self):
        self.run_layer_test(
            AlibiBias,
            init_kwargs={"num_heads": 4, "alibi_bias_max": 6},
            input_shape=(2, 5, 8),
            expected_output_shape=(1, 4, 5, 5),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_takes_a_masked_sequence_and_returns_no_mask(self):
        tokens = np.array([[3, 4, 0, 0]])
        x = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Keras warns when a layer drops a mask
            bias = AlibiBias(2)(x)
        self.assertIsNone(get_keras_mask(bias))

    def test_matches_paper_slopes_for_any_number_of_heads(self):
        x = np.zeros((1, 9, 4), "float32")
        for num_heads in [1, 2, 3, 4, 5, 6, 8, 12, 16, 24]:
            for alibi_bias_max in [8, 4]:
                bias = AlibiBias(num_heads, alibi_bias_max=alibi_bias_max)(x)
                expected = numpy_alibi(num_heads, range(9), range(9), alibi_bias_max)
                self.assertAllClose(bias, expected, atol=1e-6, rtol=1e-6)

    def test_power_of_two_slopes_are_the_closed_form(self):
        bias = keras.ops.convert_to_numpy(AlibiBias(8)(np.zeros((1, 2, 1))))
        slopes = -bias[0, :, 1, 0]  # distance 1
        self.assertAllClose(slopes, 2.0 ** (-8 * np.arange(1, 9) / 8), rtol=1e-6)

    def test_non_power_of_two_slopes_interleave_those_of_twice_the_heads(self):
        bias = keras.ops.convert_to_numpy(AlibiBias(6)(np.zeros((1, 2, 1))))
        # 4 heads' slopes 2^-2, 2^-4, 2^-6, 2^-8, then 8 heads' 2^-1, 2^-3.
        expected = 2.0 ** -np.array([2, 4, 6, 8, 1, 3])
        self.assertAllClose(-bias[0, :, 1, 0], expected, rtol=1e-6)

    def test_matches_keras_hub_alibi_bias_on_the_keys_a_causal_query_sees(self):
        for num_heads in [4, 6]:
            scores = random((2, num_heads, 7, 7))
            theirs = keras_hub.layers.AlibiBias()(scores)
            hub_bias = keras.ops.convert_to_numpy(theirs) - scores  # (B, H, T, S)
            # keras-hub adds m_h * (j - (S - 1)) to every row; ours is m_h * (j - i)
            # on j <= i: the same up to a constant per row.
            ours = keras.ops.convert_to_numpy(AlibiBias(num_heads)(scores[:, 0]))
            row_constant = hub_bias - ours  # (B, H, T, S)
            causal = np.tril(np.ones((7, 7), bool))
            for head in range(num_heads):
                for row in range(7):
                    seen = row_constant[:, head, row][:, causal[row]]
                    self.assertAllClose(seen, np.full_like(seen, seen[0, 0]), atol=1e-5)

    def test_causal_attention_matches_keras_hub_biased_scores(self):
        query, key, value = (random((2, 9, 6, 8), seed) for seed in range(3))
        hub_bias = keras_hub.layers.AlibiBias()(np.zeros((1, 6, 9, 9), "float32"))
        expected = numpy_biased_attention(
            query, key, value, keras.ops.convert_to_numpy(hub_bias), is_causal=True
        )
        bias = AlibiBias(6)(query)
        for implementation in ["math", "chunked"]:
            out = dot_product_attention(
                query,
                key,
                value,
                is_causal=True,
                bias=bias,
                implementation=implementation,
                chunk_size=4,
            )
            self.assertAllClose(out, expected, atol=1e-5)

    def test_attention_with_the_bias_matches_numpy(self):
        query, key, value = (random((2, 10, 4, 8), seed) for seed in range(3))
        bias = AlibiBias(4)(query)
        expected_bias = numpy_alibi(4, range(10), range(10))
        for is_causal in [False, True]:
            expected = numpy_biased_attention(
                query, key, value, expected_bias, is_causal=is_causal
            )
            for implementation in ["math", "chunked"]:
                out = dot_product_attention(
                    query,
                    key,
                    value,
                    is_causal=is_causal,
                    bias=bias,
                    implementation=implementation,
                    chunk_size=4,
                )
                self.assertAllClose(out, expected, atol=1e-5)

    def test_score_mod_equals_the_bias_forward_and_gradients(self):
        # Grouped heads (4 query heads, 2 key-value heads), a length that does
        # not divide the block size, both paths, causal and bidirectional.
        query = random((2, 11, 4, 8), 0)
        key, value = random((2, 11, 2, 8), 1), random((2, 11, 2, 8), 2)
        weights = random(query.shape, 3)
        layer = AlibiBias(4)
        grouped = [np.repeat(x, 2, axis=2) for x in (key, value)]

        def weighted_gradients(attend):
            def loss(q, k, v):
                return keras.ops.sum(keras.ops.multiply(attend(q, k, v), weights))

            return gradients(loss, query, key, value)

        for is_causal in [False, True]:
            expected = numpy_biased_attention(
                query, *grouped, numpy_alibi(4, range(11), range(11)), is_causal
            )
            for implementation in ["math", "chunked"]:
                with self.subTest(is_causal=is_causal, implementation=implementation):
                    by_mod = attention(
                        is_causal, implementation, score_mod=layer.score_mod()
                    )
                    by_bias = attention(is_causal, implementation, bias=layer(query))
                    self.assertAllClose(by_mod(query, key, value), expected, atol=1e-5)
                    for mod_gradient, bias_gradient in zip(
                        weighted_gradients(by_mod), weighted_gradients(by_bias)
                    ):
                        self.assertAllClose(mod_gradient, bias_gradient, atol=1e-5)

    def test_bidirectional_bias_is_symmetric(self):
        bias = keras.ops.convert_to_numpy(AlibiBias(4)(np.zeros((1, 6, 2))))
        self.assertAllClose(bias, np.swapaxes(bias, -1, -2), atol=0)

    def test_decoding_step_matches_a_row_of_the_full_bias(self):
        x = random((1, 10, 8))
        full = AlibiBias(4)(x)
        step = AlibiBias(4)(x[:, 7:8], key=x[:, :8], start_index=7)
        self.assertEqual(tuple(step.shape), (1, 4, 1, 8))
        self.assertAllClose(step, full[:, :, 7:8, :8], atol=0)

    def test_start_index_may_be_a_tensor(self):
        x = random((1, 10, 8))
        start = keras.ops.convert_to_tensor(4, "int32")
        step = AlibiBias(2)(x[:, :2], key=x, start_index=start)
        self.assertAllClose(step, AlibiBias(2)(x)[:, :, 4:6], atol=0)

    def test_self_attention_ignores_start_index(self):
        x = random((1, 5, 8))
        self.assertAllClose(AlibiBias(2)(x, start_index=3), AlibiBias(2)(x), atol=0)

    def test_batched_positions_restart_per_packed_document(self):
        positions = np.array([[0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4, 5]])
        bias = AlibiBias(4)(random((2, 6, 8)), positions=positions)
        self.assertEqual(tuple(bias.shape), (2, 4, 6, 6))
        self.assertAllClose(bias, numpy_alibi(4, positions, positions), atol=1e-6)

    def test_key_positions(self):
        query_positions, key_positions = np.array([5, 6]), np.array([[0, 2, 4, 6]])
        bias = AlibiBias(2)(
            random((1, 2, 8)),
            key=random((1, 4, 8)),
            positions=query_positions,
            key_positions=key_positions,
        )
        expected = numpy_alibi(2, query_positions, key_positions)
        self.assertAllClose(bias, expected, atol=1e-6)

    def test_symbolic_call_gives_the_bias_shape(self):
        x = keras.Input((None, 16))
        self.assertEqual(tuple(AlibiBias(4)(x).shape), (1, 4, None, None))
        key = keras.Input((12, 16))
        self.assertEqual(tuple(AlibiBias(4)(x, key=key).shape), (1, 4, None, 12))
        positions = keras.Input((None,), dtype="int32", batch_size=3)
        bias = AlibiBias(4)(x, positions=positions)
        self.assertEqual(tuple(bias.shape), (3, 4, None, None))
        self.assertEqual(bias.dtype, "float32")

    def test_bias_is_float32_under_mixed_precision(self):
        bias = AlibiBias(2, dtype="mixed_bfloat16")(random((1, 4, 8)))
        self.assertEqual(keras.backend.standardize_dtype(bias.dtype), "float32")
        self.assertAllClose(bias, numpy_alibi(2, range(4), range(4)), atol=1e-6)

    def test_keras_file_round_trip(self):
        x = keras.Input((6, 8))
        model = keras.Model(x, [AlibiBias(3)(x), keras.layers.Dense(4)(x)])
        path = os.path.join(self.get_temp_dir(), "alibi.keras")
        keras.saving.save_model(model, path)
        restored = keras.saving.load_model(path)
        data = random((2, 6, 8))
        for got, want in zip(
            restored.predict(data, verbose=0), model.predict(data, verbose=0)
        ):
            self.assertAllClose(got, want, atol=0)
        self.assertEqual(restored.layers[1].get_config(), model.layers[1].get_config())

    def test_bad_num_heads_raises(self):
        for num_heads in [0, -2, 2.5, None]:
            with self.assertRaisesRegex(
                ValueError, rf"AlibiBias 'alibi_bias'.*`num_heads`.*{num_heads}"
            ):
                AlibiBias(num_heads, name="alibi_bias")

    def test_bad_alibi_bias_max_raises(self):
        with self.assertRaisesRegex(ValueError, r"`alibi_bias_max`.*positive.*-1"):
            AlibiBias(4, alibi_bias_max=-1)

    def test_inputs_of_rank_one_raise(self):
        with self.assertRaisesRegex(
            ValueError, r"`inputs.shape`.*rank 2 or more; received \(5,\)"
        ):
            AlibiBias(4)(np.zeros((5,), "float32"))
        with self.assertRaisesRegex(ValueError, r"`key.shape`.*received \(5,\)"):
            AlibiBias(4)(np.zeros((1, 5, 2)), key=np.zeros((5,)))

    def test_positions_of_the_wrong_shape_raise(self):
        x = np.zeros((1, 4, 2), "float32")
        with self.assertRaisesRegex(
            ValueError, r"`positions` must hold one position per step of `inputs` \(4\)"
        ):
            AlibiBias(4)(x, positions=np.arange(3))
        with self.assertRaisesRegex(ValueError, r"`positions` must have rank 1 or 2"):
            AlibiBias(4)(x, positions=np.zeros((1, 1, 4)))
        with self.assertRaisesRegex(
            ValueError, r"`key_positions` must hold one position per step of `key`"
        ):
            AlibiBias(4)(x, key=np.zeros((1, 6, 2)), key_positions=np.arange(4))
