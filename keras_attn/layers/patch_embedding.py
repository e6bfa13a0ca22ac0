"""Vision Transformer patch embedding: patches, class token, position embedding."""

import numbers

import keras
from keras import ops

from keras_attn._checks import check_choice
from keras_attn._checks import check_divisible
from keras_attn._checks import check_positive_int
from keras_attn._checks import check_rank
from keras_attn._checks import fail
from keras_attn._checks import owner_name
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.ops.resize import resample_position_grid

_POSITION_EMBEDDINGS = ("learned", "sinusoidal", None)
# Shared default only; every layer uses its own copy (`_fresh_initializer`).
_POSITION_INITIALIZER = keras.initializers.RandomNormal(stddev=0.02)


def _is_static(value):
    return isinstance(value, numbers.Integral)


@keras.saving.register_keras_serializable(package="keras_attn")
class PatchEmbedding(keras.layers.Layer):
    """Cuts images into patches, projects them, adds a class token and positions.

    The projection is a `Conv2D(hidden_dim, patch_size, strides=patch_size)` named
    `projection` (kernel `(ph, pw, channels, hidden_dim)`), which equals a dense
    layer on each flattened patch. Patches are flattened row by row. With
    `use_class_token`, a learned `class_token` of shape `(1, 1, hidden_dim)`,
    zero-initialised, is prepended. A learned `position_embedding` has one row per
    token of the grid of the image size the layer is built for; a call on another
    image size resizes the grid rows bicubically (`resample_position_grid`, the
    class token row kept apart), so a model trained at 224 pixels runs at 384.

    With `shifted_patches=True` the layer does the shifted patch tokenization of
    Lee et al. (2021) for small datasets: the image is stacked, along channels,
    with four copies of itself shifted by half a patch towards each diagonal
    (zeros fill the edge) before it is cut into patches, so each token also sees
    the pixels around its patch (a 2x2 patch sees a 4x4 neighbourhood). The
    projection kernel is then `(ph, pw, 5 * channels, hidden_dim)`.

    Args:
        patch_size: int or pair `(ph, pw)`. Image height and width must be
            multiples of it.
        hidden_dim: int. The size of each token.
        use_class_token: bool. Prepend a learned class token. Defaults to `True`.
        position_embedding: `"learned"`, `"sinusoidal"` (fixed 1-D encoding of
            the flattened sequence, class token at position 0; needs an even
            `hidden_dim`) or `None`. Defaults to `"learned"`.
        kernel_initializer: initializer of the projection kernel. Defaults to
            `"lecun_normal"`, the initialisation of the original (Flax) ViT
            patch embedding.
        bias_initializer: initializer of the projection bias. Defaults to
            `"zeros"`.
        position_initializer: initializer of the learned position table.
            Defaults to `RandomNormal(stddev=0.02)`, as in ViT and timm.
        shifted_patches: bool. Shifted patch tokenization (above); needs a
            patch of at least 2 pixels each way. Defaults to `False`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        images: tensor of shape `(batch, height, width, channels)`. The layer must
            be built with a static height and width (the grid of the learned
            table); later calls may use other or dynamic sizes.

    Returns:
        Tensor of shape `(batch, [1 +] (height / ph) * (width / pw), hidden_dim)`.

    Example:

    ```python
    images = keras.Input((224, 224, 3))
    tokens = PatchEmbedding(patch_size=16, hidden_dim=768)(images)  # (B, 197, 768)
    ```

    References:
     - [Dosovitskiy et al., 2021](https://arxiv.org/abs/2010.11929)
     - [Lee et al., 2021](https://arxiv.org/abs/2112.13492), shifted patches
    """

    def __init__(
        self,
        patch_size,
        hidden_dim,
        use_class_token=True,
        position_embedding="learned",
        kernel_initializer="lecun_normal",
        bias_initializer="zeros",
        position_initializer=_POSITION_INITIALIZER,
        shifted_patches=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = owner_name(self)
        self.patch_size = self._check_patch_size(patch_size)
        self.hidden_dim = check_positive_int(owner, "hidden_dim", hidden_dim)
        if not isinstance(use_class_token, bool):
            fail(owner, "use_class_token", use_class_token, "True or False")
        self.use_class_token = use_class_token
        self.position_embedding = check_choice(
            owner, "position_embedding", position_embedding, _POSITION_EMBEDDINGS
        )
        if position_embedding == "sinusoidal":
            check_divisible(owner, "hidden_dim", hidden_dim, 2, "two (sinusoidal)")
        # Round trip through the config: a fresh, unseeded copy per layer instead
        # of the single default instance shared by every layer.
        self.kernel_initializer = _fresh_initializer(kernel_initializer)
        self.bias_initializer = _fresh_initializer(bias_initializer)
        self.position_initializer = _fresh_initializer(position_initializer)
        self.num_prefix_tokens = int(use_class_token)
        if not isinstance(shifted_patches, bool):
            fail(owner, "shifted_patches", shifted_patches, "True or False")
        if shifted_patches and min(self.patch_size) < 2:
            fail(
                owner,
                "patch_size",
                patch_size,
                "at least 2 pixels each way with shifted_patches=True",
            )
        self.shifted_patches = shifted_patches

    def _check_patch_size(self, patch_size):
        pair = (patch_size, patch_size) if _is_static(patch_size) else patch_size
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(_is_static(p) and not isinstance(p, bool) for p in pair)
            or min(pair) <= 0
        ):
            fail(
                owner_name(self),
                "patch_size",
                patch_size,
                "a positive integer or a pair of positive integers",
            )
        return tuple(int(p) for p in pair)

    def _check_shape(self, shape):
        owner = owner_name(self)
        check_rank(owner, "images", shape, 4)
        for axis, size, patch in zip(("height", "width"), shape[1:3], self.patch_size):
            check_divisible(owner, f"images {axis}", size, patch, "patch_size")

    def _grid(self, shape):
        return tuple(
            None if size is None else size // patch
            for size, patch in zip(shape[1:3], self.patch_size)
        )

    def build(self, input_shape):
        self._check_shape(input_shape)
        if None in input_shape[1:]:
            raise ValueError(
                f"{owner_name(self)}: argument `images` must have a static height, "
                f"width and channels when the layer is built, to size the position "
                f"table and projection; received shape {tuple(input_shape)}. Use "
                f"`keras.Input((height, width, channels))` or call "
                f"`layer.build((None, height, width, channels))` first."
            )
        self.build_grid = self._grid(input_shape)
        self.projection = keras.layers.Conv2D(
            self.hidden_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )
        copies = len(DIAGONAL_SHIFTS) + 1 if self.shifted_patches else 1
        self.projection.build((*input_shape[:3], copies * input_shape[3]))
        if self.use_class_token:
            self.class_token = self.add_weight(
                name="class_token", shape=(1, 1, self.hidden_dim), initializer="zeros"
            )
        if self.position_embedding == "learned":
            rows = self.num_prefix_tokens + self.build_grid[0] * self.build_grid[1]
            self.position_table = self.add_weight(
                name="position_embedding",
                shape=(rows, self.hidden_dim),
                initializer=self.position_initializer,
            )
        elif self.position_embedding == "sinusoidal":
            self.sinusoids = SinusoidalPositionEmbedding(dtype=self.dtype_policy)

    def _positions(self, grid):
        """The learned table for `grid`, resized when it is not the build grid."""
        table = ops.convert_to_tensor(self.position_table)  # (P + N, D)
        table = resample_position_grid(
            table, self.build_grid, grid, num_prefix_tokens=self.num_prefix_tokens
        )
        return ops.cast(table[None], self.compute_dtype)  # (1, P + N', D)

    def call(self, images):
        self._check_shape(images.shape)
        if self.shifted_patches:
            shift = tuple(patch // 2 for patch in self.patch_size)
            images = with_diagonal_shifts(images, shift)  # (B, H, W, 5C)
        x = self.projection(images)  # (B, gh, gw, D)
        batch, grid_height, grid_width, _ = ops.shape(x)
        x = ops.reshape(x, (batch, -1, self.hidden_dim))  # (B, N, D)
        if self.use_class_token:
            token = ops.cast(self.class_token, self.compute_dtype)
            token = ops.broadcast_to(token, (batch, 1, self.hidden_dim))  # (B, 1, D)
            x = ops.concatenate([token, x], axis=1)  # (B, 1 + N, D)
        if self.position_embedding == "learned":
            x = x + self._positions((grid_height, grid_width))
        elif self.position_embedding == "sinusoidal":
            x = x + self.sinusoids(x)
        return x

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        grid_height, grid_width = self._grid(input_shape)
        length = None
        if grid_height is not None and grid_width is not None:
            length = self.num_prefix_tokens + grid_height * grid_width
        return (input_shape[0], length, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "use_class_token": self.use_class_token,
                "position_embedding": self.position_embedding,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "position_initializer": keras.initializers.serialize(
                    self.position_initializer
                ),
                "shifted_patches": self.shifted_patches,
            }
        )
        return config


# Directions (rows, columns) of the shifted copies, in channel order after the
# image itself: up-left, up-right, down-left, down-right.
DIAGONAL_SHIFTS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def with_diagonal_shifts(images, shift):
    """`images` and its copies moved by `shift` pixels along each diagonal.

    Args:
        images: tensor `(batch, height, width, channels)`.
        shift: pair `(rows, columns)` of non-negative ints.

    Returns:
        Tensor `(batch, height, width, 5 * channels)`: the image, then the copies
        in the order of `DIAGONAL_SHIFTS`; pixel `(y, x)` of the copy for direction
        `(dy, dx)` is pixel `(y + dy * rows, x + dx * columns)` of the image, or
        zero outside it.
    """
    rows, columns = shift
    padded = ops.pad(images, ((0, 0), (rows, rows), (columns, columns), (0, 0)))
    size = ops.shape(images)
    copies = [images]
    for dy, dx in DIAGONAL_SHIFTS:
        start = (0, rows + dy * rows, columns + dx * columns, 0)
        copies.append(ops.slice(padded, start, size))
    return ops.concatenate(copies, axis=-1)


def _fresh_initializer(initializer):
    initializer = keras.initializers.get(initializer)
    return keras.initializers.get(keras.initializers.serialize(initializer))
