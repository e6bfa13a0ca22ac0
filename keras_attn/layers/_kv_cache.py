"""The key/value cache of `MultiHeadAttention`: made, written and laid out.

A cache holds a layer's projected keys and values side by side, `(batch, 2, length,
kv_heads, key_dim)`: index 0 the keys, index 1 the values. Cached decoding writes
each step's keys and values at its position (`write`) and attends the slots written
so far (`visible_slots`); cross-attention projects the encoder output once (`stack`).

Under a `keras.distribution`, every cache is laid out as the distribution says for
the tensor path `<layer path>/kv_cache` (see `layout_key`), whatever the layer is
named; `keras_attn.distribution.layout_map` shards it over the batch and the heads,
like the keys and values it holds.
"""

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


def stack(k, v, layer_path):
    """Keys and values `(B, S, Hkv, Dk)` as one cache `(B, 2, S, Hkv, Dk)`."""
    return lay_out(ops.stack([k, v], axis=1), layer_path)


def write(cache, k, v, index, layer_path):
    """`cache` with `k` and `v` `(B, T, Hkv, Dk)` written at positions `index...`."""
    start = [0, 0, index, 0, 0]
    return lay_out(
        ops.slice_update(cache, start, ops.stack([k, v], axis=1)), layer_path
    )


def visible_slots(q, k, start, causal):
    """The cache slots the queries at positions `start...` may attend, rank 4.

    With `causal`, query `i` sees slots up to `start + i`; without, every slot
    written so far (the later ones hold no keys yet).
    """
    query_length, key_length = ops.shape(q)[1], ops.shape(k)[1]
    if causal:
        return causal_mask(query_length, key_length, start)[None, None]  # (1,1,T,S)
    written = ops.arange(key_length) < start + query_length
    return written[None, None, None, :]  # (1, 1, 1, S)


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
