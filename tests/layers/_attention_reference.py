"""A NumPy `MultiHeadAttention` (float64) with every mask and logit argument.

The reference copies a built layer's projection weights (by sublayer, not by
`get_weights` order) and computes, per head, `softmax(cap(q·k/√D + bias))` over
the allowed keys, with one sink logit per head in the denominator when given.
What may attend is an explicit `(B|1, T, S)` boolean built from positions by
`allowed_pairs`, so the reference shares no mask code with the layer.
"""

import numpy as np
from keras import ops


def allowed_pairs(
    query_length,
    key_length=None,
    causal=False,
    window=None,
    query_segments=None,
    key_segments=None,
    query_positions=None,
    key_positions=None,
):
    """`(B|1, T, S)` booleans: causal `j <= i`, window `|i - j| < W` (causal:
    `i - W < j`), same segment; `*_positions` default to `arange`."""
    key_length = query_length if key_length is None else key_length
    i = np.arange(query_length) if query_positions is None else query_positions
    j = np.arange(key_length) if key_positions is None else key_positions
    offset = np.asarray(i)[:, None] - np.asarray(j)[None, :]
    allowed = np.ones((1, query_length, key_length), bool)
    if causal:
        allowed &= offset >= 0
    if window is not None:
        allowed &= np.abs(offset) < window
    if query_segments is not None:
        key_segments = query_segments if key_segments is None else key_segments
        same = (
            np.asarray(query_segments)[:, :, None] == np.asarray(key_segments)[:, None]
        )
        allowed = allowed & same
    return allowed


def rope(x, positions, max_wavelength=10000.0):
    """Rotate-half RoPE of `x` `(B, T, H, D)` at `positions` `(T,)` or `(B, T)`."""
    x = np.asarray(x, "float64")
    half = x.shape[-1] // 2
    frequencies = max_wavelength ** (-np.arange(half) * 2.0 / x.shape[-1])
    positions = np.broadcast_to(np.asarray(positions, "float64"), x.shape[:2])
    angles = positions[..., None] * frequencies  # (B, T, D/2)
    angles = np.concatenate([angles, angles], axis=-1)[:, :, None, :]
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(angles) + rotated * np.sin(angles)


def attention(q, k, v, allowed, bias=None, soft_cap=None, sinks=None):
    """`(output (B, T, H, Dv), weights (B, H, T, S))` of grouped-query attention.

    `allowed` broadcasts to `(B, T, S)` (or `(B, H, T, S)` if rank 4); rows
    with no allowed key give zeros.
    """
    q, k, v = (np.asarray(x, "float64") for x in (q, k, v))
    heads, kv_heads = q.shape[2], k.shape[2]
    k = np.repeat(k, heads // kv_heads, axis=2)
    v = np.repeat(v, heads // kv_heads, axis=2)
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + np.asarray(bias, "float64")
    if soft_cap is not None:
        logits = soft_cap * np.tanh(logits / soft_cap)
    allowed = np.asarray(allowed, bool)
    allowed = allowed[:, None] if allowed.ndim == 3 else allowed
    allowed = np.broadcast_to(allowed, logits.shape)
    logits = np.where(allowed, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    if sinks is not None:
        sink = np.asarray(sinks, "float64")[None, :, None, None]
        top = np.maximum(top, sink)
    top = np.where(np.isfinite(top), top, 0.0)
    exps = np.where(allowed, np.exp(logits - top), 0.0)
    total = np.sum(exps, axis=-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(sink - top)
    weights = exps / np.where(total > 0, total, 1.0)
    return np.einsum("bhts,bshd->bthd", weights, v), weights


def _weights(projection):
    kernel = ops.convert_to_numpy(projection.kernel).astype("float64")
    bias = 0.0 if projection.bias is None else ops.convert_to_numpy(projection.bias)
    return kernel, bias


def layer_attention(layer, query, value, allowed, positions=None, **modifiers):
    """The output and weights of built `layer` on `query`, `value` (keys =
    values), by NumPy; `positions`: `(query_positions, key_positions)` of its
    rotary embedding (max wavelength 10000), if it has one."""
    projected = []
    for projection, inputs in ((layer.query, query), (layer.key, value)):
        kernel, bias = _weights(projection)
        projected.append(np.einsum("btd,dnh->btnh", inputs, kernel) + bias)
    if positions is not None:
        projected = [rope(x, p) for x, p in zip(projected, positions)]
    kernel, bias = _weights(layer.value)
    v = np.einsum("bsd,dnh->bsnh", value, kernel) + bias
    if layer.attention_sinks is not None:
        modifiers.setdefault("sinks", ops.convert_to_numpy(layer.attention_sinks))
    attended, weights = attention(*projected, v, allowed, **modifiers)
    kernel, bias = _weights(layer.attention_output)
    return np.einsum("btnh,nhd->btd", attended, kernel) + bias, weights
