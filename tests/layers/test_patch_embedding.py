import os

import keras
import numpy as np
import pytest
import torch
from keras.src.testing import TestCase

from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.patch_embedding import with_diagonal_shifts


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_patches(images, patch_size):
    """(B, H, W, C) -> (B, N, ph * pw * C), patches row by row, each (ph, pw, C)."""
    batch, height, width, channels = images.shape
    ph, pw = patch_size
    x = images.reshape(batch, height // ph, ph, width // pw, pw, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, gh, gw, ph, pw, C)
    return x.reshape(batch, -1, ph * pw * channels)


def torch_resample(table, old_grid, new_grid):
    """Reference grid resize: class token row kept, grid through torch bicubic."""
    grid = torch.from_numpy(table[1:].reshape(1, *old_grid, -1)).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(
        grid, size=new_grid, mode="bicubic", align_corners=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(-1, table.shape[-1]).numpy()
    return np.concatenate([table[:1], grid], axis=0)


def numpy_reference(layer, images, positions=None):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.projection.weights)
    tokens = numpy_patches(images, layer.patch_size) @ kernel.reshape(
        -1, kernel.shape[-1]
    )
    tokens = tokens + bias  # (B, N, D)
    if layer.use_class_token:
        token = keras.ops.convert_to_numpy(layer.class_token)
        token = np.broadcast_to(token, (images.shape[0], 1, tokens.shape[-1]))
        tokens = np.concatenate([token, tokens], axis=1)
    if positions is not None:
        tokens = tokens + positions
    return tokens


def numpy_shifted(images, rows, columns):
    """Pixel (y, x) of the copy for (dy, dx) is images[y + dy*rows, x + dx*columns]."""
    _, height, width, _ = images.shape
    copies = [images]
    for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        copy = np.zeros_like(images)
        for y in range(height):
            for x in range(width):
                source_y, source_x = y + dy * rows, x + dx * columns
                if 0 <= source_y < height and 0 <= source_x < width:
                    copy[:, y, x] = images[:, source_y, source_x]
        copies.append(copy)
    return np.concatenate(copies, axis=-1)


def randomize(layer):
    """Non-zero class token and positions, so the reference can tell them apart."""
    for i, weight in enumerate(layer.weights):
        weight.assign(random(weight.shape, seed=10 + i))
    return layer


class PatchEmbeddingTest(TestCase):
    def test_layer_behaviour(self):
        self.run_layer_test(
            PatchEmbedding,
            init_kwargs={"patch_size": 4, "hidden_dim": 6},
            input_shape=(2, 8, 12, 3),
            expected_output_shape=(2, 7, 6),
            expected_num_trainable_weights=4,
        )

    def test_layer_behaviour_sinusoidal_without_class_token(self):
        self.run_layer_test(
            PatchEmbedding,
            init_kwargs={
                "patch_size": (2, 4),
                "hidden_dim": 6,
                "use_class_token": False,
                "position_embedding": "sinusoidal",
            },
            input_shape=(2, 4, 8, 3),
            expected_output_shape=(2, 4, 6),
            expected_num_trainable_weights=2,
        )

    def test_stable_weight_names(self):
        layer = PatchEmbedding(4, 6, name="patches")
        layer.build((None, 8, 8, 3))
        self.assertEqual(
            [w.path for w in layer.weights],
            [
                "patches/class_token",
                "patches/position_embedding",
                "patches/projection/kernel",
                "patches/projection/bias",
            ],
        )
        self.assertEqual(layer.projection.kernel.shape, (4, 4, 3, 6))
        self.assertEqual(layer.position_table.shape, (1 + 4, 6))

    def test_class_token_starts_at_zero(self):
        layer = PatchEmbedding(4, 6)
        layer.build((None, 8, 8, 3))
        self.assertAllEqual(layer.class_token, np.zeros((1, 1, 6)))

    def test_matches_numpy_reference(self):
        layer = PatchEmbedding((2, 3), 5)
        layer.build((None, 4, 9, 2))
        randomize(layer)
        images = random((2, 4, 9, 2))
        table = keras.ops.convert_to_numpy(layer.position_table)
        expected = numpy_reference(layer, images, positions=table)
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_diagonal_shifts_match_numpy(self):
        images = random((2, 5, 6, 2))
        self.assertAllClose(
            with_diagonal_shifts(images, (1, 2)), numpy_shifted(images, 1, 2)
        )

    def test_shifted_patches_match_numpy_reference(self):
        layer = PatchEmbedding((2, 4), 5, shifted_patches=True)
        layer.build((None, 4, 8, 3))
        self.assertEqual(layer.projection.kernel.shape, (2, 4, 15, 5))
        randomize(layer)
        images = random((2, 4, 8, 3))
        table = keras.ops.convert_to_numpy(layer.position_table)
        # Half a patch: one row and two columns.
        expected = numpy_reference(layer, numpy_shifted(images, 1, 2), table)
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_layer_behaviour_shifted_patches(self):
        self.run_layer_test(
            PatchEmbedding,
            init_kwargs={"patch_size": 2, "hidden_dim": 6, "shifted_patches": True},
            input_shape=(2, 4, 6, 1),
            expected_output_shape=(2, 7, 6),
            expected_num_trainable_weights=4,
        )

    def test_other_image_size_resamples_positions_bicubically(self):
        layer = PatchEmbedding(2, 4)
        layer.build((None, 6, 8, 3))  # grid (3, 4)
        randomize(layer)
        images = random((1, 10, 6, 3))  # grid (5, 3)
        table = keras.ops.convert_to_numpy(layer.position_table)
        positions = torch_resample(table, (3, 4), (5, 3))
        expected = numpy_reference(layer, images, positions=positions)
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_dynamic_image_size_matches_eager_call(self):
        layer = PatchEmbedding(2, 4)
        layer.build((None, 4, 4, 3))
        randomize(layer)
        inputs = keras.Input((None, None, 3))
        outputs = layer(inputs)
        self.assertEqual(outputs.shape, (None, None, 4))
        model = keras.Model(inputs, outputs)
        for size in [(4, 4), (6, 8)]:
            images = random((2, *size, 3))
            out = model.predict(images, verbose=0)
            self.assertAllClose(out, layer(images), atol=1e-5)

    @pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="only TensorFlow graphs have dimensions unknown at trace time",
    )
    def test_unknown_sizes_in_tensorflow_graph(self):
        import tensorflow as tf

        layer = PatchEmbedding(2, 4)
        layer.build((None, 4, 4, 3))
        randomize(layer)
        embed = tf.function(
            layer, input_signature=[tf.TensorSpec((None, None, None, 3))]
        )
        for size in [(4, 4), (6, 8)]:
            images = random((2, *size, 3))
            self.assertAllClose(embed(images), layer(images), atol=1e-5)

    def test_without_class_token(self):
        layer = PatchEmbedding(4, 6, use_class_token=False, position_embedding=None)
        layer.build((None, 8, 12, 3))
        randomize(layer)
        images = random((2, 8, 12, 3))
        self.assertEqual([w.name for w in layer.weights], ["kernel", "bias"])
        self.assertAllClose(layer(images), numpy_reference(layer, images), atol=1e-5)

    def test_without_position_embedding(self):
        layer = PatchEmbedding(4, 6, position_embedding=None)
        layer.build((None, 8, 8, 3))
        randomize(layer)
        images = random((1, 8, 8, 3))
        self.assertLen(layer.weights, 3)
        self.assertAllClose(layer(images), numpy_reference(layer, images), atol=1e-5)

    def test_sinusoidal_positions_cover_the_flat_sequence(self):
        layer = PatchEmbedding(2, 4, position_embedding="sinusoidal")
        layer.build((None, 4, 4, 3))
        randomize(layer)
        images = random((1, 4, 4, 3))
        angles = np.arange(5)[:, None] / 10000.0 ** (np.arange(0, 4, 2) / 4)
        positions = np.stack([np.sin(angles), np.cos(angles)], -1).reshape(5, 4)
        expected = numpy_reference(layer, images, positions=positions)
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_saved_model_restores_weights(self):
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, PatchEmbedding(4, 6)(inputs))
        randomize(model.layers[-1])
        images = random((2, 8, 8, 3))
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        self.assertAllClose(restored.predict(images, verbose=0), model(images))

    def test_output_in_compute_dtype_weights_in_float32(self):
        layer = PatchEmbedding(4, 6, dtype="mixed_bfloat16")
        out = layer(random((1, 8, 12, 3)))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        self.assertEqual({w.dtype for w in layer.weights}, {"float32"})

    def test_indivisible_image_raises(self):
        layer = PatchEmbedding(4, 6, name="patches")
        with self.assertRaisesRegex(
            ValueError,
            "PatchEmbedding 'patches'.*`images width`.*divisible by patch_size "
            r"\(4\); received 10",
        ):
            layer(random((1, 8, 10, 3)))

    def test_unknown_size_at_build_raises(self):
        with self.assertRaisesRegex(
            ValueError, "`images` must have a static height.*received shape"
        ):
            PatchEmbedding(4, 6)(keras.Input((None, None, 3)))

    def test_wrong_rank_raises(self):
        with self.assertRaisesRegex(ValueError, "`images` must have rank 4"):
            PatchEmbedding(4, 6)(random((8, 8, 3)))

    def test_bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "`patch_size`.*received \\(4, 0\\)"):
            PatchEmbedding((4, 0), 6)
        with self.assertRaisesRegex(ValueError, "`hidden_dim`.*received -6"):
            PatchEmbedding(4, -6)
        with self.assertRaisesRegex(
            ValueError, "`position_embedding` must be one of.*received 'rope'"
        ):
            PatchEmbedding(4, 6, position_embedding="rope")
        with self.assertRaisesRegex(ValueError, "`hidden_dim`.*divisible by two"):
            PatchEmbedding(4, 5, position_embedding="sinusoidal")
        with self.assertRaisesRegex(ValueError, "`shifted_patches`.*True or False"):
            PatchEmbedding(4, 6, shifted_patches="yes")
        with self.assertRaisesRegex(
            ValueError, "`patch_size`.*at least 2 pixels.*received \\(1, 4\\)"
        ):
            PatchEmbedding((1, 4), 6, shifted_patches=True)
