import keras
import keras_hub
import numpy as np

from keras_attn.layers.rotary_embedding import RotaryEmbedding
from tests._keras_private import TestCase


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_rotary(x, positions, max_wavelength=10000.0):
    """Rotate-half RoPE in float64: pair feature j with feature j + D/2.

    `x` is `(batch, length, ..., dim)`: the sequence on axis 1.
    """
    kept, turned = numpy_rotary_terms(x, positions, max_wavelength)
    return kept + turned


def numpy_rotary_terms(x, positions, max_wavelength=10000.0):
    """The two terms of RoPE, `x * cos` and `rotate_half(x) * sin`, in float64."""
    dim = x.shape[-1]
    omega = max_wavelength ** (-2 * np.arange(dim // 2) / dim)  # (D/2,)
    angles = np.asarray(positions, "float64")[:, None] * omega  # (T, D/2)
    angles = np.concatenate([angles, angles], axis=-1)  # (T, D)
    angles = angles.reshape(angles.shape[:1] + (1,) * (x.ndim - 3) + angles.shape[1:])
    first, second = np.split(x, 2, axis=-1)
    rotated_half = np.concatenate([-second, first], axis=-1)
    return x * np.cos(angles), rotated_half * np.sin(angles)


class RotaryEmbeddingTest(TestCase):
    def test_layer_behaviour_sequence_layout(self):
        self.run_layer_test(
            RotaryEmbedding,
            init_kwargs={"max_wavelength": 1000, "scaling_factor": 2.0},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=0,
            supports_masking=True,
        )

    def test_layer_behaviour_heads_layout(self):
        self.run_layer_test(
            RotaryEmbedding,
            init_kwargs={},
            input_shape=(2, 5, 3, 8),
            expected_output_shape=(2, 5, 3, 8),
            expected_num_trainable_weights=0,
            supports_masking=True,
        )

    def test_matches_numpy_reference_at_any_rank_from_three(self):
        for shape in [(2, 12, 16), (2, 12, 3, 16), (2, 12, 2, 3, 16)]:
            x = random(shape)
            expected = numpy_rotary(x, np.arange(12))
            self.assertAllClose(RotaryEmbedding()(x), expected, atol=1e-5)

    def test_matches_keras_hub_rotary_embedding(self):
        x = random((2, 20, 16))
        for kwargs in [{}, {"max_wavelength": 500, "scaling_factor": 2.0}]:
            ours = RotaryEmbedding(**kwargs)(x, start_index=3)
            theirs = keras_hub.layers.RotaryEmbedding(**kwargs)(x, start_index=3)
            self.assertAllClose(ours, theirs, atol=1e-6)

    def test_matches_keras_hub_rotary_embedding_on_heads_and_higher_ranks(self):
        for shape in [(2, 10, 4, 8), (2, 10, 2, 3, 8)]:
            x = random(shape)
            ours = RotaryEmbedding()(x, start_index=2)
            theirs = keras_hub.layers.RotaryEmbedding()(x, start_index=2)
            self.assertAllClose(ours, theirs, atol=1e-6)

    def test_dot_product_depends_only_on_relative_position(self):
        length, dim = 24, 16
        query = np.broadcast_to(random((dim,), seed=1), (1, length, dim))
        key = np.broadcast_to(random((dim,), seed=2), (1, length, dim))
        rotary = RotaryEmbedding()
        q = keras.ops.convert_to_numpy(rotary(query))[0]  # (T, D): q at every m
        k = keras.ops.convert_to_numpy(rotary(key))[0]  # (T, D): k at every n
        scores = q @ k.T  # scores[m, n] = <R_m q, R_n k>
        for offset in range(-length + 1, length):
            diagonal = np.diagonal(scores, offset=offset)  # all pairs with n - m fixed
            self.assertAllClose(
                diagonal, np.full_like(diagonal, diagonal[0]), atol=1e-4
            )
        # ... and the angle matters: different offsets give different scores.
        self.assertGreater(np.ptp(scores[0]), 1e-2)

    def test_rotation_keeps_pair_norms(self):
        x = random((1, 9, 8))
        out = keras.ops.convert_to_numpy(RotaryEmbedding()(x))
        pair_norm = lambda v: np.hypot(v[..., :4], v[..., 4:])  # noqa: E731
        self.assertAllClose(pair_norm(out), pair_norm(x), atol=1e-5)

    def test_start_index_matches_slice_of_full_rotation(self):
        x = random((2, 16, 2, 8))
        full = RotaryEmbedding()(x)
        part = RotaryEmbedding()(x[:, 11:14], start_index=11)
        self.assertAllClose(part, full[:, 11:14], atol=1e-6)

    def test_start_index_may_be_a_tensor(self):
        x = random((1, 8, 2, 8))
        start = keras.ops.convert_to_tensor(5, "int32")
        part = RotaryEmbedding()(x[:, 5:6], start_index=start)
        self.assertAllClose(part, RotaryEmbedding()(x)[:, 5:6], atol=1e-6)

    def test_positions_replace_start_index(self):
        x = random((2, 4, 8))
        positions = np.array([7, 2, 9, 0])
        out = RotaryEmbedding()(x, start_index=100, positions=positions)
        self.assertAllClose(out, numpy_rotary(x, positions), atol=1e-5)

    def test_batched_positions(self):
        positions = np.array([[0, 1, 2], [5, 6, 7]])
        for shape in [(2, 3, 4, 8), (2, 3, 2, 4, 8)]:
            x = random(shape)
            out = RotaryEmbedding()(x, positions=positions)
            expected = numpy_rotary(x[1:], positions[1])[0]
            self.assertAllClose(out[1], expected, atol=1e-5)

    def test_positions_of_the_wrong_length_raise(self):
        with self.assertRaisesRegex(
            ValueError, r"`positions` must hold one position per step.*\(4\)"
        ):
            RotaryEmbedding()(random((1, 4, 2, 8)), positions=np.arange(3))

    def test_scaling_factor_divides_positions(self):
        x = random((1, 6, 8))
        out = RotaryEmbedding(scaling_factor=4.0)(x)
        self.assertAllClose(out, numpy_rotary(x, np.arange(6) / 4.0), atol=1e-5)

    def test_mixed_bfloat16_is_within_four_roundings_of_its_terms(self):
        x = random((2, 16, 2, 32))
        kept, turned = numpy_rotary_terms(x, np.arange(16))
        out = RotaryEmbedding(dtype="mixed_bfloat16")(x)
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "bfloat16")
        out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
        # The inputs, cos and sin, each product and their sum are rounded to
        # bfloat16 (relative error <= 2^-8 each), so each term is off by at most
        # four roundings of itself, whichever order and fusion the CPU's kernels
        # use (some compute the products in float32 and round fewer times). The
        # float32 angles add < 16 * 2^-24, negligible here.
        bound = ((1 + 2.0**-8) ** 4 - 1) * (np.abs(kept) + np.abs(turned))
        self.assertTrue(np.all(np.abs(out - (kept + turned)) <= bound))

    def test_odd_feature_size_raises(self):
        with self.assertRaisesRegex(
            ValueError, "RotaryEmbedding 'rope'.*divisible by two.*received 7"
        ):
            RotaryEmbedding(name="rope")(random((1, 4, 7)))

    def test_rank_two_raises(self):
        with self.assertRaisesRegex(
            ValueError, r"`inputs.shape` must be .*rank 3 or more; received \(4, 8\)"
        ):
            RotaryEmbedding()(random((4, 8)))

    def test_bad_scaling_factor_raises(self):
        with self.assertRaisesRegex(
            ValueError, "`scaling_factor` must be a positive number; received 0"
        ):
            RotaryEmbedding(scaling_factor=0)
