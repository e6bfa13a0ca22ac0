"""What a ViT's embeddings learned: the ViT paper's Figure 7 (left and centre)."""

import keras
import numpy as np

from keras_attn._checks import check_positive_int
from keras_attn.inspect._walk import find_layer
from keras_attn.layers.patch_embedding import DIAGONAL_SHIFTS
from keras_attn.layers.patch_embedding import PatchEmbedding


def position_embedding_similarity(model):
    """Cosine similarity of each patch's learned position with every other one.

    Args:
        model: a model containing a `keras_attn.layers.PatchEmbedding` with
            `position_embedding="learned"` (the first one found is used), or
            that layer itself.

    Returns:
        NumPy `(grid_h, grid_w, grid_h, grid_w)`: `[r, c]` is the grid of
        similarities of the patch at row `r`, column `c` with every patch (a
        "grid of grids"); prefix (class) token rows are left out.

    Raises:
        ValueError: no `PatchEmbedding`, or one without a learned table.

    Example:
    ```python
    similarity = keras_attn.inspect.position_embedding_similarity(vit)
    similarity[0, 0]  # (grid_h, grid_w): the top-left patch vs. all the others
    ```

    References:
        - Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, Fig. 7.
    """
    owner = "position_embedding_similarity"
    layer = find_layer(model, PatchEmbedding, owner)
    if layer.position_embedding != "learned":
        raise ValueError(
            f"{owner}: argument `model` must have a learned position table; its "
            f"PatchEmbedding {layer.name!r} has position_embedding="
            f"{layer.position_embedding!r}."
        )
    table = _numpy(layer.position_table).astype("float64")
    table = table[layer.num_prefix_tokens :]  # (N, D)
    norms = np.linalg.norm(table, axis=-1, keepdims=True)
    unit = table / np.maximum(norms, 1e-12)
    grid = tuple(layer.build_grid)
    return (unit @ unit.T).reshape(grid + grid).astype("float32")


def patch_embedding_components(model, n=28):
    """The principal components of the patch-embedding filters.

    The projection kernel `(ph, pw, channels, hidden_dim)` holds `hidden_dim`
    filters of `ph·pw·channels` pixels each. With shifted patches
    (`shifted_patches=True`) each filter is first put back on the image: the five
    kernels of the image and its shifted copies add up to one filter over the
    `(ph + 2·(ph // 2), pw + 2·(pw // 2))` neighbourhood a token sees. They
    are centred (the mean filter removed) and decomposed with an SVD; the
    leading components are what the embedding mostly looks for in a patch.

    Args:
        model: a model containing a `keras_attn.layers.PatchEmbedding` (the
            first one found is used), or that layer itself.
        n: int. How many components to return; at most
            `min(hidden_dim, ph·pw·channels)` exist, and no more are returned.

    Returns:
        `(components, explained_variance_ratio)`: NumPy `(k, ph, pw, channels)`
        unit-norm components, each signed so that its largest entry is
        positive, and `(k,)` fractions of the filters' variance, largest first,
        with `k = min(n, hidden_dim, ph·pw·channels)`.

    Raises:
        ValueError: no `PatchEmbedding`, or `n` not a positive integer.

    Example:
    ```python
    components, ratios = keras_attn.inspect.patch_embedding_components(vit)
    ```

    References:
        - Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, Fig. 7.
    """
    owner = "patch_embedding_components"
    n = check_positive_int(owner, "n", n)
    layer = find_layer(model, PatchEmbedding, owner)
    kernel = _numpy(layer.projection.kernel).astype("float64")
    if layer.shifted_patches:
        kernel = _neighbourhood_kernel(kernel, layer.patch_size)
    patch_shape = kernel.shape[:3]  # (ph, pw, C)
    filters = kernel.reshape(-1, kernel.shape[-1]).T  # (D, ph·pw·C)
    centred = filters - filters.mean(axis=0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    ratio = variance / max(variance.sum(), 1e-300)
    k = min(n, directions.shape[0])
    components = directions[:k]  # (k, ph·pw·C)
    largest = np.abs(components).argmax(axis=-1)
    signs = np.sign(components[np.arange(k), largest])
    components = components * signs[:, None]
    return (
        components.reshape((k,) + patch_shape).astype("float32"),
        ratio[:k].astype("float32"),
    )


def _neighbourhood_kernel(kernel, patch_size):
    """A shifted-patch kernel `(ph, pw, 5C, D)` as one filter on the image.

    Pixel `(y, x)` of the copy shifted by `(dy, dx)` is image pixel
    `(y + dy·sh, x + dx·sw)`, so the copy's kernel lands at that offset in the
    `(ph + 2·sh, pw + 2·sw, C, D)` window around the patch.
    """
    (ph, pw), (sh, sw) = patch_size, (patch_size[0] // 2, patch_size[1] // 2)
    channels = kernel.shape[2] // (1 + len(DIAGONAL_SHIFTS))
    window = np.zeros((ph + 2 * sh, pw + 2 * sw, channels, kernel.shape[-1]))
    for copy, (dy, dx) in enumerate(((0, 0),) + DIAGONAL_SHIFTS):
        top, left = sh + dy * sh, sw + dx * sw
        window[top : top + ph, left : left + pw] += kernel[
            :, :, copy * channels : (copy + 1) * channels
        ]
    return window


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable.value)
