"""The math path: `softmax(QKᵀ·scale + bias ...)V` written out, the dense reference.

The only path that returns the scores and the one that applies attention dropout.
Gradients are those of the written-out expression, so tensors a `score_mod` closes
over are differentiated too.
"""

import keras
from keras import ops

from keras_attn.ops._grouped import NEG
from keras_attn.ops._grouped import group_mask_heads
from keras_attn.ops._grouped import merge_query_heads
from keras_attn.ops._grouped import split_query_heads
from keras_attn.ops._logits import sink_logits


def math_attention(
    query, key, value, pattern, modifiers, sinks, scale, dropout_rate, seed
):
    """`(output (B, T, H, Dv), scores (B, H, T, S))` in the query's dtype."""
    num_kv_heads = key.shape[2]
    # Scaling the queries costs T·D multiplications instead of T·S on the logits.
    q = split_query_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    k = ops.cast(key, "float32")
    logits = ops.einsum("btkgd,bskd->bkgts", q, k)  # (B, Hkv, G, T, S)
    logits = modifiers(logits, 0, 0)
    allowed = pattern.allowed(0, ops.shape(query)[1], 0, ops.shape(key)[1])
    if allowed is not None:
        allowed = group_mask_heads(allowed, num_kv_heads)
        logits = ops.where(allowed, logits, NEG)
    weights = _softmax(logits, allowed, sinks, num_kv_heads)
    if dropout_rate > 0.0:
        weights = keras.random.dropout(weights, dropout_rate, seed=seed)
    value_weights = ops.cast(weights, value.dtype)
    output = ops.einsum("bkgts,bskd->btkgd", value_weights, value)
    output = ops.cast(merge_query_heads(output), query.dtype)
    batch, kv_heads, groups, query_length, key_length = ops.shape(weights)
    scores = ops.reshape(weights, (batch, kv_heads * groups, query_length, key_length))
    return output, ops.cast(scores, query.dtype)


def _softmax(logits, allowed, sinks, num_kv_heads):
    """Softmax over keys; a sink joins the denominator; masked rows give zeros."""
    if sinks is None:
        weights = ops.softmax(logits, axis=-1)
    else:
        sink = sink_logits(sinks, num_kv_heads)[..., None]  # (1, Hkv, G, 1, 1)
        top = ops.maximum(ops.max(logits, axis=-1, keepdims=True), sink)
        top = ops.stop_gradient(top)
        exps = ops.exp(logits - top)
        denominator = ops.sum(exps, axis=-1, keepdims=True) + ops.exp(sink - top)
        weights = exps / denominator
    if allowed is not None:
        weights = ops.where(allowed, weights, 0.0)  # fully masked rows -> 0
    return weights
