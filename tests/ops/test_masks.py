"""Mask helpers: `causal_mask`, `padding_mask_to_attention_mask`, `combine_masks`.

Polarity is Keras': True means "may attend". Boolean and 0/1 integer masks are
accepted; float masks are refused (an additive mask cast to bool is inverted).
"""

import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.ops import causal_mask
from keras_attn.ops import combine_masks
from keras_attn.ops import padding_mask_to_attention_mask
from keras_attn.ops.masks import as_boolean_mask
from keras_attn.ops.masks import check_attention_mask
from tests._keras_private import TestCase

T, F = True, False

# 0 where a query may attend, a large negative number where not (PyTorch, HF).
ADDITIVE = np.array([[0.0, 0.0, -1e9]], "float32")
ADDITIVE_ERROR = (
    r"`{argument}` must be a boolean \(or 0/1 integer\) mask, True where a query "
    r"may attend; received a mask of dtype {dtype}\..*`additive_mask == 0`"
)


def as_numpy(mask):
    return ops.convert_to_numpy(mask)


class CausalMaskTest(TestCase):
    def test_square_mask_is_lower_triangular(self):
        self.assertAllEqual(
            as_numpy(causal_mask(3)),
            [
                [T, F, F],
                [T, T, F],
                [T, T, T],
            ],
        )

    def test_is_boolean(self):
        self.assertEqual(as_numpy(causal_mask(2)).dtype, np.bool_)

    def test_more_keys_than_queries_aligns_queries_with_the_first_keys(self):
        self.assertAllEqual(
            as_numpy(causal_mask(2, 4)),
            [
                [T, F, F, F],
                [T, T, F, F],
            ],
        )

    def test_offset_shifts_the_queries_along_the_keys(self):
        # Two new tokens at positions 2 and 3 of a 4-slot cache.
        self.assertAllEqual(
            as_numpy(causal_mask(2, 4, offset=2)),
            [
                [T, T, T, F],
                [T, T, T, T],
            ],
        )

    def test_one_query_at_an_offset_sees_every_key_up_to_it(self):
        self.assertAllEqual(as_numpy(causal_mask(1, 5, offset=3)), [[T, T, T, T, F]])

    def test_offset_may_be_a_tensor(self):
        mask = causal_mask(1, 4, offset=ops.convert_to_tensor(1, "int32"))
        self.assertAllEqual(as_numpy(mask), [[T, T, F, F]])

    def test_more_queries_than_keys(self):
        self.assertAllEqual(
            as_numpy(causal_mask(3, 2)),
            [
                [T, F],
                [T, T],
                [T, T],
            ],
        )


class PaddingMaskTest(TestCase):
    padding = np.array([[1, 1, 1], [1, 1, 0]])

    def test_broadcastable_mask_by_default(self):
        mask = as_numpy(padding_mask_to_attention_mask(self.padding))
        self.assertEqual(mask.shape, (2, 1, 1, 3))
        self.assertAllEqual(mask[:, 0, 0], [[T, T, T], [T, T, F]])

    def test_query_length_tiles_the_mask_over_queries(self):
        mask = as_numpy(padding_mask_to_attention_mask(self.padding, query_length=4))
        self.assertEqual(mask.shape, (2, 1, 4, 3))
        for query in range(4):
            self.assertAllEqual(mask[:, 0, query], [[T, T, T], [T, T, F]])

    def test_is_boolean_for_integer_input(self):
        mask = as_numpy(padding_mask_to_attention_mask(self.padding))
        self.assertEqual(mask.dtype, np.bool_)

    def test_accepts_boolean_input(self):
        mask = padding_mask_to_attention_mask(self.padding.astype(bool))
        self.assertAllEqual(as_numpy(mask)[:, 0, 0], self.padding.astype(bool))

    def test_additive_float_mask_is_rejected(self):
        with self.assertRaisesRegex(
            ValueError,
            "^padding_mask_to_attention_mask: argument "
            + ADDITIVE_ERROR.format(argument="padding_mask", dtype="float32"),
        ):
            padding_mask_to_attention_mask(ADDITIVE)

    @parameterized.named_parameters(
        ("rank_1", (3,)),
        ("rank_3", (2, 1, 3)),
    )
    def test_wrong_rank_is_rejected(self, shape):
        with self.assertRaisesRegex(
            ValueError,
            r"padding_mask_to_attention_mask.*`padding_mask`.*rank 2.*"
            + str(shape).replace("(", r"\(").replace(")", r"\)"),
        ):
            padding_mask_to_attention_mask(np.ones(shape, bool))


class CombineMasksTest(TestCase):
    def test_no_masks_give_none(self):
        self.assertIsNone(combine_masks())

    def test_only_none_gives_none(self):
        self.assertIsNone(combine_masks(None, None))

    def test_none_entries_are_ignored(self):
        mask = as_numpy(combine_masks(None, causal_mask(2), None))
        self.assertEqual(mask.shape, (1, 1, 2, 2))
        self.assertAllEqual(mask[0, 0], [[T, F], [T, T]])

    def test_rank_2_mask_becomes_rank_4(self):
        mask = as_numpy(combine_masks(np.array([[1, 0, 1]])))
        self.assertEqual(mask.shape, (1, 1, 1, 3))
        self.assertEqual(mask.dtype, np.bool_)

    def test_rank_3_mask_gets_a_heads_axis(self):
        mask = np.ones((2, 3, 4), bool)
        self.assertEqual(as_numpy(combine_masks(mask)).shape, (2, 1, 3, 4))

    def test_rank_4_mask_is_kept(self):
        mask = np.ones((2, 5, 3, 4), bool)
        self.assertEqual(as_numpy(combine_masks(mask)).shape, (2, 5, 3, 4))

    def test_causal_and_padding_masks_combine_to_their_and(self):
        padding = padding_mask_to_attention_mask(np.array([[1, 1, 1], [0, 1, 1]]))
        mask = as_numpy(combine_masks(causal_mask(3), padding))
        self.assertEqual(mask.shape, (2, 1, 3, 3))
        self.assertAllEqual(
            mask[0, 0],
            [
                [T, F, F],
                [T, T, F],
                [T, T, T],
            ],
        )
        self.assertAllEqual(
            mask[1, 0],
            [
                [F, F, F],
                [F, T, F],
                [F, T, T],
            ],
        )

    def test_rank_2_3_and_4_masks_combine(self):
        rng = np.random.default_rng(0)
        shared = rng.random((3, 4)) > 0.3  # (T, S)
        per_example = rng.random((2, 3, 4)) > 0.3  # (B, T, S)
        per_head = rng.random((2, 5, 3, 4)) > 0.3  # (B, H, T, S)
        mask = as_numpy(combine_masks(shared, per_example, per_head))
        expected = shared[None, None] & per_example[:, None] & per_head
        self.assertEqual(mask.shape, (2, 5, 3, 4))
        self.assertAllEqual(mask, expected)

    def test_integer_masks_combine_like_boolean_ones(self):
        padding = np.array([[1, 1, 0], [0, 1, 1]], "int32")[:, None, :]  # (B, 1, S)
        combined = as_numpy(combine_masks(causal_mask(3), padding))
        expected = as_numpy(combine_masks(causal_mask(3), padding.astype(bool)))
        self.assertEqual(combined.dtype, np.bool_)
        self.assertAllEqual(combined, expected)

    def test_additive_float_mask_is_rejected(self):
        with self.assertRaisesRegex(
            ValueError,
            "^combine_masks: argument "
            + ADDITIVE_ERROR.format(argument="masks", dtype="float32"),
        ):
            combine_masks(causal_mask(3), ADDITIVE)

    @parameterized.named_parameters(
        ("rank_1", (4,)),
        ("rank_5", (1, 2, 1, 3, 4)),
    )
    def test_wrong_rank_is_rejected(self, shape):
        with self.assertRaisesRegex(
            ValueError,
            r"combine_masks.*`masks`.*rank 2.*3.*4.*"
            + str(shape).replace("(", r"\(").replace(")", r"\)"),
        ):
            combine_masks(causal_mask(3, 4), np.ones(shape, bool))


class CheckAttentionMaskTest(TestCase):
    score_shape = (2, 4, 3, 5)  # (B, H, T, S)

    @parameterized.named_parameters(
        ("full", (2, 4, 3, 5)),
        ("broadcast_batch_and_heads", (1, 1, 3, 5)),
        ("broadcast_queries", (2, 1, 1, 5)),
    )
    def test_broadcastable_mask_is_accepted(self, shape):
        check_attention_mask(np.ones(shape, bool), self.score_shape, "owner", "mask")

    def test_unknown_sizes_accept_anything(self):
        check_attention_mask(
            np.ones((7, 4, 3, 5), bool), (None, 4, 3, 5), "owner", "mask"
        )

    @parameterized.named_parameters(
        ("batch", (3, 1, 3, 5)),
        ("heads", (2, 2, 3, 5)),
        ("queries", (2, 1, 4, 5)),
        ("keys", (1, 1, 3, 6)),
    )
    def test_mask_that_does_not_broadcast_is_rejected(self, shape):
        with self.assertRaisesRegex(
            ValueError,
            r"^Owner: argument `the_mask` must broadcast to .*\(2, 4, 3, 5\).*"
            + str(shape).replace("(", r"\(").replace(")", r"\)"),
        ):
            check_attention_mask(
                np.ones(shape, bool), self.score_shape, "Owner", "the_mask"
            )


class AsBooleanMaskTest(TestCase):
    @parameterized.named_parameters(
        ("bool", "bool"), ("int32", "int32"), ("int64", "int64"), ("uint8", "uint8")
    )
    def test_boolean_and_integer_masks_become_boolean(self, dtype):
        mask = as_boolean_mask(
            ops.convert_to_tensor(np.array([[1, 0], [0, 1]], dtype)), "owner", "m"
        )
        self.assertEqual(as_numpy(mask).dtype, np.bool_)
        self.assertAllEqual(as_numpy(mask), [[T, F], [F, T]])

    def test_any_nonzero_integer_may_attend(self):
        mask = as_boolean_mask(np.array([0, 1, 2, -1], "int32"), "owner", "m")
        self.assertAllEqual(as_numpy(mask), [F, T, T, T])

    @parameterized.named_parameters(
        ("bools", [[True, False]], [[T, F]]), ("ints", [[1, 0]], [[T, F]])
    )
    def test_python_lists_are_accepted(self, mask, expected):
        self.assertAllEqual(as_numpy(as_boolean_mask(mask, "owner", "m")), expected)

    def test_numpy_boolean_mask_becomes_a_tensor(self):
        mask = as_boolean_mask(np.array([True, False]), "owner", "m")
        self.assertFalse(isinstance(mask, np.ndarray))
        self.assertAllEqual(as_numpy(mask), [T, F])

    @parameterized.named_parameters(
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
        ("float32", "float32"),
        ("float64", "float64"),
    )
    def test_float_masks_are_rejected_with_the_conversion(self, dtype):
        # NumPy keeps float64 (JAX tensors are float32 without x64).
        mask = (
            ops.cast(ADDITIVE, dtype) if dtype == "bfloat16" else ADDITIVE.astype(dtype)
        )
        with self.assertRaisesRegex(
            ValueError,
            "^MyLayer 'attn': argument "
            + ADDITIVE_ERROR.format(argument="attention_mask", dtype=dtype)
            + r", a 0/1 float mask with `float_mask > 0`\.$",
        ):
            as_boolean_mask(mask, "MyLayer 'attn'", "attention_mask")

    def test_python_list_of_floats_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "owner: argument `m`.*dtype float32"):
            as_boolean_mask([[0.0, -1e9]], "owner", "m")
