"""Attention rollout (Abnar & Zuidema, 2020) and the class token's map."""

import numpy as np

from keras_attn import _checks
from keras_attn.inspect import _validation

_FUSIONS = {"mean": np.mean, "max": np.max, "min": np.min}


def attention_rollout(maps, head_fusion="mean", discard_ratio=0.0):
    """How much each token's output draws on each input token, through all layers.

    Per layer, the heads are fused (`head_fusion`), optionally the weakest
    weights are dropped, the residual connection is accounted for as
    `Â = normalize(0.5·A + 0.5·I)` (rows rescaled to sum to one), and the
    layers are chained: `R = Â_L ··· Â_2 Â_1`. Row `i` of `R` says where token
    `i` of the last layer gets its information from among the input tokens.
    For a ViT, `class_token_map(R, grid_shape)` gives the class token's row on
    the patch grid.

    Args:
        maps: self-attention maps `(B, H, T, T)`, first layer first: the dict
            from `attention_maps` restricted to one stack (e.g. the encoder),
            or a list.
        head_fusion: `"mean"`, `"max"` or `"min"` over the heads.
        discard_ratio: float in [0, 1). The fraction of the smallest fused
            weights of each image and layer set to zero before the identity
            is added (as in the `vit-explain` reference code); 0 keeps all.

    Returns:
        NumPy `(B, T, T)`; every row sums to one.

    Raises:
        ValueError: maps that are not square or not all the same shape, or a
            bad `head_fusion` or `discard_ratio`.

    Example:
    ```python
    maps = keras_attn.inspect.attention_maps(vit, images)
    rollout = keras_attn.inspect.attention_rollout(maps)  # (B, 1 + N, 1 + N)
    heat = keras_attn.inspect.class_token_map(rollout, (14, 14))  # (B, 14, 14)
    ```

    References:
        - Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020.
    """
    owner = "attention_rollout"
    if head_fusion not in _FUSIONS:
        raise ValueError(
            f"{owner}: argument `head_fusion` must be one of 'mean', 'max', "
            f"'min'; received {head_fusion!r}."
        )
    if isinstance(discard_ratio, bool) or not 0.0 <= discard_ratio < 1.0:
        raise ValueError(
            f"{owner}: argument `discard_ratio` must be a number in [0, 1); "
            f"received {discard_ratio!r}."
        )
    layers = _validation.layer_maps(owner, maps)
    shape = layers[0][1].shape
    for name, scores in layers:
        _validation.check_self_attention(owner, name, scores)
        if scores.shape[0] != shape[0] or scores.shape[2:] != shape[2:]:
            raise ValueError(
                f"{owner}: argument `maps` must hold maps of one stack, all "
                f"(B, H, T, T) with the same B and T; received {shape} for "
                f"{layers[0][0]!r} and {scores.shape} for {name!r}."
            )
    batch, tokens = shape[0], shape[-1]
    identity = np.eye(tokens)
    rollout = np.broadcast_to(identity, (batch, tokens, tokens))
    for _, scores in layers:
        fused = _FUSIONS[head_fusion](scores, axis=1)  # (B, T, T)
        if discard_ratio > 0.0:
            fused = _discard_smallest(fused, discard_ratio)
        fused = 0.5 * fused + 0.5 * identity
        fused = fused / fused.sum(axis=-1, keepdims=True)
        rollout = fused @ rollout  # (B, T, T)
    return rollout.astype("float32")


def _discard_smallest(fused, ratio):
    """Zeroes the `ratio` smallest weights of each `(T, T)` matrix."""
    batch = fused.shape[0]
    flat = fused.reshape(batch, -1).copy()  # (B, T·T)
    count = int(flat.shape[1] * ratio)
    if count:
        smallest = np.argsort(flat, axis=1)[:, :count]
        np.put_along_axis(flat, smallest, 0.0, axis=1)
    return flat.reshape(fused.shape)


def class_token_map(matrix, grid_shape, num_prefix_tokens=1, token_index=0):
    """One token's row of an attention (or rollout) matrix, on the patch grid.

    Args:
        matrix: `(..., T, T)` (e.g. a rollout `(B, T, T)` or one layer's maps
            `(B, H, T, T)`), with `T = num_prefix_tokens + grid_h * grid_w`.
        grid_shape: `(grid_h, grid_w)`, the patch grid (image size / patch
            size), or an int for a square grid.
        num_prefix_tokens: tokens before the patches (1 for a class token).
        token_index: the query row to take; 0 is the class token.

    Returns:
        NumPy `(..., grid_h, grid_w)`: the weights of the patch tokens (the
        prefix tokens' share is left out, not renormalised).

    Example:
    ```python
    heat = keras_attn.inspect.class_token_map(rollout, (4, 4))  # (B, 4, 4)
    ```
    """
    owner = "class_token_map"
    grid_shape = _checks.check_int_or_pair(
        owner, "grid_shape", grid_shape, ("rows", "columns")
    )
    num_prefix_tokens = _checks.check_int_at_least(
        owner, "num_prefix_tokens", num_prefix_tokens, 0
    )
    matrix = np.asarray(matrix)
    if matrix.ndim < 2:
        raise ValueError(
            f"{owner}: argument `matrix` must have shape (..., T, T); received "
            f"shape {matrix.shape}."
        )
    _validation.check_grid(
        owner,
        f"`matrix` of shape {matrix.shape}",
        matrix.shape[-1],
        grid_shape,
        num_prefix_tokens,
    )
    if not -matrix.shape[-2] <= token_index < matrix.shape[-2]:
        raise ValueError(
            f"{owner}: argument `token_index` must index one of the "
            f"{matrix.shape[-2]} query rows; received {token_index!r}."
        )
    row = matrix[..., token_index, num_prefix_tokens:]  # (..., N)
    return row.reshape(row.shape[:-1] + grid_shape)
