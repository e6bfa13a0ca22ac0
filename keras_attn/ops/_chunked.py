"""Chunked attention: online softmax over key blocks, memory linear in length.

The forward pass visits (query block, key block) pairs and keeps, per query row,
the running maximum `m`, normaliser `denom` and weighted sum (Milakov & Gimelshein,
2018; Dao et al., 2022). It stores only the output and the row log-sum-exp. The
backward pass recomputes each block's probabilities from the log-sum-exp instead of
keeping the (T, S) matrix, once, in one sweep over key blocks that produces dK and
dV of the block and adds to dQ (Dao, 2023). Queries, keys and values are
head-major inside, so every block product is a plain batched matmul.

Which pairs it visits comes from the block map (`_BlockMap`): the call's attention
pattern classifies every (query block, key block) as empty, whole or partial without
building a (T, S) tensor. Empty blocks are never visited; whole blocks run without
mask arithmetic, in a loop of their own; only partial blocks evaluate the mask.
Loops are `keras.ops.fori_loop`, so the graph stays small under `jit` on JAX and
TensorFlow, except that TensorFlow's loops run one iteration at a time (see
`_block_loops.fori_loop`).
"""

import keras
from keras import ops

from keras_attn.ops import _grouped as grouped
from keras_attn.ops._block_loops import add_block
from keras_attn.ops._block_loops import concatenate_blocks
from keras_attn.ops._block_loops import fori_loop
from keras_attn.ops._block_loops import map_blocks
from keras_attn.ops._grouped import NEG
from keras_attn.ops._grouped import group_mask_heads
from keras_attn.ops._grouped import merge_query_heads
from keras_attn.ops._grouped import split_query_heads
from keras_attn.ops._logits import sink_logits
from keras_attn.ops._pattern import EMPTY
from keras_attn.ops._pattern import WHOLE
from keras_attn.ops._slicing import block
from keras_attn.ops._slicing import pad_end

# Block length: 512, except for dense patterns (causal, padding) on TensorFlow,
# whose graph pays a cost per block that XLA does not: 1,024 is faster there
# (16,384-token causal training step, AMD EPYC: 8.7-8.9 s against 9.2-9.6 s) and
# slower on JAX (12.4 s against 11.0 s). A window, documents or a mask_mod keep
# 512: finer blocks skip more of what they rule out.
DEFAULT_BLOCK_SIZE = 512
DENSE_PATTERN_BLOCK_SIZES = {"tensorflow": 1024}


def default_block_size(pattern):
    """The block length for `pattern` when the call gives no `chunk_size`."""
    sparse = pattern.sliding_window or pattern.mask_mod is not None
    if sparse or pattern.segment_ids is not None:
        return DEFAULT_BLOCK_SIZE
    backend = keras.backend.backend()
    return DENSE_PATTERN_BLOCK_SIZES.get(backend, DEFAULT_BLOCK_SIZE)


def chunked_attention(query, key, value, pattern, modifiers, sinks, scale, chunk_size):
    """Same contract as the math path: `(B, T, H, Dv)` in the query's dtype."""
    dtype = query.dtype
    num_kv_heads = key.shape[2]
    query_length, key_length = ops.shape(query)[1], ops.shape(key)[1]
    query_block = _block_size(query_length, chunk_size)
    key_block = _block_size(key_length, chunk_size)
    padded_query = _ceil_div(query_length, query_block) * query_block
    padded_key = _ceil_div(key_length, key_block) * key_block

    # Head-major once, so that every block product is a plain batched matmul.
    q = split_query_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    q = pad_end(ops.transpose(q, (0, 2, 3, 1, 4)), 3, padded_query - query_length)
    k = pad_end(_heads_first(key), 2, padded_key - key_length)
    v = pad_end(_heads_first(value), 2, padded_key - key_length)
    pattern = pattern.padded(padded_query, padded_key)
    modifiers = modifiers.padded(padded_query, padded_key, pattern)
    block_map = _BlockMap(
        pattern.block_states(query_block, key_block), query_block, key_block
    )
    sinks = None if sinks is None else sink_logits(sinks, num_kv_heads)
    attention = _Attention(block_map, pattern, modifiers, num_kv_heads)
    output = attention(q, k, v, modifiers.bias, sinks)  # (B, Hkv, G, Tp, Dv)
    output = ops.transpose(output, (0, 3, 1, 2, 4))[:, :query_length]
    return ops.cast(merge_query_heads(output), dtype)


def _heads_first(x):
    """(B, S, Hkv, D) -> float32 (B, Hkv, S, D)."""
    return ops.transpose(ops.cast(x, "float32"), (0, 2, 1, 3))


class _BlockMap:
    """The blocks each query block visits and each key block is visited by.

    Row `i` lists its key blocks whole ones first: `row_blocks[i, :row_whole[i]]`
    are whole, `row_blocks[i, row_whole[i]:row_visited[i]]` partial; columns
    likewise for the backward pass over key blocks.
    """

    def __init__(self, states, query_block, key_block):
        self.query_block, self.key_block = query_block, key_block
        self.num_query_blocks, self.num_key_blocks = ops.shape(states)
        self.rows = _Order(states)
        self.columns = _Order(ops.transpose(states))


class _Order:
    """Per row of a block-state grid: the visited columns, whole ones first."""

    def __init__(self, states):
        self.width = ops.shape(states)[1]
        self.order = ops.reshape(ops.argsort(-states, axis=1), (-1,))
        self.whole = ops.sum(ops.cast(states == WHOLE, "int32"), axis=1)
        self.visited = ops.sum(ops.cast(states != EMPTY, "int32"), axis=1)

    def bounds(self, row):
        """`(start, whole_end, end)`: whole columns in `[0, whole_end)`."""
        return 0, ops.take(self.whole, row), ops.take(self.visited, row)

    def column(self, row, n):
        return ops.take(self.order, row * self.width + n)


class _Attention:
    """The forward and backward sweeps over one block map.

    Tensors are head-major: queries `(B, Hkv, G, Tp, D)`, keys and values
    `(B, Hkv, Sp, D)`, logits of a block `(B, Hkv, G, bq, bk)`.
    """

    def __init__(self, block_map, pattern, modifiers, num_kv_heads):
        self.map, self.pattern, self.modifiers = block_map, pattern, modifiers
        self.num_kv_heads = num_kv_heads

    def __call__(self, q, k, v, bias, sinks):
        extras = [x for x in (bias, sinks) if x is not None]

        @ops.custom_gradient
        def attend(q, k, v, *extras):
            # The bias and sinks are taken from the arguments, never closed over,
            # so that JAX differentiates them as inputs.
            extras = list(extras)
            bias = extras.pop(0) if has_bias else None
            sinks = extras.pop(0) if has_sinks else None
            attention = _Attention(
                self.map,
                self.pattern,
                self.modifiers.replace(bias=bias),
                self.num_kv_heads,
            )
            output, lse = attention.forward(q, k, v, sinks)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return attention.backward(q, k, v, bias, sinks, output, lse, upstream)

            return output, grad

        has_bias, has_sinks = bias is not None, sinks is not None
        return attend(q, k, v, *extras)

    def logits(self, s, i, j, masked, keys_major=False):
        """The logits of block (i, j) from its scores, and which may attend."""
        bq, bk = self.map.query_block, self.map.key_block
        logits = self.modifiers(s, i * bq, j * bk, keys_major)
        if not masked:
            return logits, None
        allowed = self.pattern.allowed(i * bq, bq, j * bk, bk)
        allowed = group_mask_heads(allowed, self.num_kv_heads)
        if keys_major:
            allowed = grouped.keys_major(allowed)
        return ops.where(allowed, logits, NEG), allowed

    def forward(self, q, k, v, sinks):
        bq, bk = self.map.query_block, self.map.key_block
        batch, kv_heads, groups, _, _ = ops.shape(q)
        value_dim = v.shape[-1]
        row_shape = (batch, kv_heads, groups, bq)

        def query_block(carry, i):
            q_i = _merge_rows(block(q, 3, i * bq, bq))  # (B, Hkv, G * bq, D)

            def key_block(masked):
                def step(n, state):
                    m, denom, acc = state
                    j = self.map.rows.column(i, n)
                    k_j, v_j = block(k, 2, j * bk, bk), block(v, 2, j * bk, bk)
                    s, allowed = self.logits(_scores(q_i, k_j, groups), i, j, masked)
                    m_new = ops.maximum(m, ops.max(s, axis=-1))
                    p = _where(allowed, _exp(s - m_new[..., None]), 0.0)
                    correction = ops.exp(m - m_new)
                    denom = denom * correction + ops.sum(p, axis=-1)
                    pv = ops.einsum("bkqs,bksd->bkqd", _merge_rows(p), v_j)
                    pv = ops.reshape(pv, ops.shape(acc))
                    return m_new, denom, acc * correction[..., None] + pv

                return step

            if sinks is None:
                m, denom = ops.full(row_shape, NEG, "float32"), ops.zeros(row_shape)
            else:
                # A sink is one more logit in the denominator, with no value.
                m, denom = ops.broadcast_to(sinks, row_shape), ops.ones(row_shape)
            state = (m, denom, ops.zeros(row_shape + (value_dim,), "float32"))
            start, whole_end, end = self.map.rows.bounds(i)
            state = fori_loop(start, whole_end, key_block(masked=False), state)
            m, denom, acc = fori_loop(whole_end, end, key_block(masked=True), state)
            has_key = denom > 0.0  # rows with no allowed key give zeros, never NaN
            safe_denom = ops.where(has_key, denom, 1.0)
            out_i = acc / safe_denom[..., None]
            lse_i = ops.where(has_key, m + ops.log(safe_denom), -NEG)
            return carry, (out_i, lse_i)  # (B, Hkv, G, bq, Dv), (B, Hkv, G, bq)

        _, (output, lse) = map_blocks(self.map.num_query_blocks, query_block, 2)
        return concatenate_blocks(output, 3), concatenate_blocks(lse, 3)

    def backward(self, q, k, v, bias, sinks, output, lse, d_output):
        """One sweep over key blocks (FlashAttention-2's backward pass).

        Each visited block (i, j) computes its probabilities once and adds to
        dK_j and dV_j (local to the sweep's step) and to dQ_i (in place, see
        `_block_loops.add_block`). Blocks are keys-major here,
        `(B, Hkv, bk, G, bq)`: dK_j and dV_j are then plain products, and only
        the small K_j is read transposed, for dQ_i, which is accumulated
        transposed, `(B, Hkv, D, G, Tp)`.
        """
        bq, bk = self.map.query_block, self.map.key_block
        groups = q.shape[2]
        delta = ops.sum(d_output * output, axis=-1)  # (B, Hkv, G, Tp)

        def key_block(carry, j):
            k_j, v_j = block(k, 2, j * bk, bk), block(v, 2, j * bk, bk)

            def query_block(masked):
                def step(n, state):
                    dk_j, dv_j, dq_t, d_bias = state
                    i = self.map.columns.column(j, n)
                    q_i = _merge_rows(block(q, 3, i * bq, bq))
                    d_out_i = _merge_rows(block(d_output, 3, i * bq, bq))
                    s = _scores(q_i, k_j, groups, keys_major=True)
                    logits, allowed = self.logits(s, i, j, masked, keys_major=True)
                    p = _exp(logits - block(lse, 3, i * bq, bq)[:, :, None])
                    p = _where(allowed, p, 0.0)
                    dp = _scores(d_out_i, v_j, groups, keys_major=True)
                    d_logits = p * (dp - block(delta, 3, i * bq, bq)[:, :, None])
                    ds = self.modifiers.gradient(s, d_logits, i * bq, j * bk, True)
                    if bias is not None:
                        ds_block = grouped.queries_major(ds)
                        d_bias = _add_bias_block(d_bias, ds_block, i * bq, j * bk)
                    p, ds = _merge_columns(p), _merge_columns(ds)  # (B, Hkv, bk, G*bq)
                    dv_j = dv_j + ops.einsum("bksq,bkqd->bksd", p, d_out_i)
                    dk_j = dk_j + ops.einsum("bksq,bkqd->bksd", ds, q_i)
                    dq_t_i = ops.einsum("bksd,bksq->bkdq", k_j, ds)
                    dq_t_i = ops.reshape(dq_t_i, (-1, *dq_t.shape[1:4], bq))
                    return dk_j, dv_j, add_block(dq_t, 4, i * bq, dq_t_i), d_bias

                return step

            dq_t, d_bias = carry
            state = (ops.zeros_like(k_j), ops.zeros_like(v_j), dq_t, d_bias)
            start, whole_end, end = self.map.columns.bounds(j)
            state = fori_loop(start, whole_end, query_block(False), state)
            dk_j, dv_j, dq_t, d_bias = fori_loop(
                whole_end, end, query_block(True), state
            )
            return (dq_t, d_bias), (dk_j, dv_j)

        # Without a bias, a scalar stands in for its gradient in the scan's carry.
        d_bias = ops.zeros(()) if bias is None else ops.zeros_like(bias)
        carry = (ops.zeros_like(ops.transpose(q, (0, 1, 4, 2, 3))), d_bias)
        (dq_t, d_bias), (dk, dv) = map_blocks(
            self.map.num_key_blocks, key_block, 2, carry
        )
        dq = ops.transpose(dq_t, (0, 1, 3, 4, 2))  # (B, Hkv, G, Tp, D)
        grads = [dq, concatenate_blocks(dk, 2), concatenate_blocks(dv, 2)]
        if bias is not None:
            grads.append(d_bias)
        if sinks is not None:
            # d sink = -Σ_rows p_sink · delta, p_sink = exp(sink - lse).
            p_sink = ops.exp(sinks - lse)  # (B, Hkv, G, Tp)
            grads.append(-ops.sum(p_sink * delta, axis=(0, 3), keepdims=True))
        return tuple(grads)


def _merge_rows(x):
    """`(B, Hkv, G, bq, X)` -> `(B, Hkv, G * bq, X)`: the groups' query rows as one
    matrix, so that every block product is a plain batched matmul over
    `(B, Hkv)` (XLA copied the operand of a product over two axes)."""
    return ops.reshape(x, (-1, x.shape[1], x.shape[2] * x.shape[3], x.shape[4]))


def _merge_columns(x):
    """Keys-major `(B, Hkv, bk, G, bq)` -> `(B, Hkv, bk, G * bq)`."""
    return ops.reshape(x, (-1, x.shape[1], x.shape[2], x.shape[3] * x.shape[4]))


def _scores(rows, keys, groups, keys_major=False):
    """Products of merged query-side rows `(B, Hkv, G * bq, D)` with a key-side
    block `(B, Hkv, bk, D)`: `(B, Hkv, G, bq, bk)`, or keys-major
    `(B, Hkv, bk, G, bq)` (the rows' transposed products)."""
    kv_heads, rows_length, keys_length = rows.shape[1], rows.shape[2], keys.shape[2]
    if keys_major:
        s = ops.einsum("bksd,bkqd->bksq", keys, rows)
        return ops.reshape(
            s, (-1, kv_heads, keys_length, groups, rows_length // groups)
        )
    s = ops.einsum("bkqd,bksd->bkqs", rows, keys)
    return ops.reshape(s, (-1, kv_heads, groups, rows_length // groups, keys_length))


def _add_bias_block(d_bias, ds, query_start, key_start):
    """Add `ds` `(B, Hkv, G, bq, bk)`, summed to the bias' broadcast shape, at its
    block of `d_bias` `(B|1, Hkv|1, G|1, Tp|1, Sp|1)`."""
    axes = tuple(axis for axis in range(5) if d_bias.shape[axis] == 1)
    ds = ops.sum(ds, axis=axes, keepdims=True) if axes else ds
    start = [0, 0, 0, query_start, key_start]
    for axis in (3, 4):
        if d_bias.shape[axis] == 1:
            start[axis] = 0
    shape = ops.shape(ds)
    current = ops.slice(d_bias, start, shape)
    return ops.slice_update(d_bias, start, current + ds)


def _exp(x):
    """`exp(x)` for `x <= 0`, clamped at -80 (e^-80 ≈ 2e-35, nothing next to the
    row's largest term, 1): PyTorch's and TensorFlow's CPU kernels take a slow
    path for the -1e30 logits of masked keys, which are zeroed afterwards."""
    return ops.exp(ops.maximum(x, -80.0))


def _where(allowed, x, fill):
    return x if allowed is None else ops.where(allowed, x, fill)


def _block_size(length, chunk_size):
    return min(chunk_size, length) if isinstance(length, int) else chunk_size


def _ceil_div(a, b):
    return (a + b - 1) // b
