"""mean_attention_distance, against closed forms for uniform attention."""

import math

import numpy as np
import pytest

from keras_attn import inspect


def uniform(tokens, heads=2, batch=2):
    return np.full((batch, heads, tokens, tokens), 1.0 / tokens)


def test_uniform_attention_on_a_line_of_patches():
    # Mean |i - j| over all n² pairs of n points on a line is (n² - 1) / (3n).
    n, patch = 5, 4
    distances = inspect.mean_attention_distance(
        {"layer": uniform(n)}, (1, n), patch, num_prefix_tokens=0
    )
    np.testing.assert_allclose(distances["layer"], [patch * (n * n - 1) / (3 * n)] * 2)


def test_uniform_attention_on_a_square_grid_ignores_the_class_token():
    # On 2x2 patches each query sees distances 0, 1, 1 and sqrt(2) patches. The
    # class token's fifth of every row is removed and the rest renormalised.
    patch = 16
    distances = inspect.mean_attention_distance([uniform(5)], 2, patch)
    np.testing.assert_allclose(
        distances["layer_0"], [patch * (2 + math.sqrt(2)) / 4] * 2, rtol=1e-6
    )


def test_each_head_gets_its_own_distance():
    local = np.broadcast_to(np.eye(9), (1, 1, 9, 9))  # every patch sees itself
    both = np.concatenate([local, uniform(9, heads=1, batch=1)], axis=1)

    (distance,) = inspect.mean_attention_distance([both], 3, 1, 0).values()

    pairs = np.array([(r, c) for r in range(3) for c in range(3)])
    mean_pair = np.linalg.norm(pairs[:, None] - pairs[None], axis=-1).mean()
    np.testing.assert_allclose(distance, [0.0, mean_pair], rtol=1e-6)


def test_rectangular_patches_scale_each_axis():
    # Two patches side by side, each attending only the other: pw pixels apart.
    swap = np.array([[[[0.0, 1.0], [1.0, 0.0]]]])
    (distance,) = inspect.mean_attention_distance([swap], (1, 2), (3, 5), 0).values()
    np.testing.assert_allclose(distance, [5.0])


def test_rows_without_patch_attention_are_left_out():
    # Token 0 is the class token. Patch 1 attends only to it, patch 2 to patch 3.
    scores = np.zeros((1, 1, 4, 4))
    scores[0, 0, :, 0] = 1.0
    scores[0, 0, 2] = [0.0, 0.0, 0.0, 1.0]
    (distance,) = inspect.mean_attention_distance([scores], (1, 3), 2).values()
    np.testing.assert_allclose(distance, [2.0])


def test_a_grid_that_does_not_match_the_tokens_is_rejected():
    with pytest.raises(ValueError, match=r"grid_shape.*\(3, 3\).*needs 10 tokens"):
        inspect.mean_attention_distance([uniform(17)], (3, 3), 2)


def test_bad_patch_size_is_rejected():
    with pytest.raises(ValueError, match="patch_size.*-2"):
        inspect.mean_attention_distance([uniform(5)], 2, -2)
