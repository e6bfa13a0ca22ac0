"""The one attention core: `dot_product_attention` and the path it takes.

Three implementations give the same numbers:

- "fused": the backend's kernel (PyTorch's `scaled_dot_product_attention`, called
  directly; `jax.nn.dot_product_attention` and cuDNN through
  `keras.ops.dot_product_attention`),
  taken only for what the kernel computes exactly: masks, causal, on JAX a
  sliding window, and on PyTorch windows and segments, one row of 1,024 queries
  at a time with the keys that row may attend and its mask (`_fused.py`).
- "chunked": online softmax over key blocks with a recomputing backward pass, so
  memory grows linearly with the sequence length on every backend; a block map
  skips the blocks the attention pattern rules out (`_chunked.py`).
- "math": `softmax(QKᵀ·scale)V` written out; the only path that returns the scores
  and the one that applies attention dropout (`_math.py`).

What may attend is the call's `AttentionPattern` (`_pattern.py`: causal, window,
segments, mask, mask_mod); what each logit becomes its `LogitModifiers` (`_logits.py`:
bias, score_mod, soft cap); sinks join the softmax denominator.
"""

import math

import keras
from keras import ops

from keras_attn._checks import check_choice
from keras_attn._checks import check_rate
from keras_attn.ops import _arguments
from keras_attn.ops import _compiled
from keras_attn.ops._arguments import OWNER as _OWNER
from keras_attn.ops._chunked import default_block_size
from keras_attn.ops._fused import fused_attention
from keras_attn.ops._fused import has_gpu
from keras_attn.ops._fused import row_key_ranges
from keras_attn.ops._logits import LogitModifiers
from keras_attn.ops._math import math_attention
from keras_attn.ops._pattern import AttentionPattern
from keras_attn.ops.masks import as_attention_mask
from keras_attn.ops.masks import check_attention_mask

IMPLEMENTATIONS = ("fused", "chunked", "math")

# Above this many bytes of float32 scores, the automatic choice streams the keys in
# chunks instead of materialising the (B, H, T, S) matrix.
CHUNKED_THRESHOLD_BYTES = 256 * 2**20
# Up to this many mask entries, computing every block the mask covers beats the
# chunked path's block skipping for a window or documents: on PyTorch its fused
# kernel given each row of queries' mask (`_fused.py`; entries summed over the
# rows), on TensorFlow the math path given the dense (T, S) mask (1.8x faster at
# 4 rows of 1,024 tokens, even at one of 2,048, slower at 4,096). JAX compiles
# the chunked loops and skips blocks at any size.
DENSE_PATTERN_ELEMENTS = {"torch": 8192 * 8192, "tensorflow": 2048 * 2048}


def dot_product_attention(
    query,
    key,
    value,
    mask=None,
    is_causal=False,
    scale=None,
    dropout_rate=0.0,
    training=False,
    return_attention_scores=False,
    implementation=None,
    seed=None,
    chunk_size=None,
    sliding_window=None,
    segment_ids=None,
    bias=None,
    logit_soft_cap=None,
    sinks=None,
    mask_mod=None,
    score_mod=None,
):
    """Scaled dot-product attention, `softmax(QKᵀ·scale)V`, on any backend.

    Logits, bias, soft cap, sinks and softmax are computed in float32 whatever the
    input dtype; the output is cast back to the query's dtype. A query row whose
    keys are all masked returns zeros (never NaN) on every path. Grouped-query and
    multi-query attention are supported: query head `h` reads key/value head
    `h // (H // Hkv)`.

    Each logit is computed as: `q·k·scale`, plus `bias`, through `score_mod`,
    soft-capped, then masked (`mask`, causal, window, segments, `mask_mod` all
    combine by AND); the softmax includes the sinks. All arguments combine.

    Args:
        query: tensor `(B, T, H, D)`.
        key: tensor `(B, S, Hkv, D)` with `H % Hkv == 0`.
        value: tensor `(B, S, Hkv, Dv)`: the key's batch size and length.
        mask: optional boolean (or 0/1 integer) tensor, True where a query may
            attend a key, of rank 2 `(T, S)`, 3 `(B, T, S)` or 4 `(B, H, T, S)`;
            size-1 axes broadcast. Float masks are refused: an additive mask
            (0 = attend, -inf = masked) converts with `additive_mask == 0`.
        is_causal: if True, query `i` attends only keys `j <= i`.
        scale: logit scale; defaults to `1 / sqrt(D)`.
        dropout_rate: dropout on the attention weights, applied when `training`.
        training: whether the call is a training step (enables dropout).
        return_attention_scores: also return the attention weights
            `(B, H, T, S)`; forces the math path.
        implementation: `None` (choose automatically), `"fused"`, `"chunked"` or
            `"math"`. The automatic choice depends on the call (`training`,
            `return_attention_scores`, sizes, dtype, arguments), not on
            configuration: math when scores or dropout are needed; chunked when
            the float32 score matrix would exceed 256 MiB, or when a window or
            segment ids rule out whole blocks of queries and keys longer than
            a block (except while the mask the faster path needs is small: on
            PyTorch, whose kernel takes rows of 1,024 queries with the keys
            each row may attend, up to 8,192² entries of those rows' masks
            over the batch; on TensorFlow, which then takes the math path,
            2,048² entries of the dense mask); else
            the backend's fused kernel where it computes exactly this call
            (float32 softmax, no bias, cap, sinks or modifiers; segments only
            on PyTorch; a window on JAX and PyTorch), else math.
        seed: seed or `keras.random.SeedGenerator` for dropout.
        chunk_size: block length of the chunked path (default 512; 1,024 on
            TensorFlow without a window or segments).
        sliding_window: optional int `W >= 1`: query `i` sees key `j` only if
            `|i - j| < W`; with `is_causal`, `i - W < j <= i`.
        segment_ids: optional integer `(B, T)` for self-attention, or a pair
            `(query_segment_ids (B, T), key_segment_ids (B, S))`: a query
            attends only keys of its own segment (packed documents).
        bias: optional float tensor broadcastable to `(B, H, T, S)`, added to
            the scaled logits (ALiBi, relative position biases). Its gradient
            is computed on every path.
        logit_soft_cap: optional float `c > 0`: logits become
            `c * tanh(logits / c)` after scaling, bias and `score_mod`.
        sinks: optional float `(H,)`: one logit per query head that joins the
            softmax denominator and carries no value, so rows sum to less
            than one.
        mask_mod: optional `mask_mod(batch, head, q_idx, kv_idx) -> bool`,
            written with `keras.ops` on broadcastable int32 index tensors of
            rank 4 (`(B, 1, 1, 1)`, `(1, H, 1, 1)`, `(1, 1, T, 1)`,
            `(1, 1, 1, S)`), as in FlexAttention.
        score_mod: optional `score_mod(score, batch, head, q_idx, kv_idx) ->
            score` on the `(B, H, T, S)` float32 logits (a block of them on the
            chunked path). On the chunked path, tensors it closes over are
            constants for the gradient: pass a trainable bias as `bias`.

    Returns:
        The attention output `(B, T, H, Dv)`, or `(output, scores)` when
        `return_attention_scores=True`.

    Example:
    ```python
    q = keras.random.normal((2, 5, 4, 8))
    kv = keras.random.normal((2, 7, 2, 8))  # 2 key/value heads: grouped query
    out = keras_attn.ops.dot_product_attention(q, kv, kv, is_causal=True)
    out.shape  # (2, 5, 4, 8)
    # A packed row of two documents, each seeing the last 3 tokens of its own.
    x = keras.random.normal((1, 6, 4, 8))
    out = keras_attn.ops.dot_product_attention(
        x, x, x, is_causal=True, sliding_window=3,
        segment_ids=[[0, 0, 0, 0, 1, 1]],
    )
    ```
    """
    query, key, value = map(ops.convert_to_tensor, (query, key, value))
    _arguments.check_shapes(query, key, value)
    if mask is not None:
        mask = as_attention_mask(mask, _OWNER, "mask")
        check_attention_mask(mask, _arguments.score_shape(query, key), _OWNER, "mask")
    check_choice(_OWNER, "implementation", implementation, (None, *IMPLEMENTATIONS))
    dropout_rate = check_rate(_OWNER, "dropout_rate", dropout_rate)
    pattern = AttentionPattern(
        ops.shape(query)[1],
        ops.shape(key)[1],
        ops.shape(query)[0],
        query.shape[2],
        is_causal=bool(is_causal),
        sliding_window=_arguments.check_sliding_window(sliding_window),
        segment_ids=_arguments.as_segment_ids(
            segment_ids, _arguments.score_shape(query, key)
        ),
        mask=mask,
        mask_mod=_arguments.check_callable(
            "mask_mod", mask_mod, "(batch, head, q_idx, kv_idx) -> bool"
        ),
    )
    modifiers = LogitModifiers(
        _arguments.as_bias(bias, _arguments.score_shape(query, key)),
        _arguments.check_soft_cap(logit_soft_cap),
        _arguments.check_callable(
            "score_mod", score_mod, "(score, batch, head, q_idx, kv_idx) -> score"
        ),
        pattern,
        key.shape[2],
    )
    sinks = _arguments.as_sinks(sinks, query)
    head_dim = query.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    chunk_size = chunk_size or default_block_size(pattern)
    apply_dropout = bool(training) and dropout_rate > 0.0
    unfusable = _unfusable_argument(pattern, modifiers, sinks)
    if implementation is None:
        implementation = _choose_implementation(
            query,
            key,
            pattern,
            chunk_size,
            needs_math=return_attention_scores or apply_dropout,
            fusable=unfusable is None and _fused_supports(query, value),
        )
    if implementation != "math" and (return_attention_scores or apply_dropout):
        needs = "return_attention_scores" if return_attention_scores else "dropout"
        raise ValueError(
            f"{_OWNER}: argument `implementation` must be 'math' or None when "
            f"{needs} is requested; received {implementation!r}."
        )

    if implementation == "fused":
        _check_fused_supports(query, value, unfusable)
        return fused_attention(query, key, value, pattern, scale)
    if implementation == "chunked":
        return _compiled.attention(
            query, key, value, pattern, modifiers, sinks, scale, chunk_size
        )
    dropout_rate = dropout_rate if apply_dropout else 0.0
    output, scores = math_attention(
        query, key, value, pattern, modifiers, sinks, scale, dropout_rate, seed
    )
    if return_attention_scores:
        return output, scores
    return output


def _unfusable_argument(pattern, modifiers, sinks):
    """The first argument of the call the backend's kernel cannot express, or None."""
    # PyTorch's kernel takes any boolean mask in linear memory (flash-style), so
    # a window and documents go to it as the dense mask of the pattern.
    dense_patterns = keras.backend.backend() == "torch"
    given = {
        "segment_ids": pattern.segment_ids is not None and not dense_patterns,
        "bias": modifiers.bias is not None,
        "logit_soft_cap": modifiers.logit_soft_cap is not None,
        "sinks": sinks is not None,
        "mask_mod": pattern.mask_mod is not None,
        "score_mod": modifiers.score_mod is not None,
        # jax.nn's `local_window_size`; TensorFlow has no fused kernel.
        "sliding_window": bool(pattern.sliding_window)
        and not dense_patterns
        and (
            keras.backend.backend() != "jax"
            or pattern.mask is not None
            or not _same_static_length(pattern)
        ),
    }
    return next((name for name, present in given.items() if present), None)


def _same_static_length(pattern):
    lengths = (pattern.query_length, pattern.key_length)
    return all(isinstance(n, int) for n in lengths) and lengths[0] == lengths[1]


def _choose_implementation(query, key, pattern, chunk_size, needs_math, fusable):
    """The path for a call: `needs_math` when it returns scores or applies
    dropout; `fusable` when the backend's kernel computes exactly this call."""
    if needs_math:
        return "math"
    batch, query_length, heads, _ = query.shape
    key_length = key.shape[1]
    # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
    if all(isinstance(size, int) for size in (query_length, key_length, heads)):
        batch = batch if isinstance(batch, int) else 1
        score_bytes = 4 * batch * heads * query_length * key_length
        fused_is_linear = fusable and _fused_is_linear_memory()
        if score_bytes > CHUNKED_THRESHOLD_BYTES and not fused_is_linear:
            return "chunked"
        # A window or documents rule out whole blocks: only chunked skips them
        # (XLA's windowed kernel on CPU computes every block), which pays off
        # unless the fused kernel is that much faster.
        sparse = pattern.sliding_window or pattern.segment_ids is not None
        if (
            sparse
            and min(query_length, key_length) > chunk_size
            and not _beats_block_skipping(
                fusable, pattern, batch, query_length, key_length
            )
        ):
            return "chunked"
    if fusable and _fused_computes_float32_softmax(query.dtype):
        return "fused"
    return "math"


def _beats_block_skipping(fusable, pattern, batch, query_length, key_length):
    """Whether, for a window or documents, the fused kernel (PyTorch's by rows of
    queries, while their masks are small; any on GPU) or, on TensorFlow, the math
    path beats skipping blocks."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return batch * query_length * key_length <= DENSE_PATTERN_ELEMENTS[backend]
    if not fusable:
        return False
    if backend == "torch":
        ranges = row_key_ranges(pattern, query_length, key_length)
        if ranges is None:  # traced: the fused path takes the dense mask
            entries = query_length * key_length
        else:
            entries = sum((q1 - q0) * (k1 - k0) for q0, q1, k0, k1 in ranges)
        return batch * entries <= DENSE_PATTERN_ELEMENTS[backend]
    return has_gpu()


def _fused_supports(query, value):
    # Keras' JAX kernel assumes the value head size equals the query head size.
    return keras.backend.backend() != "jax" or value.shape[-1] == query.shape[-1]


def _check_fused_supports(query, value, unfusable):
    if unfusable is not None:
        raise ValueError(
            f"{_OWNER}: argument `implementation` cannot be 'fused' with "
            f"`{unfusable}` on the {keras.backend.backend()} backend: its kernel "
            "cannot express it exactly; use 'chunked', 'math' or None."
        )
    if not _fused_supports(query, value):
        raise ValueError(
            f"{_OWNER}: argument `implementation` cannot be 'fused' on the JAX "
            "backend when the value head size differs from the query head size "
            f"({value.shape[-1]} != {query.shape[-1]}); use 'math' or 'chunked'."
        )


def _fused_is_linear_memory():
    # PyTorch's CPU and CUDA kernels are flash-style; XLA on CPU is not.
    return keras.backend.backend() == "torch" or has_gpu()


def _fused_computes_float32_softmax(dtype):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return False  # no fused kernel: Keras writes the math out itself
    if backend == "torch":
        return True  # its CPU and CUDA kernels accumulate in float32
    return dtype == "float32" or has_gpu()  # XLA on CPU computes in dtype
