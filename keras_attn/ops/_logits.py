"""What each attention logit becomes before the softmax: bias, score_mod, soft cap.

In order, on float32 logits already scaled by `1 / sqrt(D)`: an additive `bias`
(ALiBi, T5 or Swin relative positions), a `score_mod` callable (FlexAttention's
convention), then Gemma 2's soft cap `c * tanh(x / c)`. Masking comes after all of
them, and attention sinks join the softmax denominator (see `sink_logits`).

Tensors are in the grouped-query layout of the core, `(B, Hkv, G, bq, bk)` or
keys-major `(B, Hkv, bk, G, bq)` (the chunked backward pass); a `score_mod` sees
the `(B, H, bq, bk)` layout of the public API.
"""

import copy

import keras
from keras import ops

from keras_attn.ops import _grouped as grouped
from keras_attn.ops._slicing import pad_end
from keras_attn.ops._slicing import score_block


class LogitModifiers:
    """The logit modifiers of one call.

    Args:
        bias: None or float32 `(B|1, H|1, T|1, S|1)`.
        logit_soft_cap: None or a positive float.
        score_mod: None or `score_mod(score, batch, head, q_idx, kv_idx)`.
        pattern: the call's `AttentionPattern` (for the index tensors).
        num_kv_heads: `Hkv`, to bring the bias to the grouped layout.
    """

    # Attributes that hold tensors, a callable or the pattern; the rest are
    # Python values (see `keras_attn/ops/_compiled.py`).
    TENSOR_ATTRIBUTES = ("bias", "score_mod", "pattern")

    def __init__(self, bias, logit_soft_cap, score_mod, pattern, num_kv_heads):
        self.bias = (
            None if bias is None else grouped.group_mask_heads(bias, num_kv_heads)
        )
        self.logit_soft_cap, self.score_mod = logit_soft_cap, score_mod
        self.pattern = pattern

    @property
    def is_empty(self):
        return self.bias is None and self.logit_soft_cap is None and not self.score_mod

    def padded(self, padded_query_length, padded_key_length, pattern):
        """The same modifiers over lengths padded at the end (bias padded with 0)."""
        bias = self.bias
        if bias is not None:
            extra = (
                padded_query_length - pattern.query_length,
                padded_key_length - pattern.key_length,
            )
            for axis, amount in zip((3, 4), extra):
                if bias.shape[axis] != 1:
                    bias = pad_end(bias, axis, amount)
        return self.replace(bias=bias, pattern=pattern)

    def replace(self, **attributes):
        """A copy with `attributes` (a bias already grouped and padded) replaced."""
        modifiers = copy.copy(self)
        vars(modifiers).update(attributes)
        return modifiers

    def __call__(self, s, query_start, key_start, keys_major=False):
        """Modified logits of the block of `s` at those starts.

        `s` is `(B, Hkv, G, bq, bk)`, or `(B, Hkv, bk, G, bq)` with `keys_major`.
        """
        z = self._biased(s, query_start, key_start, keys_major)
        if self.score_mod is not None:
            z = self._score_mod(z, query_start, key_start, keys_major)
        if self.logit_soft_cap is not None:
            z = self.logit_soft_cap * ops.tanh(z / self.logit_soft_cap)
        return z

    def gradient(self, s, d_logits, query_start, key_start, keys_major=False):
        """The gradient with respect to `s` (and the bias) given that of the logits."""
        if self.is_empty:
            return d_logits
        z = self._biased(s, query_start, key_start, keys_major)

        def score_mod(z):
            return self._score_mod(z, query_start, key_start, keys_major)

        y = z if self.score_mod is None else score_mod(z)
        if self.logit_soft_cap is not None:
            d_logits = d_logits * (1.0 - ops.square(ops.tanh(y / self.logit_soft_cap)))
        if self.score_mod is not None:
            d_logits = _vjp(score_mod, z, d_logits)
        return d_logits

    def _biased(self, s, query_start, key_start, keys_major):
        if self.bias is None:
            return s
        shape = ops.shape(s)
        query_size, key_size = (shape[4], shape[2]) if keys_major else shape[3:]
        bias = score_block(self.bias, query_start, query_size, key_start, key_size)
        return s + (grouped.keys_major(bias) if keys_major else bias)

    def _score_mod(self, z, query_start, key_start, keys_major):
        if keys_major:
            z = self._score_mod(grouped.queries_major(z), query_start, key_start, False)
            return grouped.keys_major(z)
        batch, kv_heads, groups, query_size, key_size = ops.shape(z)
        merged = (batch, kv_heads * groups, query_size, key_size)
        q = query_start + ops.arange(query_size, dtype="int32")
        k = key_start + ops.arange(key_size, dtype="int32")
        score = self.score_mod(ops.reshape(z, merged), *self.pattern.indices(q, k))
        score = ops.broadcast_to(ops.cast(score, "float32"), merged)
        return ops.reshape(score, ops.shape(z))


def sink_logits(sinks, num_kv_heads):
    """Sinks `(H,)` as float32 `(1, Hkv, G, 1)`, to broadcast over row statistics."""
    sinks = ops.cast(sinks, "float32")
    return ops.reshape(sinks, (1, num_kv_heads, -1, 1))


def _vjp(fn, x, upstream):
    """`upstream · ∂fn(x)/∂x` for an element-wise `fn` written with `keras.ops`.

    The one place the chunked backward pass differentiates user code; tensors that
    `fn` closes over are constants there (pass a trainable bias as `bias`).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        _, pullback = jax.vjp(fn, x)
        return pullback(upstream)[0]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        gradient = tape.gradient(y, x, output_gradients=upstream)
    else:
        import torch

        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(fn(x), x, upstream, allow_unused=True)
    return ops.zeros_like(x) if gradient is None else gradient
