"""The fused path: the backend's own attention kernel, for what it computes exactly.

PyTorch's `scaled_dot_product_attention` is called directly, on heads-first views
of the `(B, T, H, D)` tensors; `jax.nn.dot_product_attention` directly for a
sliding window; everything else through `keras.ops.dot_product_attention`. Which
calls may come here is decided in `attention.py`.
"""

import keras
from keras import ops

from keras_attn._eager import is_eager
from keras_attn.ops._pattern import EMPTY
from keras_attn.ops.masks import causal_mask

_GPU = None


def has_gpu():
    """Whether the backend sees a GPU (asked once)."""
    global _GPU
    if _GPU is None:
        if keras.backend.backend() == "torch":  # keras.distribution has no torch lib
            import torch

            _GPU = torch.cuda.is_available()
        else:
            devices = keras.distribution.list_devices()
            _GPU = any(d.lower().startswith(("gpu", "cuda")) for d in devices)
    return _GPU


# On PyTorch a window or documents go to its kernel one block of query rows at a
# time, each with the keys its row of the block map visits and that row's mask:
# key ranges no query of the row may attend are skipped, and no (T, S) mask is
# built. Rows of 1,024 queries (a 16,384-token training step with 16 packed
# documents, AMD EPYC, 2 cores: 2.4-2.7 s; rows of 512: 2.7-2.9 s, 256: 3.8 s,
# 2,048: 3.2-3.6 s), key ranges to multiples of 128.
ROW_QUERIES, ROW_KEY_BLOCK = 1024, 128


def fused_attention(query, key, value, pattern, scale):
    """The backend's kernel for a mask, causal, a window (JAX's own; PyTorch's
    by query rows) and documents (PyTorch's, by query rows)."""
    heads = query.shape[2]
    if keras.backend.backend() == "tensorflow" and key.shape[2] == 1 and heads:
        # Keras' TensorFlow kernel repeats key/value heads only when there are
        # several (keras 3.15), so multi-query attention fails in its einsum.
        key = ops.repeat(key, heads, axis=2)
        value = ops.repeat(value, heads, axis=2)
    structured = pattern.sliding_window or pattern.segment_ids is not None
    if structured and keras.backend.backend() == "jax":
        return _jax_windowed_attention(query, key, value, pattern, scale)
    if structured:
        return _by_query_rows(query, key, value, pattern, scale)
    if pattern.mask is None:
        # The kernel's own causal flag: PyTorch's flash kernel then skips the
        # blocks above the diagonal and never builds a (T, S) mask.
        return _kernel(query, key, value, None, pattern.is_causal, scale)
    allowed = pattern.mask
    if pattern.is_causal:
        causal = causal_mask(ops.shape(query)[1], ops.shape(key)[1])[None, None]
        allowed = ops.logical_and(allowed, causal)
    return _masked(query, key, value, allowed, scale)


def row_key_ranges(pattern, query_length, key_length):
    """`[(query_start, query_stop, key_start, key_stop)]`: each row of queries
    and the keys it may attend, from the block map; None when the host cannot
    read it (shape inference on PyTorch's meta device, `torch.export`,
    `torch.compile`, `torch.jit.trace`)."""
    import numpy as np

    lengths_known = isinstance(query_length, int) and isinstance(key_length, int)
    if not lengths_known or not is_eager():
        return None
    if query_length <= ROW_QUERIES:  # one row: no block map to read on the host
        return [(0, query_length, 0, key_length)]
    padded = pattern.padded(
        -(-query_length // ROW_QUERIES) * ROW_QUERIES,
        -(-key_length // ROW_KEY_BLOCK) * ROW_KEY_BLOCK,
    )
    states = padded.block_states(ROW_QUERIES, ROW_KEY_BLOCK)
    if not is_eager((states,)):
        return None
    ranges = []
    for row, row_states in enumerate(ops.convert_to_numpy(states)):
        visited = np.flatnonzero(row_states != EMPTY)
        first, last = (visited[0], visited[-1] + 1) if len(visited) else (0, 0)
        ranges.append(
            (
                row * ROW_QUERIES,
                min((row + 1) * ROW_QUERIES, query_length),
                int(first) * ROW_KEY_BLOCK,
                min(int(last) * ROW_KEY_BLOCK, key_length),
            )
        )
    return ranges


def _by_query_rows(query, key, value, pattern, scale):
    query_length, key_length = ops.shape(query)[1], ops.shape(key)[1]
    ranges = row_key_ranges(pattern, query_length, key_length)
    if ranges is None:  # traced: the dense mask of the pattern
        allowed = pattern.allowed(0, query_length, 0, key_length)
        return _masked(query, key, value, allowed, scale)
    outputs = []
    for query_start, query_stop, key_start, key_stop in ranges:
        rows = query[:, query_start:query_stop]
        if key_start == key_stop:  # no query of the row attends anything
            shape = (*ops.shape(rows)[:3], ops.shape(value)[3])
            outputs.append(ops.zeros(shape, rows.dtype))
            continue
        allowed = pattern.allowed(
            query_start, query_stop - query_start, key_start, key_stop - key_start
        )
        keys = key[:, key_start:key_stop]
        values = value[:, key_start:key_stop]
        outputs.append(_masked(rows, keys, values, allowed, scale))
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)


def _masked(query, key, value, allowed, scale):
    """The kernel with a boolean mask; rows with no allowed key give zeros."""
    # Kernels return NaN (or a uniform average) for rows with no allowed key. Let
    # those rows attend everywhere, then zero them, so gradients stay finite too.
    has_key = ops.any(allowed, axis=-1, keepdims=True)  # (B|1, H|1, T|1, 1)
    allowed = ops.logical_or(allowed, ops.logical_not(has_key))
    output = _kernel(query, key, value, allowed, False, scale)
    keep = ops.transpose(ops.cast(has_key, output.dtype), (0, 2, 1, 3))  # (B,T,H,1)
    return output * keep


def _kernel(query, key, value, mask, is_causal, scale):
    """The backend's kernel on `(B, T, H, D)` tensors and a boolean mask or None."""
    if keras.backend.backend() == "torch":
        return _torch_attention(query, key, value, mask, is_causal, scale)
    return ops.dot_product_attention(
        query, key, value, mask=mask, scale=scale, is_causal=is_causal
    )


def _torch_attention(query, key, value, mask, is_causal, scale):
    # PyTorch's kernel reads strided heads-first views as they are; Keras' op
    # copies them contiguous first (a decoding step copied every layer's whole
    # key and value cache per token: 0.2 of its time on 2 CPU cores).
    import torch

    dtype = torch.promote_types(
        torch.promote_types(query.dtype, key.dtype), value.dtype
    )
    query, key, value = (x.to(dtype).transpose(1, 2) for x in (query, key, value))
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=mask,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=int(key.shape[1]) != int(query.shape[1]),  # ints when traced
    )
    return output.transpose(1, 2)


def _jax_windowed_attention(query, key, value, pattern, scale):
    # Every row sees its own position (causal) or a band around it, so no row is
    # empty when there is no mask (the only case taken here).
    import jax

    window = pattern.sliding_window - 1
    return jax.nn.dot_product_attention(
        query,
        key,
        value,
        scale=scale,
        is_causal=pattern.is_causal,
        local_window_size=(window, 0 if pattern.is_causal else window),
    )
