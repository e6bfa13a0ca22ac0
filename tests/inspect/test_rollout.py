"""attention_rollout and class_token_map, against hand-computed answers."""

import numpy as np
import pytest

from keras_attn import inspect


def row_normalized(matrix):
    return matrix / matrix.sum(axis=-1, keepdims=True)


def random_attention(shape, seed=0):
    return row_normalized(np.random.default_rng(seed).random(shape))


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_identity_attention_rolls_out_to_the_identity(head_fusion):
    identity = np.broadcast_to(np.eye(5), (2, 3, 5, 5))

    rollout = inspect.attention_rollout([identity] * 4, head_fusion=head_fusion)

    np.testing.assert_allclose(rollout, np.broadcast_to(np.eye(5), (2, 5, 5)))


def test_one_uniform_layer_mixes_half_uniform_half_identity():
    tokens = 4
    uniform = np.full((1, 2, tokens, tokens), 1 / tokens)

    rollout = inspect.attention_rollout({"layer": uniform})

    expected = 0.5 * np.full((tokens, tokens), 1 / tokens) + 0.5 * np.eye(tokens)
    np.testing.assert_allclose(rollout[0], expected, atol=1e-6)


def test_layers_chain_later_layers_on_the_left():
    first, second = random_attention((2, 3, 4, 4)), random_attention((2, 3, 4, 4), 1)

    rollout = inspect.attention_rollout([first, second], head_fusion="max")

    def residual(a):
        return row_normalized(0.5 * a.max(axis=1) + 0.5 * np.eye(4))

    np.testing.assert_allclose(rollout, residual(second) @ residual(first), rtol=1e-5)
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0, rtol=1e-5)


def test_discard_ratio_zeroes_the_smallest_fused_weights():
    attention = np.array([[[[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.3, 0.3, 0.4]]]])

    rollout = inspect.attention_rollout([attention], discard_ratio=0.34)

    # 3 of the 9 weights go: 0.05, 0.05 and 0.1.
    kept = np.array([[0.7, 0.2, 0.0], [0.0, 0.9, 0.0], [0.3, 0.3, 0.4]])
    np.testing.assert_allclose(
        rollout[0], row_normalized(0.5 * kept + 0.5 * np.eye(3)), rtol=1e-6
    )


def test_class_token_map_puts_the_first_row_on_the_patch_grid():
    matrix = np.arange(2 * 7 * 7, dtype="float32").reshape(2, 7, 7)

    grid = inspect.class_token_map(matrix, (2, 3))

    np.testing.assert_array_equal(grid, matrix[:, 0, 1:].reshape(2, 2, 3))


def test_class_token_map_rejects_a_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="grid_shape.*needs 10 tokens.*has 17"):
        inspect.class_token_map(np.zeros((1, 17, 17)), (3, 3))


def test_class_token_map_rejects_a_row_that_does_not_exist():
    with pytest.raises(ValueError, match="token_index.*17 query rows.*17"):
        inspect.class_token_map(np.zeros((1, 17, 17)), 4, token_index=17)


def test_rollout_rejects_cross_attention_maps():
    with pytest.raises(ValueError, match="self-attention maps.*'cross'"):
        inspect.attention_rollout({"cross": np.zeros((1, 2, 4, 5))})


def test_rollout_rejects_maps_of_different_stacks():
    with pytest.raises(ValueError, match="one stack"):
        inspect.attention_rollout([np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 5, 5))])


@pytest.mark.parametrize(
    "arguments, match",
    [
        ({"head_fusion": "median"}, "head_fusion.*'median'"),
        ({"discard_ratio": 1.0}, "discard_ratio.*1.0"),
    ],
)
def test_rollout_rejects_bad_arguments(arguments, match):
    with pytest.raises(ValueError, match=match):
        inspect.attention_rollout([np.zeros((1, 1, 2, 2))], **arguments)


def test_rollout_rejects_empty_maps():
    with pytest.raises(ValueError, match="non-empty"):
        inspect.attention_rollout({})
