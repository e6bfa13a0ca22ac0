"""The key/value cache of `MultiHeadAttention`: made, written and laid out.

A cache holds a layer's projected keys and values side by side, `(batch, 2, length,
kv_heads, key_dim)`: index 0 the keys, index 1 the values. A cached self-attention
step (`step`) takes one of two forms:

- plain: the cache has a slot per position; the step writes its keys and values at
  their positions (`write`) and attends the slots written so far (`visible_slots`);
- ring (a layer with a sliding window `W`): the cache has `R` slots (`min(W,
  max_length)`), and slot `s` holds the newest position `p < t` with `p ≡ s (mod R)`
  before a step at `t` (`ring_positions`). The step attends the ring and its own
  keys, `R + T` of them, with the causal and window rules evaluated on their true
  positions (`ring_mask`), then writes its keys at slots `p mod R` (`ring_write`).
  Memory and time per token stay constant however many tokens are generated; a
  window `W` needs only the `W - 1` positions before a query, so `R >= W - 1`
  slots give exactly the attention of the whole sequence.

Cross-attention projects the encoder output once (`stack`).

Under a `keras.distribution`, every cache is laid out as the distribution says for
the tensor path `<layer path>/kv_cache` (see `layout_key`), whatever the layer is
named; `keras_attn.distribution.layout_map` shards it over the batch and the heads,
like the keys and values it holds.

A plain write is functional (`ops.slice_update`: a new cache), except inside
`written_by(writer)`, where `writer(cache, updates, index)` writes instead:
`generate` on torch updates the caches it owns in place (`generation/_compiled.py`).
"""

import contextlib
import contextvars
import math

import keras
from keras import ops

from keras_attn.ops.masks import causal_mask

LAYOUT_SUFFIX = "kv_cache"


def layout_key(layer_path):
    """The tensor path a layer's cache is laid out by: `<layer path>/kv_cache`."""
    return f"{layer_path}/{LAYOUT_SUFFIX}"


def check_head_dims(owner, key_dim, value_dim):
    """Keys and values share the cache: their head sizes must be equal."""
    if value_dim != key_dim:
        raise ValueError(
            f"{owner}: argument `cache` needs value_dim equal to key_dim; received "
            f"value_dim={value_dim} and key_dim={key_dim}."
        )


def zeros(shape, dtype, layer_path):
    """An empty cache `(batch, 2, max_length, kv_heads, key_dim)`."""
    return lay_out(ops.zeros(shape, dtype=dtype), layer_path)


def cache_length(max_length, sliding_window):
    """Slots of a self-attention cache: `max_length`, or a ring of `min(W,
    max_length)` for a sliding window `W`."""
    if sliding_window is None:
        return max_length
    if isinstance(max_length, int):
        return min(sliding_window, max_length)
    return ops.minimum(sliding_window, max_length)


def stack(k, v, layer_path):
    """Keys and values `(B, S, Hkv, Dk)` as one cache `(B, 2, S, Hkv, Dk)`."""
    return lay_out(ops.stack([k, v], axis=1), layer_path)


# `writer(cache, updates (B, 2, T, Hkv, Dk), index) -> cache` in place of
# `ops.slice_update`, or None.
_WRITER = contextvars.ContextVar("keras_attn_cache_writer", default=None)


@contextlib.contextmanager
def written_by(writer):
    """Plain cache writes go through `writer` within this context."""
    token = _WRITER.set(writer)
    try:
        yield
    finally:
        _WRITER.reset(token)


def write(cache, k, v, index, layer_path):
    """`cache` with `k` and `v` `(B, T, Hkv, Dk)` written at positions `index...`."""
    updates = ops.stack([k, v], axis=1)
    writer = _WRITER.get()
    if writer is None:
        cache = ops.slice_update(cache, [0, 0, index, 0, 0], updates)
    else:
        cache = writer(cache, updates, index)
    return lay_out(cache, layer_path)


def step(cache, k, v, start, causal, sliding_window, layer_path):
    """One cached self-attention step of `T` new keys and values at `start`.

    Args:
        cache: `(B, 2, S_max, Hkv, Dk)` plain, or `(B, 2, R, Hkv, Dk)` ring
            when `sliding_window` is given.
        k, v: the step's keys and values `(B, T, Hkv, Dk)` (keys rotated).
        start: position of the step's first token (int or scalar tensor).
        causal: whether query `i` may attend only positions up to `start + i`.
        sliding_window: `W` or None (None: a plain cache).
        layer_path: the layer's path, for the cache's layout.

    Returns:
        `(keys, values, visible, cache)`: what the step attends `(B, S', Hkv,
        Dk)`, which of them each query may attend `(1, 1, T|1, S')`, and the
        updated cache. `S'` is `S_max` for a plain cache, `R + T` for a ring.
    """
    query_length = ops.shape(k)[1]
    if sliding_window is None:
        cache = write(cache, k, v, start, layer_path)
        visible = visible_slots(query_length, ops.shape(cache)[2], start, causal)
        return cache[:, 0], cache[:, 1], visible, cache
    k, v = ops.cast(k, cache.dtype), ops.cast(v, cache.dtype)
    keys = ops.concatenate([cache[:, 0], k], axis=1)  # (B, R + T, Hkv, Dk)
    values = ops.concatenate([cache[:, 1], v], axis=1)
    ring_length = ops.shape(cache)[2]
    visible = ring_mask(start, query_length, ring_length, sliding_window, causal)
    return keys, values, visible, ring_write(cache, k, v, start, layer_path)


def attended_length(cache_length, query_length, ring):
    """How many keys a cached step attends: the cache's, plus its own with a ring."""
    if not ring:
        return cache_length
    return None if None in (cache_length, query_length) else cache_length + query_length


def visible_slots(query_length, key_length, start, causal):
    """The plain cache slots the queries at positions `start...` may attend, rank 4.

    With `causal`, query `i` sees slots up to `start + i`; without, every slot
    written so far (the later ones hold no keys yet).
    """
    if causal:
        return causal_mask(query_length, key_length, start)[None, None]  # (1,1,T,S)
    written = ops.arange(key_length) < start + query_length
    return written[None, None, None, :]  # (1, 1, 1, S)


def ring_positions(start, ring_length):
    """The position each of `R` ring slots holds before a step at `start`, `(R,)`.

    Slot `s` holds the newest position `p < start` with `p ≡ s (mod R)`; a
    negative `p` marks a slot not written yet.
    """
    slots = ops.arange(ring_length, dtype="int32")
    newest = ops.cast(start, "int32") - 1
    return newest - ops.mod(newest - slots, ring_length)


def ring_mask(start, query_length, ring_length, sliding_window, causal):
    """`(1, 1, T, R + T)` booleans: which of the ring's slots, then of the step's
    own `T` keys, each query at `start + i` may attend, by their true positions.

    A key at `p` is visible from a query at `q` if it is written (`p >= 0`),
    within the window (`q - W < p`, and `p - q < W` without `causal`), and not
    in the future with `causal` (`p <= q`).
    """
    queries = ops.cast(start, "int32") + ops.arange(query_length, dtype="int32")
    keys = ops.concatenate([ring_positions(start, ring_length), queries])
    offset = queries[:, None] - keys[None, :]  # (T, R + T)
    visible = ops.logical_and(keys[None, :] >= 0, offset < sliding_window)
    if causal:
        visible = ops.logical_and(visible, offset >= 0)
    else:
        visible = ops.logical_and(visible, offset > -sliding_window)
    return visible[None, None]


def ring_write(cache, k, v, start, layer_path):
    """The ring after writing the keys and values of positions `start...start+T-1`
    at slots `p mod R`; with `T > R`, only the last `R` of them remain.

    Written as a gather (each slot takes the newest of the step's positions that
    maps to it, if any), not a scatter, so that it traces alike on every backend.
    """
    ring_length, query_length = ops.shape(cache)[2], ops.shape(k)[1]
    held = ring_positions(ops.cast(start, "int32") + query_length, ring_length)
    is_new = held >= ops.cast(start, "int32")  # (R,)
    index = ops.clip(held - ops.cast(start, "int32"), 0, query_length - 1)
    new = ops.take(ops.stack([k, v], axis=1), index, axis=2)  # (B, 2, R, Hkv, Dk)
    cache = ops.where(is_new[None, None, :, None, None], new, cache)
    return lay_out(cache, layer_path)


def lay_out(cache, layer_path):
    """Shard `cache` as the active `keras.distribution` says for `layout_key`.

    A mesh axis that does not divide its dimension (a batch of 3 on 2
    data-parallel devices) leaves that dimension whole: the layout of an
    activation is a hint, not a requirement.
    """
    distribution = keras.distribution.distribution()
    if distribution is None or layer_path is None:
        return cache
    layout = distribution.get_tensor_layout(layout_key(layer_path))
    if layout is None:
        return cache
    mesh = layout.device_mesh
    axes = tuple(
        axis
        if axis is not None
        and size is not None
        and size % _mesh_axis_size(mesh, axis) == 0
        else None
        for size, axis in zip(cache.shape, layout.axes)
    )
    layout = keras.distribution.TensorLayout(axes, mesh)
    return keras.distribution.distribute_tensor(cache, layout)


def _mesh_axis_size(mesh, axis):
    """Devices along a mesh axis, or along several (`("batch", "model")`)."""
    names = axis if isinstance(axis, (tuple, list)) else (axis,)
    return math.prod(mesh.shape[mesh.axis_names.index(name)] for name in names)
