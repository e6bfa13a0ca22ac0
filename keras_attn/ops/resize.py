"""Portable bicubic resampling of images and position-embedding grids.

`keras.ops.image.resize(..., interpolation="bicubic")` gives different numbers on each
backend (the cubic coefficient is -0.75 on torch and -0.5 on TensorFlow and JAX), so
the kernel is written here from `keras.ops` alone: one interpolation matrix per spatial
axis, applied with two matrix products. The numbers are PyTorch's
`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` on every backend.
"""

import numbers

import keras
from keras import ops

from keras_attn._checks import check_int_at_least
from keras_attn._checks import check_rank
from keras_attn._checks import fail

# The four taps of the cubic kernel sit at these offsets from floor(source coordinate).
_TAP_OFFSETS = (-1, 0, 1, 2)


def _is_static_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _cubic_weights(t, a):
    """Keys' cubic convolution weights of the four taps for fractional offsets `t`."""

    def near(d):  # |d| <= 1
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    return far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)


def _interpolation_matrix(in_size, out_size, a):
    """The `(out_size, in_size)` float32 matrix that resamples one axis.

    Sizes may be Python ints or scalar tensors (a dynamic dimension in a TensorFlow
    graph), so the matrix is built from `keras.ops` rather than NumPy.
    """
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    # Half-pixel centres (align_corners=False); not clamped at 0, as in PyTorch's
    # cubic path, so border taps fall outside the image and are clamped below.
    source = (ops.arange(out_size, dtype="float32") + 0.5) * scale - 0.5  # (out,)
    left = ops.floor(source)
    t = source - left  # (out,) in [0, 1)
    left = ops.cast(left, "int32")
    columns = ops.arange(in_size, dtype="int32")  # (in,)
    last = ops.cast(in_size, "int32") - 1
    matrix = None
    for offset, weight in zip(_TAP_OFFSETS, _cubic_weights(t, a)):
        index = ops.minimum(ops.maximum(left + offset, 0), last)  # (out,)
        hit = ops.cast(ops.equal(index[:, None], columns[None, :]), "float32")
        term = weight[:, None] * hit  # (out, in)
        matrix = term if matrix is None else matrix + term
    return matrix


def _check_size(owner, size):
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        fail(owner, "size", size, "a pair (height, width)")
    for value in size:
        if _is_static_int(value) and value <= 0:
            fail(owner, "size", size, "a pair of positive integers")
    return tuple(size)


def bicubic_resize(images, size, a=-0.75):
    """Resizes channels-last images bicubically, with the same numbers on every backend.

    Half-pixel centres (`align_corners=False`), border taps clamped to the edge, no
    antialiasing: with `a=-0.75` the numbers are those of
    `torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)`.
    The resize is separable: one `(out, in)` interpolation matrix per spatial axis.

    Args:
        images: tensor of shape `(batch, height, width, channels)`. The spatial
            dimensions may be dynamic (`None` in a symbolic graph).
        size: pair `(height, width)` of the output, Python ints or scalar tensors.
        a: float. The cubic convolution coefficient; -0.75 is PyTorch's, -0.5 is
            Keys' (TensorFlow's and JAX's).

    Returns:
        Tensor of shape `(batch, size[0], size[1], channels)`, computed in float32 and
        returned in the dtype of `images` (float32 when `images` are integers).

    Example:

    ```python
    images = np.random.rand(2, 7, 7, 3).astype("float32")
    bicubic_resize(images, (14, 10)).shape  # (2, 14, 10, 3)
    ```

    References:
     - [Keys, 1981](https://doi.org/10.1109/TASSP.1981.1163711)
    """
    owner = "bicubic_resize"
    if not isinstance(images, keras.KerasTensor):
        images = ops.convert_to_tensor(images)
    check_rank(owner, "images", images.shape, 4)
    size = _check_size(owner, size)
    # An Operation so that symbolic inputs (`keras.Input((None, None, 3))`) get a
    # node in the functional graph instead of failing on unknown sizes.
    return _BicubicResize(size, a)(images)


def _float_dtype(dtype):
    return dtype if "float" in str(dtype) else "float32"


@keras.saving.register_keras_serializable(package="keras_attn")
class _BicubicResize(keras.Operation):
    def __init__(self, size, a=-0.75, name=None):
        super().__init__(name=name)
        self.size = tuple(size)
        self.a = a

    def call(self, images):
        out_height, out_width = self.size
        dtype = _float_dtype(images.dtype)
        _, in_height, in_width, _ = ops.shape(images)
        sizes = (in_height, in_width, out_height, out_width)
        if all(_is_static_int(d) for d in sizes) and sizes[:2] == sizes[2:]:
            return ops.cast(images, dtype)
        x = ops.cast(images, "float32")  # (B, H, W, C)
        rows = _interpolation_matrix(in_height, out_height, self.a)  # (h, H)
        cols = _interpolation_matrix(in_width, out_width, self.a)  # (w, W)
        x = ops.einsum("oh,bhwc->bowc", rows, x)  # (B, h, W, C)
        x = ops.einsum("pw,bowc->bopc", cols, x)  # (B, h, w, C)
        return ops.cast(x, dtype)

    def compute_output_spec(self, images):
        size = tuple(d if _is_static_int(d) else None for d in self.size)
        shape = (images.shape[0], *size, images.shape[3])
        return keras.KerasTensor(shape, dtype=_float_dtype(images.dtype))

    def get_config(self):
        return {"size": self.size, "a": self.a, "name": self.name}


def _grid_pair(owner, argument, grid):
    if _is_static_int(grid):
        grid = (grid, grid)
    if not isinstance(grid, (tuple, list)) or len(grid) != 2:
        fail(owner, argument, grid, "an int or a pair (rows, columns)")
    if any(_is_static_int(g) and g <= 0 for g in grid):
        fail(owner, argument, grid, "a pair of positive integers")
    return tuple(grid)


def _check_table(owner, table, old_grid, num_prefix_tokens):
    check_rank(owner, "table", table.shape, (2, 3))
    length = table.shape[-2]
    if length is None or not all(_is_static_int(g) for g in old_grid):
        return
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if length != expected:
        raise ValueError(
            f"{owner}: argument `table` must have {expected} rows "
            f"(num_prefix_tokens={num_prefix_tokens} + old_grid "
            f"{old_grid[0]}x{old_grid[1]}); received a tensor of shape "
            f"{tuple(table.shape)}."
        )


def resample_position_grid(table, old_grid, new_grid, num_prefix_tokens=1):
    """Resizes a table of learned position embeddings to a new patch grid.

    The first `num_prefix_tokens` rows (a class token, register tokens) are kept
    apart; the remaining `rows * columns` rows are read as a row-major grid of
    embedding vectors and resized with `bicubic_resize`. This is how a Vision
    Transformer trained at one image size runs at another.

    Args:
        table: tensor of shape `(length, dim)` or `(1, length, dim)` with
            `length = num_prefix_tokens + old_grid[0] * old_grid[1]`.
        old_grid: int or pair `(rows, columns)`: the grid the table was made for.
        new_grid: int or pair `(rows, columns)`: the grid wanted; Python ints or
            scalar tensors.
        num_prefix_tokens: int. Leading rows that are not part of the grid.

    Returns:
        The table with `num_prefix_tokens + new_grid[0] * new_grid[1]` rows, in the
        rank and dtype of `table`; `table` itself when the grids are equal.

    Example:

    ```python
    table = np.random.rand(1, 1 + 14 * 14, 768).astype("float32")
    resample_position_grid(table, (14, 14), (16, 16)).shape  # (1, 257, 768)
    ```

    Note: timm's `resample_abs_pos_embed` antialiases when it shrinks a grid; this
    function does not (it matches `interpolate(..., antialias=False)`), so the two
    agree when a grid grows and differ when it shrinks.
    """
    owner = "resample_position_grid"
    old_grid = _grid_pair(owner, "old_grid", old_grid)
    new_grid = _grid_pair(owner, "new_grid", new_grid)
    num_prefix_tokens = check_int_at_least(
        owner, "num_prefix_tokens", num_prefix_tokens, 0
    )
    table = ops.convert_to_tensor(table)
    _check_table(owner, table, old_grid, num_prefix_tokens)
    if all(_is_static_int(g) for g in (*old_grid, *new_grid)) and old_grid == new_grid:
        return table

    rows = table if len(table.shape) == 2 else table[0]  # (L, D)
    dim = ops.shape(rows)[-1]
    prefix = rows[:num_prefix_tokens]  # (P, D)
    grid = ops.reshape(rows[num_prefix_tokens:], (1, old_grid[0], old_grid[1], dim))
    grid = bicubic_resize(grid, new_grid)  # (1, gh, gw, D)
    grid = ops.reshape(ops.cast(grid, table.dtype), (-1, dim))  # (gh * gw, D)
    rows = ops.concatenate([prefix, grid], axis=0)  # (P + gh * gw, D)
    return rows if len(table.shape) == 2 else rows[None]
