import os

import keras
import keras_hub
import numpy as np
from absl.testing import parameterized

from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_encoder import TransformerEncoder
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask
from tests._keras_private import named_product


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

    def test_any_rank_from_two_has_sequence_on_axis_minus_two(self):
        layer, table = layer_with_table()
        for shape in [(6, 4), (3, 6, 4), (2, 3, 6, 4)]:
            out = layer(np.zeros(shape, "float32"), start_index=2)
            self.assertAllClose(out, np.broadcast_to(table[2:8], shape))

    def test_matches_keras_hub_position_embedding_with_copied_table(self):
        layer, _ = layer_with_table()
        theirs = keras_hub.layers.PositionEmbedding(10)
        theirs.build((None, 4))
        theirs.set_weights(layer.get_weights())
        for shape in [(6, 4), (3, 6, 4), (2, 3, 6, 4)]:
            inputs = np.zeros(shape, "float32")
            self.assertAllEqual(
                layer(inputs, start_index=3), theirs(inputs, start_index=3)
            )

    def test_start_index_selects_later_rows(self):
        layer, table = layer_with_table()
        out = layer(np.zeros((2, 3, 4), "float32"), start_index=7)
        self.assertAllClose(out[1], table[7:10])

    def test_start_index_may_be_a_tensor(self):
        layer, table = layer_with_table()
        start = keras.ops.convert_to_tensor(4, "int32")
        out = layer(np.zeros((1, 2, 4), "float32"), start_index=start)
        self.assertAllClose(out[0], table[4:6])

    def test_positions_take_those_rows_of_the_table(self):
        layer, table = layer_with_table()
        positions = np.array([[3, 1, 0, 2], [9, 9, 2, 3]])
        out = layer(np.zeros((2, 5, 4, 4), "float32"), positions=positions)
        expected = table[positions][:, None]  # (B, 1, T, D)
        self.assertAllEqual(out, np.broadcast_to(expected, (2, 5, 4, 4)))

    def test_batched_positions_need_a_batch_axis(self):
        layer, _ = layer_with_table()
        with self.assertRaisesRegex(ValueError, "`positions` must have rank 1;"):
            layer(np.zeros((2, 4), "float32"), positions=np.zeros((2, 2), "int32"))

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
        tokens = np.array([[3, 4, 0, 0]])
        embedded = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
        rows = PositionEmbedding(4)(embedded)
        self.assertAllEqual(get_keras_mask(rows), [[True, True, False, False]])

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

    def test_rank_one_raises(self):
        with self.assertRaisesRegex(
            ValueError, r"`inputs.shape` must be .*rank 2 or more; received \(8,\)"
        ):
            PositionEmbedding(4)(np.zeros((8,), "float32"))


POSITION_LAYERS = {
    "sinusoidal": SinusoidalPositionEmbedding,
    "learned": lambda: PositionEmbedding(sequence_length=16),
}


def documented_idiom(position_layer):
    """`tokens -> (embedded, encoded)`, written as both layers' docstrings show it.

    The same function builds a functional model from `keras.Input` and runs eagerly
    on arrays; its layers are created once, so both runs share the weights.
    """
    embedding = keras.layers.Embedding(1000, 64, mask_zero=True)
    encoder = TransformerEncoder(intermediate_dim=128, num_heads=4)

    def embed_and_encode(tokens):
        x = embedding(tokens)
        x = keras.layers.Add()([x, position_layer(x)])
        return x, encoder(x)

    return embed_and_encode


class DocumentedIdiomTest(TestCase, parameterized.TestCase):
    """`Add()([x, position_layer(x)])` keeps an `Embedding(mask_zero=True)` mask."""

    TOKENS = np.array([[11, 5, 273, 42, 7], [9, 64, 3, 8, 1]], "int32")
    PADDED = np.pad(TOKENS, ((0, 0), (0, 3)))  # three padding ids (0) appended

    @parameterized.named_parameters(
        named_product(layer=list(POSITION_LAYERS), mode=["functional", "eager"])
    )
    def test_padding_changes_nothing_and_mask_is_attached(self, layer, mode):
        embed_and_encode = documented_idiom(POSITION_LAYERS[layer]())
        if mode == "functional":
            tokens = keras.Input((None,), dtype="int32")
            embedded, encoded = embed_and_encode(tokens)
            self.assertIsNotNone(get_keras_mask(embedded))  # on the KerasTensor
            embed_and_encode = keras.Model(tokens, [embedded, encoded])
        _, encoded = embed_and_encode(self.TOKENS)
        embedded, padded_encoded = embed_and_encode(self.PADDED)
        self.assertAllEqual(get_keras_mask(embedded), self.PADDED != 0)
        # With the padding masked, a longer key axis can only regroup float32
        # sums (a few ulps of these unit-scale outputs); attending the padding
        # moves them by 0.4 to 0.9.
        self.assertAllClose(
            padded_encoded[:, : self.TOKENS.shape[1]], encoded, rtol=1e-5, atol=1e-5
        )

    def test_plus_operator_drops_the_mask_which_is_why_docs_use_add(self):
        # Keras propagates masks through layers, never through raw ops.
        embedded = keras.layers.Embedding(1000, 64, mask_zero=True)(self.PADDED)
        summed = embedded + SinusoidalPositionEmbedding()(embedded)
        self.assertIsNone(get_keras_mask(summed))
