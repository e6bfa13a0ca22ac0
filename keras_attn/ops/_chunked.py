"""Chunked attention: online softmax over key blocks, memory linear in length.

The forward pass visits (query block, key block) pairs and keeps, per query row,
the running maximum `m`, normaliser `denom` and weighted sum (Milakov & Gimelshein,
2018; Dao et al., 2022). It stores only the output and the row log-sum-exp. The
backward pass recomputes each block's probabilities from the log-sum-exp instead of
keeping the (T, S) matrix, in two sweeps: one over query blocks for dQ, one over key
blocks for dK and dV, so that every accumulator stays local to its loop.

Blocks entirely above the causal diagonal are skipped, and blocks that every query
of the block sees whole (below the diagonal, no padding, no mask) run without the
mask arithmetic, in a loop of their own. Loops are `keras.ops.fori_loop`,
so the graph stays small under `jit` on JAX and TensorFlow, except that TensorFlow's
loops run one iteration at a time (see `_fori_loop`).
"""

import keras
from keras import ops

from keras_attn.ops._grouped import NEG
from keras_attn.ops._grouped import group_mask_heads
from keras_attn.ops._grouped import merge_query_heads
from keras_attn.ops._grouped import split_query_heads


def chunked_attention(query, key, value, mask, is_causal, scale, chunk_size):
    """Same contract as the math path; `mask` is rank 4 or None."""
    dtype = query.dtype
    num_kv_heads = key.shape[2]
    query_length, key_length = ops.shape(query)[1], ops.shape(key)[1]
    blocks = _Blocks(query_length, key_length, chunk_size, is_causal)

    q = split_query_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    q = _pad_axis(q, 1, blocks.padded_query_length - query_length)
    k = _pad_axis(ops.cast(key, "float32"), 1, blocks.padded_key_length - key_length)
    v = _pad_axis(ops.cast(value, "float32"), 1, blocks.padded_key_length - key_length)
    if mask is not None:
        mask = _pad_mask(group_mask_heads(mask, num_kv_heads), blocks)

    output = _attend(q, k, v, _BlockMask(blocks, mask))  # (B, Tp, Hkv, G, Dv)
    output = merge_query_heads(output[:, :query_length])
    return ops.cast(output, dtype)


class _Blocks:
    """Block sizes and counts along the query and key axes."""

    def __init__(self, query_length, key_length, chunk_size, is_causal):
        self.query_length, self.key_length = query_length, key_length
        self.query_block = _block_size(query_length, chunk_size)
        self.key_block = _block_size(key_length, chunk_size)
        self.num_query_blocks = _ceil_div(query_length, self.query_block)
        self.num_key_blocks = _ceil_div(key_length, self.key_block)
        self.padded_query_length = self.num_query_blocks * self.query_block
        self.padded_key_length = self.num_key_blocks * self.key_block
        self.is_causal = is_causal

    def key_blocks_for(self, i):
        """Key blocks that query block `i` can see: all, or up to the diagonal."""
        if not self.is_causal:
            return self.num_key_blocks
        last_query = (i + 1) * self.query_block
        return ops.minimum(self.num_key_blocks, _ceil_div(last_query, self.key_block))

    def first_query_block_for(self, j):
        """First query block that can see key block `j`."""
        if not self.is_causal:
            return 0
        return (j * self.key_block) // self.query_block

    def whole_key_blocks(self):
        """Key blocks without padding: `[0, whole_key_blocks())`."""
        return self.key_length // self.key_block

    def unmasked_key_blocks_for(self, i):
        """Key blocks `[0, n)` that every query of block `i` sees whole."""
        if not self.is_causal:
            return self.whole_key_blocks()
        first_query = i * self.query_block
        return ops.minimum(self.whole_key_blocks(), (first_query + 1) // self.key_block)

    def first_unmasked_query_block_for(self, j):
        """Query blocks `[n, end)` whose every query sees key block `j` whole."""
        if not self.is_causal:
            return 0
        last_key = (j + 1) * self.key_block - 1
        first = ops.maximum(
            self.first_query_block_for(j), _ceil_div(last_key, self.query_block)
        )
        return ops.minimum(first, self.num_query_blocks)


class _BlockMask:
    """Which (query, key) pairs of block (i, j) may attend: padding, causal, mask."""

    def __init__(self, blocks, mask):
        self.blocks, self.mask = blocks, mask

    def unmasked_key_blocks_for(self, i):
        """Key blocks `[0, n)` query block `i` attends without any mask."""
        if self.mask is not None:
            return 0
        return self.blocks.unmasked_key_blocks_for(i)

    def first_unmasked_query_block_for(self, j):
        """Query blocks `[n, end)` that attend key block `j` without any mask."""
        b = self.blocks
        if self.mask is not None:
            return b.num_query_blocks
        # A key block with padding is masked for every query block.
        return ops.where(
            j < b.whole_key_blocks(),
            b.first_unmasked_query_block_for(j),
            b.num_query_blocks,
        )

    def __call__(self, i, j):
        b = self.blocks
        query_positions = i * b.query_block + ops.arange(b.query_block)
        key_positions = j * b.key_block + ops.arange(b.key_block)
        allowed = ops.less(key_positions, b.key_length)[None, :]  # (1, bk)
        if b.is_causal:
            allowed = ops.logical_and(
                allowed, query_positions[:, None] >= key_positions[None, :]
            )  # (bq, bk)
        allowed = allowed[None, None, None]  # (1, 1, 1, bq|1, bk)
        if self.mask is None:
            return allowed
        return ops.logical_and(allowed, self._mask_block(i, j))

    def _mask_block(self, i, j):
        b, mask = self.blocks, self.mask
        mask_shape = ops.shape(mask)
        query_axis_full, key_axis_full = mask.shape[3] != 1, mask.shape[4] != 1
        start = [
            0,
            0,
            0,
            i * b.query_block if query_axis_full else 0,
            j * b.key_block if key_axis_full else 0,
        ]
        size = list(mask_shape[:3]) + [
            b.query_block if query_axis_full else 1,
            b.key_block if key_axis_full else 1,
        ]
        return ops.slice(mask, start, size)


def _attend(q, k, v, block_mask):
    @ops.custom_gradient
    def attend(q, k, v):
        output, lse = _forward(q, k, v, block_mask)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _backward(q, k, v, output, lse, upstream, block_mask)

        return output, grad

    return attend(q, k, v)


def _forward(q, k, v, block_mask):
    blocks = block_mask.blocks
    bq = blocks.query_block
    batch, padded_length, kv_heads, groups, _ = ops.shape(q)
    value_dim = v.shape[-1]
    row_shape = (batch, kv_heads, groups, bq)

    def query_block(i, carry):
        output, lse = carry
        q_i = _block(q, i, bq)  # (B, bq, Hkv, G, D)

        def key_block(masked):
            def step(j, state):
                m, denom, acc = state
                # (B, Hkv, G, bq, bk)
                s, allowed = _logits(q_i, k, i, j, block_mask, masked)
                m_new = ops.maximum(m, ops.max(s, axis=-1))
                p = _where(allowed, ops.exp(s - m_new[..., None]), 0.0)
                correction = ops.exp(m - m_new)
                denom = denom * correction + ops.sum(p, axis=-1)
                v_j = _block(v, j, blocks.key_block)
                pv = ops.einsum("bkgqs,bskd->bkgqd", p, v_j)
                return m_new, denom, acc * correction[..., None] + pv

            return step

        init = (
            ops.full(row_shape, NEG, "float32"),
            ops.zeros(row_shape, "float32"),
            ops.zeros(row_shape + (value_dim,), "float32"),
        )
        unmasked = block_mask.unmasked_key_blocks_for(i)
        state = _fori_loop(0, unmasked, key_block(masked=False), init)
        m, denom, acc = _fori_loop(
            unmasked, blocks.key_blocks_for(i), key_block(masked=True), state
        )
        has_key = denom > 0.0  # rows with no allowed key give zeros, never NaN
        safe_denom = ops.where(has_key, denom, 1.0)
        out_i = ops.transpose(acc / safe_denom[..., None], (0, 3, 1, 2, 4))
        lse_i = ops.where(has_key, m + ops.log(safe_denom), -NEG)
        output = ops.slice_update(output, (0, i * bq, 0, 0, 0), out_i)
        lse = ops.slice_update(lse, (0, 0, 0, i * bq), lse_i)
        return output, lse

    init = (
        ops.zeros((batch, padded_length, kv_heads, groups, value_dim), "float32"),
        ops.zeros((batch, kv_heads, groups, padded_length), "float32"),
    )
    return _fori_loop(0, blocks.num_query_blocks, query_block, init)


def _backward(q, k, v, output, lse, d_output, block_mask):
    blocks = block_mask.blocks
    bq, bk = blocks.query_block, blocks.key_block
    delta = ops.sum(d_output * output, axis=-1)  # (B, Tp, Hkv, G)
    delta = ops.transpose(delta, (0, 2, 3, 1))  # (B, Hkv, G, Tp)

    def probabilities(i, j, q_i, d_out_i, masked):
        s, allowed = _logits(q_i, k, i, j, block_mask, masked)
        lse_i = _block(lse, i, bq, axis=3)
        p = _where(allowed, ops.exp(s - lse_i[..., None]), 0.0)
        v_j = _block(v, j, bk)
        dp = ops.einsum("bqkgd,bskd->bkgqs", d_out_i, v_j)
        ds = p * (dp - _block(delta, i, bq, axis=3)[..., None])
        return p, ds  # (B, Hkv, G, bq, bk)

    def dq_block(i, dq):
        q_i, d_out_i = _block(q, i, bq), _block(d_output, i, bq)

        def key_block(masked):
            def step(j, dq_i):
                _, ds = probabilities(i, j, q_i, d_out_i, masked)
                return dq_i + ops.einsum("bkgqs,bskd->bqkgd", ds, _block(k, j, bk))

            return step

        unmasked = block_mask.unmasked_key_blocks_for(i)
        dq_i = _fori_loop(0, unmasked, key_block(False), ops.zeros_like(q_i))
        dq_i = _fori_loop(unmasked, blocks.key_blocks_for(i), key_block(True), dq_i)
        return ops.slice_update(dq, (0, i * bq, 0, 0, 0), dq_i)

    def dkv_block(j, carry):
        dk, dv = carry

        def query_block(masked):
            def step(i, state):
                dk_j, dv_j = state
                q_i, d_out_i = _block(q, i, bq), _block(d_output, i, bq)
                p, ds = probabilities(i, j, q_i, d_out_i, masked)
                dv_j = dv_j + ops.einsum("bkgqs,bqkgd->bskd", p, d_out_i)
                dk_j = dk_j + ops.einsum("bkgqs,bqkgd->bskd", ds, q_i)
                return dk_j, dv_j

            return step

        init = (ops.zeros_like(_block(k, j, bk)), ops.zeros_like(_block(v, j, bk)))
        unmasked = block_mask.first_unmasked_query_block_for(j)
        state = _fori_loop(
            blocks.first_query_block_for(j), unmasked, query_block(True), init
        )
        dk_j, dv_j = _fori_loop(
            unmasked, blocks.num_query_blocks, query_block(False), state
        )
        return (
            ops.slice_update(dk, (0, j * bk, 0, 0), dk_j),
            ops.slice_update(dv, (0, j * bk, 0, 0), dv_j),
        )

    dq = _fori_loop(0, blocks.num_query_blocks, dq_block, ops.zeros_like(q))
    dk, dv = _fori_loop(
        0, blocks.num_key_blocks, dkv_block, (ops.zeros_like(k), ops.zeros_like(v))
    )
    return dq, dk, dv


def _fori_loop(lower, upper, body, init):
    """`keras.ops.fori_loop`, with TensorFlow's iterations run one after another.

    `tf.while_loop` runs up to 10 iterations at once where their data allow it, and
    each block iteration here holds several (bq, bk) score blocks per head: at 16k
    tokens that took a training step from 1 GiB to 4 GiB. One at a time, memory
    stays linear in the length as on JAX (whose loops are sequential already).
    """
    if keras.backend.backend() != "tensorflow":
        return ops.fori_loop(lower, upper, body, init)
    import tensorflow as tf

    return tf.while_loop(
        lambda i, _: i < upper,
        lambda i, value: (i + 1, body(i, value)),
        (lower, init),
        parallel_iterations=1,
    )[1]


def _logits(q_i, k, i, j, block_mask, masked):
    """Scores of block (i, j) and which may attend (`None`: all, when unmasked)."""
    k_j = _block(k, j, block_mask.blocks.key_block)
    s = ops.einsum("bqkgd,bskd->bkgqs", q_i, k_j)  # (B, Hkv, G, bq, bk)
    if not masked:
        return s, None
    allowed = block_mask(i, j)
    return ops.where(allowed, s, NEG), allowed


def _where(allowed, x, fill):
    return x if allowed is None else ops.where(allowed, x, fill)


def _block(x, index, size, axis=1):
    """Slice `size` elements starting at `index * size` along `axis`."""
    shape = ops.shape(x)
    start = [0] * len(shape)
    start[axis] = index * size
    block_shape = list(shape)
    block_shape[axis] = size
    return ops.slice(x, start, block_shape)


def _pad_axis(x, axis, amount, constant=0):
    if isinstance(amount, int) and amount == 0:
        return x
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (0, amount)
    return ops.pad(x, widths, constant_values=constant)


def _pad_mask(mask, blocks):
    """Pad the query and key axes of a (B|1, Hkv|1, G|1, T|1, S|1) mask with False."""
    if mask.shape[3] != 1:
        extra = blocks.padded_query_length - blocks.query_length
        mask = _pad_axis(mask, 3, extra, constant=False)
    if mask.shape[4] != 1:
        extra = blocks.padded_key_length - blocks.key_length
        mask = _pad_axis(mask, 4, extra, constant=False)
    return mask


def _block_size(length, chunk_size):
    return min(chunk_size, length) if isinstance(length, int) else chunk_size


def _ceil_div(a, b):
    return (a + b - 1) // b
