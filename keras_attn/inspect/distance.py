"""Mean attention distance, the ViT paper's Figure 7 (right)."""

import numpy as np

from keras_attn import _checks
from keras_attn.inspect import _validation


def mean_attention_distance(maps, grid_shape, patch_size, num_prefix_tokens=1):
    """How far, in pixels, each head looks: its "receptive field size".

    For query patch `i`, `Σ_j A[i, j] · ‖g_i − g_j‖`, where `g` are the patch
    positions in pixels (grid cell × `patch_size`), averaged over query patches
    and images. Only patch tokens count: the prefix (class) token's row and
    column are removed and each remaining row is renormalised to sum to one,
    i.e. the distance is that of the attention the query pays to patches. A
    row that paid nothing to patches contributes no distance (and is left out
    of the average).

    Args:
        maps: self-attention maps `(B, H, T, T)` of a ViT-like stack, as the
            dict from `attention_maps` or a list.
        grid_shape: `(grid_h, grid_w)` patches (or an int for a square grid);
            `T` must be `num_prefix_tokens + grid_h * grid_w`.
        patch_size: side of a patch in pixels, an int or `(ph, pw)`.
        num_prefix_tokens: tokens before the patches (1 for a class token).

    Returns:
        A dict from layer name to a NumPy `(H,)` array: the mean distance of
        each head, in pixels.

    Raises:
        ValueError: a grid that does not match the token count, or maps that
            are not self-attention.

    Example:
    ```python
    maps = keras_attn.inspect.attention_maps(vit, images)
    distances = keras_attn.inspect.mean_attention_distance(maps, (14, 14), 16)
    ```

    References:
        - Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021, Fig. 7.
    """
    owner = "mean_attention_distance"
    grid_shape = _checks.check_int_or_pair(
        owner, "grid_shape", grid_shape, ("rows", "columns")
    )
    patch_size = _checks.check_int_or_pair(owner, "patch_size", patch_size)
    num_prefix_tokens = _checks.check_int_at_least(
        owner, "num_prefix_tokens", num_prefix_tokens, 0
    )
    distances = _pixel_distances(grid_shape, patch_size)  # (N, N)
    result = {}
    for name, scores in _validation.layer_maps(owner, maps):
        _validation.check_self_attention(owner, name, scores)
        _validation.check_grid(
            owner, f"{name!r}", scores.shape[-1], grid_shape, num_prefix_tokens
        )
        patches = scores[..., num_prefix_tokens:, num_prefix_tokens:]  # (B,H,N,N)
        mass = patches.sum(axis=-1)  # (B, H, N)
        weighted = (patches * distances).sum(axis=-1)  # (B, H, N)
        per_query = np.where(mass > 0, weighted / np.where(mass > 0, mass, 1), 0)
        counted = (mass > 0).sum(axis=(0, 2))  # (H,)
        result[name] = per_query.sum(axis=(0, 2)) / np.maximum(counted, 1)
    return result


def _pixel_distances(grid_shape, patch_size):
    """Euclidean distances `(N, N)` between patch positions, in pixels."""
    rows, cols = np.meshgrid(
        np.arange(grid_shape[0]), np.arange(grid_shape[1]), indexing="ij"
    )
    positions = np.stack(
        [rows.ravel() * patch_size[0], cols.ravel() * patch_size[1]], axis=-1
    )  # (N, 2), row-major like PatchEmbedding's tokens
    return np.linalg.norm(positions[:, None] - positions[None], axis=-1)
