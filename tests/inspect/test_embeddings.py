"""position_embedding_similarity and patch_embedding_components."""

import keras
import numpy as np
import pytest

from keras_attn import inspect
from keras_attn.layers import PatchEmbedding


def patch_embedding(hidden_dim=16, **kwargs):
    layer = PatchEmbedding(patch_size=2, hidden_dim=hidden_dim, **kwargs)
    layer.build((None, 8, 8, 1))  # a 4x4 grid of 2x2 patches
    return layer


def test_a_diagonal_position_table_gives_the_identity():
    layer = patch_embedding()
    scales = np.arange(1, 17, dtype="float32")
    table = np.concatenate([np.ones((1, 16)), np.diag(scales)]).astype("float32")
    layer.position_table.assign(table)  # class token row first

    similarity = inspect.position_embedding_similarity(layer)

    assert similarity.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(similarity.reshape(16, 16), np.eye(16), atol=1e-6)


def test_similarity_is_found_inside_a_model():
    layer = patch_embedding(use_class_token=False)
    model = keras.Sequential([keras.Input((8, 8, 1)), layer])

    similarity = inspect.position_embedding_similarity(model)

    table = keras.ops.convert_to_numpy(layer.position_table.value)
    unit = table / np.linalg.norm(table, axis=-1, keepdims=True)
    np.testing.assert_allclose(similarity.reshape(16, 16), unit @ unit.T, atol=1e-5)


def test_a_fixed_position_encoding_is_rejected():
    with pytest.raises(ValueError, match="learned position table.*'sinusoidal'"):
        inspect.position_embedding_similarity(
            patch_embedding(position_embedding="sinusoidal")
        )


def test_a_model_without_patch_embedding_is_rejected():
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="contain a keras_attn PatchEmbedding"):
        inspect.patch_embedding_components(model)


def test_filters_along_one_direction_have_one_component():
    layer = patch_embedding(hidden_dim=6)
    direction = np.array([1.0, -2.0, 2.0, 4.0]) / 5.0  # a unit 2x2 patch
    amounts = np.array([-3.0, -1.0, 0.0, 1.0, 2.0, 5.0])
    kernel = np.outer(direction, amounts).reshape(2, 2, 1, 6)
    layer.projection.kernel.assign(kernel.astype("float32"))

    components, ratios = inspect.patch_embedding_components(layer, n=2)

    assert components.shape == (2, 2, 2, 1)
    np.testing.assert_allclose(components[0].ravel(), direction, atol=1e-5)
    np.testing.assert_allclose(ratios, [1.0, 0.0], atol=1e-6)


def test_components_are_orthonormal_and_capped_at_the_patch_size():
    components, ratios = inspect.patch_embedding_components(patch_embedding(), n=28)

    flat = components.reshape(len(components), -1)
    assert flat.shape == (4, 4)  # 2x2x1 pixels: four components at most
    np.testing.assert_allclose(flat @ flat.T, np.eye(4), atol=1e-5)
    assert np.all(np.diff(ratios) <= 0) and ratios.sum() == pytest.approx(1.0)


def test_a_bad_number_of_components_is_rejected():
    with pytest.raises(ValueError, match="`n`.*0"):
        inspect.patch_embedding_components(patch_embedding(), n=0)


def test_shifted_patch_filters_are_put_back_on_the_image():
    layer = patch_embedding(hidden_dim=6, shifted_patches=True)
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(2, 2, 5, 6)).astype("float32")
    layer.projection.kernel.assign(kernel)
    layer.projection.bias.assign(np.zeros(6, "float32"))
    components, ratios = inspect.patch_embedding_components(layer, n=16)
    assert components.shape == (6, 4, 4, 1)  # 4x4 neighbourhood of a 2x2 patch

    # The neighbourhood filter applied to the image's 4x4 window around a patch
    # gives the layer's token (edges zero-padded, as the shifted copies are).
    images = rng.normal(size=(1, 8, 8, 1)).astype("float32")
    tokens = keras.ops.convert_to_numpy(layer(images))[0, 1:]  # (16, 6), no class
    tokens = tokens - keras.ops.convert_to_numpy(layer.position_table)[1:]
    padded = np.pad(images[0, :, :, 0], 1)
    windows = np.stack(
        [
            padded[2 * r : 2 * r + 4, 2 * c : 2 * c + 4]
            for r in range(4)
            for c in range(4)
        ]
    )  # (16, 4, 4)
    from keras_attn.inspect.embeddings import _neighbourhood_kernel

    window_kernel = _neighbourhood_kernel(kernel.astype("float64"), (2, 2))[:, :, 0]
    expected = np.einsum("nyx,yxd->nd", windows, window_kernel)
    np.testing.assert_allclose(tokens, expected, atol=1e-4)
