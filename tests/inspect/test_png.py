"""The standard-library PNG encoder, read back by Pillow."""

import io

import numpy as np
import pytest

from keras_attn.inspect import _png

Image = pytest.importorskip("PIL.Image", reason="Pillow (matplotlib's dependency)")


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_pillow_reads_back_the_pixels(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)

    decoded = np.asarray(Image.open(io.BytesIO(_png.png_bytes(pixels))))

    np.testing.assert_array_equal(decoded, pixels)


def test_images_are_scaled_by_their_own_range():
    image = np.array([[-1.0, 0.0], [0.5, 1.0]])

    np.testing.assert_array_equal(_png.to_uint8(image), [[0, 128], [191, 255]])
    np.testing.assert_array_equal(_png.to_uint8(np.ones((2, 2))), np.zeros((2, 2)))


def test_other_pixel_types_are_refused():
    with pytest.raises(ValueError, match="pixels must be uint8; received float64"):
        _png.png_bytes(np.zeros((2, 2)))
