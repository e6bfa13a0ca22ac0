"""The one attention core: `dot_product_attention` and the path it takes.

Three implementations give the same numbers:

- "fused": the backend's kernel through `keras.ops.dot_product_attention` (PyTorch's
  `scaled_dot_product_attention`, `jax.nn.dot_product_attention`, cuDNN on GPU).
- "chunked": online softmax over key blocks with a recomputing backward pass, so
  memory grows linearly with the sequence length on every backend.
- "math": `softmax(QKᵀ·scale)V` written out; the only path that returns the scores
  and the one that applies attention dropout.
"""

import math

import keras
from keras import ops

from keras_attn._checks import check_choice
from keras_attn._checks import check_rate
from keras_attn.ops import _chunked
from keras_attn.ops._grouped import NEG
from keras_attn.ops._grouped import group_mask_heads
from keras_attn.ops._grouped import merge_query_heads
from keras_attn.ops._grouped import split_query_heads
from keras_attn.ops.masks import as_attention_mask
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import check_attention_mask

IMPLEMENTATIONS = ("fused", "chunked", "math")

# Above this many bytes of float32 scores, the automatic choice streams the keys in
# chunks instead of materialising the (B, H, T, S) matrix.
CHUNKED_THRESHOLD_BYTES = 256 * 2**20
DEFAULT_CHUNK_SIZE = 512

_OWNER = "dot_product_attention"


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
):
    """Scaled dot-product attention, `softmax(QKᵀ·scale)V`, on any backend.

    Logits and softmax are computed in float32 whatever the input dtype; the output
    is cast back to the query's dtype. A query row whose keys are all masked returns
    zeros (never NaN) on every path. Grouped-query and multi-query attention are
    supported: query head `h` reads key/value head `h // (H // Hkv)`.

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
            `return_attention_scores`, sizes, dtype), not on configuration:
            math when scores or dropout are needed, chunked when the float32
            score matrix would exceed 256 MiB, else the backend's fused kernel
            where it computes its softmax in float32, else math.
        seed: seed or `keras.random.SeedGenerator` for dropout.
        chunk_size: block length of the chunked path (default 512).

    Returns:
        The attention output `(B, T, H, Dv)`, or `(output, scores)` when
        `return_attention_scores=True`.

    Example:
    ```python
    q = keras.random.normal((2, 5, 4, 8))
    kv = keras.random.normal((2, 7, 2, 8))  # 2 key/value heads: grouped query
    out = keras_attn.ops.dot_product_attention(q, kv, kv, is_causal=True)
    out.shape  # (2, 5, 4, 8)
    ```
    """
    query, key, value = map(ops.convert_to_tensor, (query, key, value))
    _check_shapes(query, key, value)
    if mask is not None:
        mask = as_attention_mask(mask, _OWNER, "mask")
        check_attention_mask(mask, _score_shape(query, key), _OWNER, "mask")
    check_choice(_OWNER, "implementation", implementation, (None, *IMPLEMENTATIONS))
    dropout_rate = check_rate(_OWNER, "dropout_rate", dropout_rate)
    head_dim = query.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    apply_dropout = bool(training) and dropout_rate > 0.0
    if implementation is None:
        implementation = _choose_implementation(
            query, key, value, apply_dropout, return_attention_scores
        )
    if implementation != "math" and (return_attention_scores or apply_dropout):
        needs = "return_attention_scores" if return_attention_scores else "dropout"
        raise ValueError(
            f"{_OWNER}: argument `implementation` must be 'math' or None when "
            f"{needs} is requested; received {implementation!r}."
        )

    if implementation == "fused":
        _check_fused_supports(query, value)
        return _fused_attention(query, key, value, mask, is_causal, scale)
    if implementation == "chunked":
        chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        return _chunked.chunked_attention(
            query, key, value, mask, is_causal, scale, chunk_size
        )
    dropout_rate = dropout_rate if apply_dropout else 0.0
    output, scores = _math_attention(
        query, key, value, mask, is_causal, scale, dropout_rate, seed
    )
    if return_attention_scores:
        return output, scores
    return output


def _choose_implementation(query, key, value, apply_dropout, return_attention_scores):
    if return_attention_scores or apply_dropout:
        return "math"
    batch, query_length, heads, _ = query.shape
    key_length = key.shape[1]
    # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
    if all(isinstance(size, int) for size in (query_length, key_length, heads)):
        batch = batch if isinstance(batch, int) else 1
        score_bytes = 4 * batch * heads * query_length * key_length
        if score_bytes > CHUNKED_THRESHOLD_BYTES and not _fused_is_linear_memory():
            return "chunked"
    if _fused_computes_float32_softmax(query.dtype) and _fused_supports(query, value):
        return "fused"
    return "math"


def _fused_supports(query, value):
    # Keras' JAX kernel assumes the value head size equals the query head size.
    return keras.backend.backend() != "jax" or value.shape[-1] == query.shape[-1]


def _check_fused_supports(query, value):
    if not _fused_supports(query, value):
        raise ValueError(
            f"{_OWNER}: argument `implementation` cannot be 'fused' on the JAX "
            "backend when the value head size differs from the query head size "
            f"({value.shape[-1]} != {query.shape[-1]}); use 'math' or 'chunked'."
        )


def _fused_is_linear_memory():
    # PyTorch's CPU and CUDA kernels are flash-style; XLA on CPU is not.
    return keras.backend.backend() == "torch" or _has_gpu()


def _fused_computes_float32_softmax(dtype):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return False  # no fused kernel: Keras writes the math out itself
    if backend == "torch":
        return True  # its CPU and CUDA kernels accumulate in float32
    return dtype == "float32" or _has_gpu()  # XLA on CPU computes in dtype


_GPU = None


def _has_gpu():
    global _GPU
    if _GPU is None:
        devices = keras.distribution.list_devices()
        _GPU = any(d.lower().startswith(("gpu", "cuda")) for d in devices)
    return _GPU


def _math_attention(query, key, value, mask, is_causal, scale, dropout_rate, seed):
    num_kv_heads = key.shape[2]
    # Scaling the queries costs T·D multiplications instead of T·S on the logits.
    q = split_query_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    k = ops.cast(key, "float32")
    logits = ops.einsum("btkgd,bskd->bkgts", q, k)  # (B, Hkv, G, T, S)
    allowed = _allowed(mask, is_causal, query, key)
    if allowed is not None:
        allowed = group_mask_heads(allowed, num_kv_heads)
        logits = ops.where(allowed, logits, NEG)
    weights = ops.softmax(logits, axis=-1)
    if allowed is not None:
        weights = ops.where(allowed, weights, 0.0)  # fully masked rows -> 0
    if dropout_rate > 0.0:
        weights = keras.random.dropout(weights, dropout_rate, seed=seed)
    value_weights = ops.cast(weights, value.dtype)
    output = ops.einsum("bkgts,bskd->btkgd", value_weights, value)
    output = ops.cast(merge_query_heads(output), query.dtype)
    batch, kv_heads, groups, query_length, key_length = ops.shape(weights)
    scores = ops.reshape(weights, (batch, kv_heads * groups, query_length, key_length))
    return output, ops.cast(scores, query.dtype)


def _fused_attention(query, key, value, mask, is_causal, scale):
    heads = query.shape[2]
    if keras.backend.backend() == "tensorflow" and key.shape[2] == 1 and heads:
        # Keras' TensorFlow kernel repeats key/value heads only when there are
        # several (keras 3.15), so multi-query attention fails in its einsum.
        key = ops.repeat(key, heads, axis=2)
        value = ops.repeat(value, heads, axis=2)
    if mask is None:
        # The kernel's own causal flag: PyTorch's flash kernel then skips the
        # blocks above the diagonal and never builds a (T, S) mask.
        return ops.dot_product_attention(
            query, key, value, scale=scale, is_causal=is_causal
        )
    allowed = _allowed(mask, is_causal, query, key)
    # Kernels return NaN (or a uniform average) for rows with no allowed key. Let
    # those rows attend everywhere, then zero them, so gradients stay finite too.
    has_key = ops.any(allowed, axis=-1, keepdims=True)  # (B|1, H|1, T|1, 1)
    allowed = ops.logical_or(allowed, ops.logical_not(has_key))
    output = ops.dot_product_attention(query, key, value, mask=allowed, scale=scale)
    keep = ops.transpose(ops.cast(has_key, output.dtype), (0, 2, 1, 3))  # (B,T,H,1)
    return output * keep


def _allowed(mask, is_causal, query, key):
    """Padding/attention mask and causal mask as one (B|1, H|1, T|1, S) boolean."""
    if not is_causal:
        return mask
    causal = causal_mask(ops.shape(query)[1], ops.shape(key)[1])[None, None]
    return causal if mask is None else ops.logical_and(mask, causal)


def _check_shapes(query, key, value):
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if len(tensor.shape) != 4:
            raise ValueError(
                f"{_OWNER}: argument `{name}` must have rank 4 (batch, length, "
                f"heads, head_dim); received a tensor of shape {tuple(tensor.shape)}."
            )
    heads, kv_heads = query.shape[2], key.shape[2]
    if value.shape[2] != kv_heads:
        raise ValueError(
            f"{_OWNER}: argument `value` must have as many heads as `key` "
            f"({kv_heads}); received shape {tuple(value.shape)}."
        )
    if heads is not None and kv_heads is not None and heads % kv_heads != 0:
        raise ValueError(
            f"{_OWNER}: argument `key` must have a number of heads that divides "
            f"the query heads ({heads}); received {kv_heads} heads "
            f"(shape {tuple(key.shape)})."
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{_OWNER}: argument `key` must have the query's head_dim "
            f"({query.shape[-1]}); received shape {tuple(key.shape)}."
        )
    # Kernels disagree on a value longer or shorter than the key (one reads past
    # it, one truncates, TensorFlow fails): refuse it here, on every path.
    _check_same_size("value", value, "key", key, axis=1, size="length")
    for name, tensor in (("key", key), ("value", value)):
        _check_same_size(name, tensor, "query", query, axis=0, size="batch size")


def _check_same_size(name, tensor, other_name, other, axis, size):
    """Raise unless `tensor.shape[axis]` equals `other`'s where both are known."""
    got, want = tensor.shape[axis], other.shape[axis]
    # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
    if isinstance(got, int) and isinstance(want, int) and got != want:
        raise ValueError(
            f"{_OWNER}: argument `{name}` must have the {size} of `{other_name}` "
            f"({want}); received `{name}` of shape {tuple(tensor.shape)} and "
            f"`{other_name}` of shape {tuple(other.shape)}."
        )


def _score_shape(query, key):
    return (query.shape[0], query.shape[2], query.shape[1], key.shape[1])
