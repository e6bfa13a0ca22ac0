"""Checks shared by the functions that read attention maps."""

import numpy as np


def layer_maps(owner, maps):
    """`maps` (a dict from `attention_maps` or a list) as `[(name, array)]`.

    Every map must be `(B, H, T, S)`; at least one is needed.
    """
    if isinstance(maps, dict):
        items = list(maps.items())
    elif isinstance(maps, (list, tuple)):
        items = [(f"layer_{i}", m) for i, m in enumerate(maps)]
    else:
        items = [("layer_0", maps)] if hasattr(maps, "shape") else None
    if not items:
        raise ValueError(
            f"{owner}: argument `maps` must be a non-empty dict (as returned by "
            f"attention_maps) or list of (B, H, T, S) arrays; received {maps!r}."
        )
    checked = []
    for name, scores in items:
        scores = np.asarray(scores, dtype="float64")
        if scores.ndim != 4:
            raise ValueError(
                f"{owner}: argument `maps` must hold (B, H, T, S) score arrays; "
                f"received shape {scores.shape} for {name!r}."
            )
        checked.append((name, scores))
    return checked


def check_self_attention(owner, name, scores):
    if scores.shape[-1] != scores.shape[-2]:
        raise ValueError(
            f"{owner}: argument `maps` must hold self-attention maps (T == S); "
            f"received shape {scores.shape} for {name!r} (cross-attention?). "
            "Pass only the self-attention layers, e.g. the encoder's."
        )


def check_grid(owner, name, tokens, grid_shape, num_prefix_tokens):
    """`tokens` must be `num_prefix_tokens + grid_height * grid_width`."""
    expected = num_prefix_tokens + grid_shape[0] * grid_shape[1]
    if tokens != expected:
        raise ValueError(
            f"{owner}: argument `grid_shape` {tuple(grid_shape)} with "
            f"num_prefix_tokens={num_prefix_tokens} needs {expected} tokens; "
            f"{name} has {tokens}."
        )
