import keras
import keras_hub
import numpy as np

from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from tests._keras_private import TestCase
from tests._keras_private import get_keras_mask


def numpy_encoding(length, dim, start=0, max_wavelength=10000.0):
    """PE(pos, 2i) = sin(pos / w^(2i/D)), PE(pos, 2i+1) = cos(...), in float64."""
    angles = numpy_angles(np.arange(start, start + length), dim, max_wavelength)
    encoding = np.zeros((length, dim))
    encoding[:, 0::2] = np.sin(angles)
    encoding[:, 1::2] = np.cos(angles)
    return encoding


def numpy_angles(positions, dim, max_wavelength=10000.0):
    i = np.arange(dim // 2)
    return positions[:, None] / max_wavelength ** (2 * i / dim)  # (T, D/2)


def bfloat16_ulp(x):
    """The spacing of bfloat16 numbers at `|x|`: 8 significant bits, so 2^(e - 7)."""
    with np.errstate(divide="ignore"):  # log2(0) = -inf gives an ulp of 0
        return 2.0 ** (np.floor(np.log2(np.abs(x))) - 7)


def encode(length, dim, start_index=0, **kwargs):
    layer = SinusoidalPositionEmbedding(**kwargs)
    inputs = np.zeros((1, length, dim), "float32")
    return keras.ops.convert_to_numpy(
        keras.ops.cast(layer(inputs, start_index=start_index), "float32")
    )[0]


class SinusoidalPositionEmbeddingTest(TestCase):
    def test_layer_behaviour(self):
        self.run_layer_test(
            SinusoidalPositionEmbedding,
            init_kwargs={"max_wavelength": 500},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=0,
            supports_masking=True,
        )

    def test_matches_formula(self):
        self.assertAllClose(encode(64, 16), numpy_encoding(64, 16), atol=1e-5)

    def test_custom_max_wavelength_matches_formula(self):
        expected = numpy_encoding(32, 12, max_wavelength=100.0)
        self.assertAllClose(encode(32, 12, max_wavelength=100), expected, atol=1e-5)

    def test_moving_by_k_rotates_each_frequency_pair_by_k_omega(self):
        dim = 16
        encoding = encode(96, dim)  # (T, D)
        omega = 1.0 / 10000.0 ** (2 * np.arange(dim // 2) / dim)  # (D/2,)
        positions = np.arange(48)
        for k in (1, 2, 3, 5, 8, 13, 21, 34, 47):
            sin, cos = encoding[positions, 0::2], encoding[positions, 1::2]
            turn_cos, turn_sin = np.cos(k * omega), np.sin(k * omega)
            # [sin(a+b), cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] [sin a, cos a]
            moved_sin = turn_cos * sin + turn_sin * cos
            moved_cos = -turn_sin * sin + turn_cos * cos
            self.assertAllClose(encoding[positions + k, 0::2], moved_sin, atol=1e-5)
            self.assertAllClose(encoding[positions + k, 1::2], moved_cos, atol=1e-5)

    def test_start_index_gives_slice_of_longer_encoding(self):
        full = encode(40, 8)
        self.assertAllClose(encode(7, 8, start_index=30), full[30:37], atol=1e-6)

    def test_start_index_may_be_a_tensor(self):
        start = keras.ops.convert_to_tensor(5, "int32")
        self.assertAllClose(encode(3, 8, start_index=start), encode(8, 8)[5:])

    def test_any_rank_from_two_has_sequence_on_axis_minus_two(self):
        expected = numpy_encoding(6, 4)  # (T, D)
        for shape in [(6, 4), (3, 6, 4), (2, 3, 6, 4)]:
            out = SinusoidalPositionEmbedding()(np.ones(shape, "float32"))
            self.assertAllClose(out, np.broadcast_to(expected, shape), atol=1e-6)

    def test_matches_keras_hub_sine_encoding_on_ranks_three_and_four(self):
        # keras-hub's layer needs rank 3 or more; from there the two agree.
        for shape in [(2, 20, 16), (2, 3, 20, 16)]:
            inputs = np.zeros(shape, "float32")
            ours = SinusoidalPositionEmbedding()(inputs, start_index=5)
            theirs = keras_hub.layers.SinePositionEncoding()(inputs, start_index=5)
            self.assertAllClose(ours, theirs, atol=1e-5)

    def test_positions_replace_start_index(self):
        positions = np.array([7, 2, 9])
        out = SinusoidalPositionEmbedding()(
            np.zeros((2, 3, 8), "float32"), start_index=100, positions=positions
        )
        expected = numpy_encoding(10, 8)[positions]  # rows 7, 2, 9
        self.assertAllClose(out, np.broadcast_to(expected, (2, 3, 8)), atol=1e-6)

    def test_batched_positions_give_each_example_its_rows(self):
        positions = np.array([[0, 1, 2], [5, 6, 7]])
        out = SinusoidalPositionEmbedding()(
            np.zeros((2, 4, 3, 8), "float32"), positions=positions
        )  # (B, X, T, D): the batch axis is 0, the extra axis is broadcast
        expected = numpy_encoding(8, 8)[positions][:, None]  # (B, 1, T, D)
        self.assertAllClose(out, np.broadcast_to(expected, (2, 4, 3, 8)), atol=1e-6)

    def test_positions_of_the_wrong_length_raise(self):
        with self.assertRaisesRegex(
            ValueError, r"`positions` must hold one position per step.*\(4\)"
        ):
            SinusoidalPositionEmbedding()(
                np.zeros((1, 4, 8), "float32"), positions=np.arange(3)
            )

    def test_dynamic_length_in_functional_model(self):
        inputs = keras.Input((None, 8))
        model = keras.Model(inputs, SinusoidalPositionEmbedding()(inputs))
        for length in (3, 11):
            out = model.predict(np.zeros((2, length, 8), "float32"), verbose=0)
            self.assertAllClose(out[1], numpy_encoding(length, 8), atol=1e-5)

    def test_mask_passes_through(self):
        tokens = np.array([[3, 4, 0, 0]])
        embedded = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
        encoding = SinusoidalPositionEmbedding()(embedded)
        self.assertAllEqual(get_keras_mask(encoding), [[True, True, False, False]])

    def test_mixed_bfloat16_long_sequence_costs_one_output_rounding(self):
        reference = encode(4096, 64)  # float32 policy
        keras.config.set_dtype_policy("mixed_bfloat16")
        layer = SinusoidalPositionEmbedding()
        out = layer(np.zeros((1, 4096, 64), "float32"))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))[0]
        # One rounding to nearest moves a value by at most half a bfloat16 ulp of
        # itself. We allow one ulp: the float32 values of the two runs may differ
        # in their last bits (sin/cos fused with the cast or not, by CPU), and such
        # a difference can send a value near a rounding midpoint the other way.
        self.assertTrue(np.all(np.abs(out - reference) <= bfloat16_ulp(reference)))

    def test_keras_hub_sine_encoding_is_far_off_in_bfloat16(self):
        # Why this layer exists: keras_hub.layers.SinePositionEncoding computes the
        # positions and angles in the compute dtype, and bfloat16 cannot even hold
        # the position 1023, so its encoding is off by more than the whole range.
        keras.config.set_dtype_policy("mixed_bfloat16")
        out = keras_hub.layers.SinePositionEncoding()(np.zeros((1, 1024, 64)))
        out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))[0]
        self.assertGreater(np.abs(out - numpy_encoding(1024, 64)).max(), 0.5)

    def test_odd_feature_size_raises(self):
        layer = SinusoidalPositionEmbedding(name="pe")
        with self.assertRaisesRegex(
            ValueError, "SinusoidalPositionEmbedding 'pe'.*divisible by two.*7"
        ):
            layer(np.zeros((1, 4, 7), "float32"))

    def test_rank_one_raises(self):
        with self.assertRaisesRegex(
            ValueError, r"`inputs.shape` must be .*rank 2 or more; received \(8,\)"
        ):
            SinusoidalPositionEmbedding()(np.zeros((8,), "float32"))

    def test_bad_max_wavelength_raises(self):
        with self.assertRaisesRegex(
            ValueError, "`max_wavelength` must be a positive number; received -1"
        ):
            SinusoidalPositionEmbedding(max_wavelength=-1)
