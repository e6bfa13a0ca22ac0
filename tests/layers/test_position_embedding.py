import os

import keras
import numpy as np
from keras.src.testing import TestCase

from keras_attn.layers.position_embedding import PositionEmbedding


def layer_with_table(sequence_length=10, dim=4, **kwargs):
    """A built layer whose table is `arange`, so each row is recognisable."""
    layer = PositionEmbedding(sequence_length, **kwargs)
    layer.build((None, None, dim))
    table = np.arange(sequence_length * dim, dtype="float32").reshape(-1, dim)
    layer.embeddings.assign(table)
    return layer, table


class PositionEmbeddingTest(TestCase):
    def test_layer_behaviour(self):
        self.run_layer_test(
            PositionEmbedding,
            init_kwargs={"sequence_length": 8, "initializer": "ones"},
            input_shape=(2, 5, 6),
            expected_output_shape=(2, 5, 6),
            expected_num_trainable_weights=1,
            supports_masking=True,
        )

    def test_table_shape_comes_from_inputs(self):
        layer = PositionEmbedding(12)
        layer.build((None, 3, 7))
        self.assertEqual(layer.embeddings.shape, (12, 7))
        self.assertEqual(layer.embeddings.path, "position_embedding/embeddings")

    def test_returns_first_rows_of_table_for_each_example(self):
        layer, table = layer_with_table()
        out = layer(np.zeros((3, 6, 4), "float32"))
        self.assertAllClose(out, np.broadcast_to(table[:6], (3, 6, 4)))

    def test_start_index_selects_later_rows(self):
        layer, table = layer_with_table()
        out = layer(np.zeros((2, 3, 4), "float32"), start_index=7)
        self.assertAllClose(out[1], table[7:10])

    def test_start_index_may_be_a_tensor(self):
        layer, table = layer_with_table()
        start = keras.ops.convert_to_tensor(4, "int32")
        out = layer(np.zeros((1, 2, 4), "float32"), start_index=start)
        self.assertAllClose(out[0], table[4:6])

    def test_dynamic_length_in_functional_model(self):
        layer, table = layer_with_table()
        inputs = keras.Input((None, 4))
        model = keras.Model(inputs, layer(inputs))
        out = model.predict(np.zeros((2, 7, 4), "float32"), verbose=0)
        self.assertAllClose(out[0], table[:7])

    def test_output_in_compute_dtype_table_in_float32(self):
        layer = PositionEmbedding(6, dtype="mixed_bfloat16")
        out = layer(np.zeros((1, 6, 4), "float32"))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        self.assertEqual(layer.embeddings.dtype, "float32")

    def test_mask_passes_through(self):
        mask = np.array([[True, False]])
        layer = PositionEmbedding(4)
        self.assertIs(layer.compute_mask(np.zeros((1, 2, 3)), mask), mask)

    def test_saved_model_restores_table(self):
        layer, table = layer_with_table()
        inputs = keras.Input((None, 4))
        model = keras.Model(inputs, layer(inputs))
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        self.assertAllClose(restored.layers[-1].embeddings, table)

    def test_sequence_longer_than_table_raises(self):
        layer = PositionEmbedding(8, name="pos")
        with self.assertRaisesRegex(
            ValueError,
            "PositionEmbedding 'pos'.*`inputs`.*`sequence_length`=8.*length 9",
        ):
            layer(np.zeros((1, 9, 4), "float32"))

    def test_start_index_past_table_raises(self):
        layer, _ = layer_with_table(sequence_length=8)
        with self.assertRaisesRegex(
            ValueError, "`sequence_length`=8.*`start_index`=6.*length 3"
        ):
            layer(np.zeros((1, 3, 4), "float32"), start_index=6)

    def test_negative_start_index_raises(self):
        layer, _ = layer_with_table()
        with self.assertRaisesRegex(ValueError, "`start_index`.*received -1"):
            layer(np.zeros((1, 3, 4), "float32"), start_index=-1)

    def test_bad_sequence_length_raises(self):
        with self.assertRaisesRegex(
            ValueError, "`sequence_length` must be a positive integer; received 0"
        ):
            PositionEmbedding(0)

    def test_wrong_rank_raises(self):
        with self.assertRaisesRegex(ValueError, "`inputs` must have rank 3"):
            PositionEmbedding(4)(np.zeros((4, 8), "float32"))
