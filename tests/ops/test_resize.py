"""`bicubic_resize` and `resample_position_grid` give PyTorch's bicubic numbers.

The reference is `torch.nn.functional.interpolate(mode="bicubic",
align_corners=False)` run on NumPy arrays, whatever the Keras backend, so passing on
every backend means the same numbers on every backend.
"""

import keras
import numpy as np
import pytest
import torch

from keras_attn.ops.resize import bicubic_resize
from keras_attn.ops.resize import resample_position_grid
from tests._keras_private import TestCase


def torch_bicubic(images, size):
    """Reference: channels-last NumPy images through PyTorch's bicubic resize."""
    x = torch.from_numpy(np.asarray(images, "float32")).permute(0, 3, 1, 2)
    y = torch.nn.functional.interpolate(
        x, size=tuple(size), mode="bicubic", align_corners=False
    )
    return y.permute(0, 2, 3, 1).numpy()


def random_images(shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


class BicubicResizeTest(TestCase):
    def test_upsampling_matches_torch(self):
        images = random_images((2, 5, 6, 3))
        out = bicubic_resize(images, (10, 12))
        self.assertAllClose(out, torch_bicubic(images, (10, 12)), atol=1e-5)

    def test_downsampling_matches_torch(self):
        images = random_images((2, 12, 10, 3))
        out = bicubic_resize(images, (5, 4))
        self.assertAllClose(out, torch_bicubic(images, (5, 4)), atol=1e-5)

    def test_non_square_mixed_up_and_down_matches_torch(self):
        images = random_images((1, 7, 9, 4))
        for size in [(5, 13), (20, 2)]:
            out = bicubic_resize(images, size)
            self.assertAllClose(out, torch_bicubic(images, size), atol=1e-5)

    def test_same_size_is_identity(self):
        images = random_images((2, 6, 7, 3))
        self.assertAllEqual(bicubic_resize(images, (6, 7)), images)

    def test_keeps_float_dtype(self):
        images = keras.ops.cast(random_images((1, 4, 4, 2)), "float16")
        out = bicubic_resize(images, (8, 8))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float16")

    def test_integer_images_give_float32(self):
        images = np.arange(16, dtype="int32").reshape(1, 4, 4, 1)
        out = bicubic_resize(images, (8, 8))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        self.assertAllClose(out, torch_bicubic(images, (8, 8)), atol=1e-4)

    def test_symbolic_input_with_unknown_size(self):
        inputs = keras.Input((None, None, 3))
        outputs = bicubic_resize(inputs, (6, 5))
        self.assertEqual(outputs.shape, (None, 6, 5, 3))
        model = keras.Model(inputs, outputs)
        images = random_images((2, 9, 4, 3))
        out = model.predict(images, verbose=0)
        self.assertAllClose(out, torch_bicubic(images, (6, 5)), atol=1e-5)

    @pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="only TensorFlow graphs have dimensions unknown at trace time",
    )
    def test_dynamic_sizes_in_tensorflow_graph(self):
        import tensorflow as tf

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, None, None, 3)),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((), tf.int32),
            ]
        )
        def resize(images, height, width):
            return bicubic_resize(images, (height, width))

        images = random_images((2, 6, 7, 3))
        out = resize(images, 9, 4)
        self.assertAllClose(out, torch_bicubic(images, (9, 4)), atol=1e-5)
        self.assertAllEqual(resize(images, 6, 7), images)

    def test_wrong_rank_raises(self):
        with self.assertRaisesRegex(ValueError, "bicubic_resize.*`images`.*rank 4"):
            bicubic_resize(np.zeros((4, 4, 3), "float32"), (8, 8))

    def test_bad_size_raises(self):
        images = np.zeros((1, 4, 4, 3), "float32")
        with self.assertRaisesRegex(ValueError, "bicubic_resize.*`size`.*pair"):
            bicubic_resize(images, 8)
        with self.assertRaisesRegex(ValueError, "`size`.*positive.*received"):
            bicubic_resize(images, (0, 8))


class ResamplePositionGridTest(TestCase):
    def make_table(self, prefix, grid, dim=8):
        rows = prefix + grid[0] * grid[1]
        return np.random.default_rng(1).normal(size=(1, rows, dim)).astype("float32")

    def reference(self, table, old_grid, new_grid, prefix):
        grid = table[:, prefix:].reshape(1, *old_grid, -1)
        grid = torch_bicubic(grid, new_grid).reshape(1, -1, table.shape[-1])
        return np.concatenate([table[:, :prefix], grid], axis=1)

    def test_resizes_grid_and_keeps_class_token_row(self):
        table = self.make_table(1, (3, 4))
        out = resample_position_grid(table, (3, 4), (6, 5))
        self.assertEqual(out.shape, (1, 1 + 30, 8))
        self.assertAllEqual(out[:, :1], table[:, :1])
        self.assertAllClose(out, self.reference(table, (3, 4), (6, 5), 1), atol=1e-5)

    def test_shrinks_grid(self):
        table = self.make_table(1, (8, 8))
        out = resample_position_grid(table, 8, 3)
        self.assertAllClose(out, self.reference(table, (8, 8), (3, 3), 1), atol=1e-5)

    def test_several_or_no_prefix_tokens(self):
        for prefix in (0, 3):
            table = self.make_table(prefix, (4, 4))
            out = resample_position_grid(table, 4, 6, num_prefix_tokens=prefix)
            expected = self.reference(table, (4, 4), (6, 6), prefix)
            self.assertAllClose(out, expected, atol=1e-5)

    def test_rank_2_table(self):
        table = self.make_table(1, (3, 3))
        out = resample_position_grid(table[0], 3, 5)
        self.assertEqual(out.shape, (26, 8))
        self.assertAllClose(out, self.reference(table, (3, 3), (5, 5), 1)[0], atol=1e-5)

    def test_equal_grids_return_table_unchanged(self):
        table = keras.ops.convert_to_tensor(self.make_table(1, (3, 4)))
        self.assertIs(resample_position_grid(table, (3, 4), (3, 4)), table)

    def test_table_of_wrong_length_raises(self):
        table = self.make_table(1, (3, 4))
        with self.assertRaisesRegex(
            ValueError, "resample_position_grid.*`table`.*17 rows.*received"
        ):
            resample_position_grid(table, (4, 4), (5, 5))

    def test_bad_arguments_raise(self):
        table = self.make_table(1, (3, 3))
        with self.assertRaisesRegex(ValueError, "`new_grid`.*received"):
            resample_position_grid(table, 3, (0, 3))
        with self.assertRaisesRegex(ValueError, "`num_prefix_tokens`.*received -1"):
            resample_position_grid(table, 3, 4, num_prefix_tokens=-1)
        with self.assertRaisesRegex(ValueError, "`table`.*rank 2 or 3"):
            resample_position_grid(table[0, 0], 3, 4)
