import math
import os

import keras
import numpy as np
import pytest

from keras_attn.layers.relative_position_bias import RelativePositionBias
from keras_attn.ops import dot_product_attention
from tests._keras_private import TestCase
from tests.gradients import gradients
from tests.layers.test_alibi_bias import numpy_biased_attention


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_t5_buckets(offsets, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's `_relative_position_bucket` in NumPy, float32 logarithm as in T5.

    `offsets` are `key_position - query_position`.
    """
    offsets = np.asarray(offsets, "int64")
    buckets = np.zeros_like(offsets)
    if bidirectional:
        num_buckets //= 2
        buckets += (offsets > 0) * num_buckets
        distance = np.abs(offsets)
    else:
        distance = -np.minimum(offsets, 0)
    exact = num_buckets // 2
    # Distance 0 would be log(0); it is among the exact buckets, whatever `far` says.
    ratio = np.log(np.maximum(distance, 1).astype("float32") / np.float32(exact))
    scaled = ratio / np.float32(math.log(max_distance / exact))
    far = exact + (scaled * np.float32(num_buckets - exact)).astype("int64")
    far = np.minimum(far, num_buckets - 1)
    return buckets + np.where(distance < exact, distance, far)


def numpy_swin_index(height, width):
    """Swin's `relative_position_index`, pair by pair: `(N, N)`."""
    tokens = [(y, x) for y in range(height) for x in range(width)]  # row-major
    index = np.zeros((len(tokens), len(tokens)), "int64")
    for i, (yi, xi) in enumerate(tokens):
        for j, (yj, xj) in enumerate(tokens):
            index[i, j] = (yi - yj + height - 1) * (2 * width - 1) + (
                xi - xj + width - 1
            )
    return index


def bucket_revealing_table(rows, num_heads):
    """A table whose entry (row, head) is `row + 1000 * head`."""
    return (np.arange(rows)[:, None] + 1000.0 * np.arange(num_heads)).astype("float32")


def built(layer, *args, **kwargs):
    layer(*args, **kwargs)
    return layer


class RelativePositionBiasTest(TestCase):
    def test_layer_behaviour_sequences(self):
        self.run_layer_test(
            RelativePositionBias,
            init_kwargs={"num_heads": 4, "num_buckets": 16, "max_distance": 20},
            input_shape=(2, 5, 8),
            expected_output_shape=(1, 4, 5, 5),
            expected_output_dtype="float32",
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_layer_behaviour_windows(self):
        self.run_layer_test(
            RelativePositionBias,
            init_kwargs={"num_heads": 3, "window_size": (2, 3)},
            input_shape=(4, 6, 8),
            expected_output_shape=(1, 3, 6, 6),
            expected_output_dtype="float32",
            expected_num_trainable_weights=1,
            supports_masking=True,
        )

    def test_table_shapes(self):
        x = np.zeros((1, 6, 2), "float32")
        layer = built(RelativePositionBias(4, num_buckets=24), x)
        self.assertEqual(tuple(layer.embeddings.shape), (24, 4))
        layer = built(RelativePositionBias(2, window_size=(2, 3)), x)
        self.assertEqual(tuple(layer.embeddings.shape), (3 * 5, 2))

    def test_t5_buckets_match_numpy(self):
        length = 300  # offsets -299 .. 299, beyond max_distance
        offsets = np.arange(length)[None, :] - np.arange(length)[:, None]  # (T, S)
        for kwargs in [
            {},
            {"bidirectional": False},
            {"num_buckets": 16, "max_distance": 20},
            {"num_buckets": 8, "max_distance": 64, "bidirectional": False},
        ]:
            layer = built(RelativePositionBias(2, **kwargs), np.zeros((1, 2, 1)))
            table = bucket_revealing_table(layer.num_buckets, 2)
            layer.set_weights([table])
            bias = keras.ops.convert_to_numpy(layer(np.zeros((1, length, 1))))
            expected = numpy_t5_buckets(offsets, **kwargs)
            self.assertAllClose(bias[0, 0], expected, atol=0, msg=str(kwargs))
            self.assertAllClose(bias[0, 1], expected + 1000, atol=0, msg=str(kwargs))

    def test_t5_buckets_match_hugging_face_t5(self):
        t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
        import torch

        offsets = np.arange(-200, 200)
        for bidirectional in [True, False]:
            theirs = t5.T5Attention._relative_position_bucket(
                torch.tensor(offsets), bidirectional=bidirectional
            ).numpy()
            layer = built(
                RelativePositionBias(1, bidirectional=bidirectional),
                np.zeros((1, 1, 1)),
            )
            layer.set_weights([bucket_revealing_table(32, 1)])
            bias = layer(
                np.zeros((1, 1, 1)), key=np.zeros((1, 400, 1)), start_index=200
            )
            self.assertAllClose(bias[0, 0, 0], theirs, atol=0)

    def test_swin_index_matches_numpy(self):
        for window_size, (height, width) in [
            ((2, 3), (2, 3)),
            (4, (4, 4)),
            ((7, 7), (7, 7)),
        ]:
            layer = RelativePositionBias(2, window_size=window_size)
            windows = np.zeros((3, height * width, 4), "float32")
            built(layer, windows)
            table = bucket_revealing_table((2 * height - 1) * (2 * width - 1), 2)
            layer.set_weights([table])
            bias = keras.ops.convert_to_numpy(layer(windows))
            expected = table[numpy_swin_index(height, width)]  # (N, N, H)
            self.assertAllClose(bias[0], np.moveaxis(expected, -1, 0), atol=0)

    def test_decoding_step_matches_a_row_of_the_full_bias(self):
        x = random((1, 12, 4))
        layer = RelativePositionBias(2, bidirectional=False)
        full = layer(x)
        step = layer(x[:, 9:10], key=x[:, :10], start_index=9)
        self.assertEqual(tuple(step.shape), (1, 2, 1, 10))
        self.assertAllClose(step, full[:, :, 9:10, :10], atol=0)

    def test_batched_positions_give_one_bias_per_example(self):
        positions = np.array([[0, 1, 2, 0, 1, 2], [3, 4, 5, 6, 7, 8]])
        x = random((2, 6, 4))
        layer = RelativePositionBias(3, num_buckets=8, max_distance=16)
        bias = layer(x, positions=positions)
        self.assertEqual(tuple(bias.shape), (2, 3, 6, 6))
        table = keras.ops.convert_to_numpy(layer.embeddings)
        for example in range(2):
            p = positions[example]
            expected = table[numpy_t5_buckets(p[None] - p[:, None], True, 8, 16)]
            self.assertAllClose(bias[example], np.moveaxis(expected, -1, 0), atol=0)

    def test_attention_with_the_bias_matches_numpy(self):
        query, key, value = (random((2, 10, 4, 8), seed) for seed in range(3))
        for kwargs, is_causal in [
            ({"num_buckets": 8, "max_distance": 6}, False),
            ({"bidirectional": False}, True),
        ]:
            layer = RelativePositionBias(4, initializer="random_normal", **kwargs)
            bias = layer(query)
            expected = numpy_biased_attention(
                query, key, value, keras.ops.convert_to_numpy(bias), is_causal
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

    def test_window_attention_with_the_bias_matches_numpy(self):
        windows = random((5, 6, 2, 8))  # (B * windows, Wh * Ww, H, D)
        layer = RelativePositionBias(2, window_size=(2, 3), initializer="random_normal")
        bias = layer(windows)
        expected = numpy_biased_attention(
            windows, windows, windows, keras.ops.convert_to_numpy(bias)
        )
        for implementation in ["math", "chunked"]:
            out = dot_product_attention(
                windows,
                windows,
                windows,
                bias=bias,
                implementation=implementation,
                chunk_size=4,
            )
            self.assertAllClose(out, expected, atol=1e-5)

    def test_table_gradient_through_chunked_attention(self):
        query, key, value = (random((1, 9, 2, 4), seed) for seed in range(3))
        weights = random((1, 9, 2, 4), seed=3)
        for init_kwargs, x in [
            ({"num_buckets": 8, "max_distance": 10}, query),
            ({"window_size": 3}, query),
        ]:
            layer = built(RelativePositionBias(2, **init_kwargs), x)

            def loss(table, implementation, layer=layer, x=x):
                bias, _ = layer.stateless_call([table], [], x)
                out = dot_product_attention(
                    query,
                    key,
                    value,
                    bias=bias,
                    implementation=implementation,
                    chunk_size=4,
                )
                return keras.ops.sum(keras.ops.multiply(out, weights))

            table = keras.ops.convert_to_numpy(layer.embeddings)
            (chunked,) = gradients(lambda t: loss(t, "chunked"), table)
            (math_path,) = gradients(lambda t: loss(t, "math"), table)
            self.assertGreater(np.abs(chunked).max(), 1e-3)
            self.assertAllClose(chunked, math_path, atol=1e-5)

    def test_symbolic_call_gives_the_bias_shape(self):
        x = keras.Input((None, 16))
        self.assertEqual(tuple(RelativePositionBias(4)(x).shape), (1, 4, None, None))
        positions = keras.Input((None,), dtype="int32", batch_size=3)
        bias = RelativePositionBias(4)(x, positions=positions)
        self.assertEqual(tuple(bias.shape), (3, 4, None, None))
        windows = keras.Input((49, 96))
        bias = RelativePositionBias(3, window_size=7)(windows)
        self.assertEqual(tuple(bias.shape), (1, 3, 49, 49))
        self.assertEqual(bias.dtype, "float32")

    def test_bias_and_table_are_float32_under_mixed_precision(self):
        layer = RelativePositionBias(2, dtype="mixed_bfloat16")
        bias = layer(random((1, 4, 8)))
        self.assertEqual(keras.backend.standardize_dtype(bias.dtype), "float32")
        self.assertEqual(
            keras.backend.standardize_dtype(layer.embeddings.dtype), "float32"
        )
        table = keras.ops.convert_to_numpy(layer.embeddings)
        offsets = np.arange(4)[None] - np.arange(4)[:, None]
        expected = np.moveaxis(table[numpy_t5_buckets(offsets)], -1, 0)
        self.assertAllClose(bias[0], expected, atol=0)

    def test_keras_file_round_trip(self):
        for init_kwargs, shape in [
            ({"num_buckets": 8, "max_distance": 12, "bidirectional": False}, (6, 8)),
            ({"window_size": (2, 3)}, (6, 8)),
        ]:
            x = keras.Input(shape)
            bias = RelativePositionBias(3, **init_kwargs)(x)
            model = keras.Model(x, [bias, keras.layers.Dense(4)(x)])
            path = os.path.join(self.get_temp_dir(), "relative.keras")
            keras.saving.save_model(model, path)
            restored = keras.saving.load_model(path)
            data = random((2,) + shape)
            for got, want in zip(
                restored.predict(data, verbose=0), model.predict(data, verbose=0)
            ):
                self.assertAllClose(got, want, atol=0)
            self.assertEqual(
                restored.layers[1].get_config(), model.layers[1].get_config()
            )

    def test_bad_arguments_raise(self):
        for kwargs, pattern in [
            ({"num_heads": 0}, r"`num_heads`.*positive integer; received 0"),
            ({"num_buckets": 0}, r"`num_buckets`.*positive integer; received 0"),
            ({"num_buckets": 3}, r"`num_buckets`.*at least 4 with.*received 3"),
            (
                {"num_buckets": 1, "bidirectional": False},
                r"`num_buckets`.*at least 2 without.*received 1",
            ),
            ({"max_distance": 0}, r"`max_distance`.*positive integer; received 0"),
            ({"max_distance": 8}, r"`max_distance`.*more than the 8 exact.*received 8"),
            ({"bidirectional": "yes"}, r"`bidirectional`.*True or False.*'yes'"),
            ({"window_size": (0, 3)}, r"`window_size`.*received \(0, 3\)"),
            ({"window_size": (2,)}, r"`window_size`.*received \(2,\)"),
            ({"window_size": "7"}, r"`window_size`.*received '7'"),
            ({"window_size": 7, "num_buckets": 64}, r"`num_buckets`.*default 32.*64"),
            ({"window_size": 7, "bidirectional": False}, r"`bidirectional`.*False"),
        ]:
            kwargs = {"num_heads": 2, **kwargs}
            with self.assertRaisesRegex(
                ValueError, "RelativePositionBias 'rpb'.*" + pattern, msg=str(kwargs)
            ):
                RelativePositionBias(**kwargs, name="rpb")

    def test_inputs_of_the_wrong_rank_raise(self):
        for layer in [RelativePositionBias(2), RelativePositionBias(2, window_size=2)]:
            with self.assertRaisesRegex(
                ValueError, r"`inputs.shape`.*rank 2 or more; received \(4,\)"
            ):
                layer(np.zeros((4,), "float32"))

    def test_windows_of_the_wrong_size_raise(self):
        layer = RelativePositionBias(2, window_size=(2, 3))
        with self.assertRaisesRegex(
            ValueError, r"`inputs` must hold the 6 tokens of a 2x3 window.*\(4, 5, 8\)"
        ):
            layer(np.zeros((4, 5, 8), "float32"))

    def test_positions_with_a_window_raise(self):
        layer = RelativePositionBias(2, window_size=2)
        x = np.zeros((1, 4, 8), "float32")
        for kwargs in [
            {"key": x},
            {"positions": np.arange(4)},
            {"key_positions": np.arange(4)},
            {"start_index": 3},
        ]:
            (argument,) = kwargs
            with self.assertRaisesRegex(ValueError, rf"`{argument}`.*`window_size`"):
                layer(x, **kwargs)
