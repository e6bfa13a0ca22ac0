"""PNG bytes from NumPy arrays, with the standard library only.

The explorer page inlines its images and the training callback writes TensorBoard
image summaries; neither should need matplotlib or Pillow for that.
"""

import base64
import struct
import zlib

import numpy as np


def png_bytes(pixels):
    """Encode `(height, width)` grey or `(height, width, 3|4)` uint8 pixels."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"png_bytes: pixels must be uint8; received {pixels.dtype}.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]  # grey, RGB, RGBA
    # Each scanline starts with its filter type; 0 is "none".
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)],
        axis=1,
    )
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(pixels):
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode()


def to_uint8(image):
    """Any real image (grey, RGB or RGBA) scaled by its own range to 0..255."""
    image = np.asarray(image, dtype="float64")
    low, high = np.nanmin(image), np.nanmax(image)
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.round(scaled * 255).astype(np.uint8)


def _chunk(kind, data):
    checksum = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
