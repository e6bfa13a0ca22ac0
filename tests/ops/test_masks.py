"""Mask helpers: `causal_mask`, `padding_mask_to_attention_mask`, `combine_masks`.

Polarity is Keras': True means "may attend".
"""

import numpy as np
from absl.testing import parameterized
from keras import ops
from keras.src.testing import TestCase

from keras_attn.ops import causal_mask
from keras_attn.ops import combine_masks
from keras_attn.ops import padding_mask_to_attention_mask
from keras_attn.ops.masks import check_attention_mask

T, F = True, False


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
