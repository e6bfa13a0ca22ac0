"""ALiBi: attention with linear biases, a fixed per-head penalty on distance."""

import math

import keras
import numpy as np
from keras import ops

from keras_attn._checks import check_positive_float
from keras_attn._checks import owner_name
from keras_attn.layers._attention_bias import AttentionBiasLayer


@keras.saving.register_keras_serializable(package="keras_attn")
class AlibiBias(AttentionBiasLayer):
    """The ALiBi bias `-m_h * |query_position - key_position|` for each head.

    Head `h` of `H` penalises distance with slope `m_h = 2 ** (-alibi_bias_max *
    (h + 1) / H)` when `H` is a power of two. For other `H`, as in the paper's code
    and keras-hub's `AlibiBias`, the slopes of the largest power of two `P < H`
    are followed by every other slope of `2P` heads, until there are `H`. The layer
    has no weights; pass its output as the `bias` of
    `keras_attn.ops.dot_product_attention` or the `attention_bias` of
    `MultiHeadAttention`, which add it to the scaled logits.

    For the keys a causal query sees (`j <= i`), the bias `m_h * (j - i)` is the
    paper's. keras-hub's `AlibiBias` adds `m_h * (j - (S - 1))` instead, which
    differs from it by a constant in each query row, so the causal softmax, and
    the attention output, are the same. Keys after the query (bidirectional
    attention) get the symmetric `-m_h * (j - i)`, as MPT's "full" ALiBi does.

    Args:
        num_heads: int. The number of attention heads `H`, one slope each.
        alibi_bias_max: float. The exponent of the last head's slope, `2 **
            -alibi_bias_max`; the paper's value is `8`. Defaults to `8`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, length, ...)` of rank 2 or more: the queries (or
            the sequence of self-attention), length `T` on axis 1. Only its shape
            is used.
        key: optional tensor `(batch, key_length, ...)`: the keys, when they are
            not `inputs` (cross-attention, or a decoding cache), length `S` on
            axis 1. Only its shape is used. Defaults to `inputs`.
        start_index: int or scalar integer tensor: the position of the first
            query when `key` is given (the cache index in incremental decoding).
            Defaults to `0`. Without `key` it moves queries and keys alike, so it
            changes nothing.
        positions: optional tensor `(T,)` or `(batch, T)`: the position of each
            query, in place of `start_index + arange(T)` (packed documents whose
            positions restart at 0). Without `key`, the keys are at these
            positions too.
        key_positions: optional tensor `(S,)` or `(batch, S)`: the position of each
            key. Defaults to `arange(S)` when `key` is given, else to the query
            positions.

    Returns:
        A float32 bias `(1, num_heads, T, S)`, or `(batch, num_heads, T, S)` when
        `positions` or `key_positions` has a batch axis, whatever the dtype
        policy.

    Example:

    ```python
    x = np.random.rand(2, 10, 64).astype("float32")  # (B, T, F)
    bias = AlibiBias(num_heads=8)(x)  # (1, 8, 10, 10)
    q = k = v = keras.ops.reshape(x, (2, 10, 8, 8))
    out = keras_attn.ops.dot_product_attention(q, k, v, is_causal=True, bias=bias)
    # One decoding step at position 10, attending a cache of 11 keys.
    cache = np.random.rand(2, 11, 8, 8).astype("float32")  # (B, S, H, D)
    bias = AlibiBias(8)(x[:, :1], key=cache, start_index=10)  # (1, 8, 1, 11)
    ```

    References:
     - [Press et al., 2022](https://arxiv.org/abs/2108.12409)
    """

    def __init__(self, num_heads, alibi_bias_max=8, **kwargs):
        super().__init__(num_heads, **kwargs)
        self.alibi_bias_max = check_positive_float(
            owner_name(self), "alibi_bias_max", alibi_bias_max
        )
        self.built = True  # stateless

    def _bias(self, relative_positions):
        """`(b, T, S)` distances to the float32 bias `(b, H, T, S)`."""
        slopes = _alibi_slopes(self.num_heads, self.alibi_bias_max)
        slopes = ops.convert_to_tensor(slopes.astype("float32"))[:, None, None]
        return -slopes * ops.abs(relative_positions)[:, None]

    def score_mod(self):
        """The same bias as a `score_mod` of `keras_attn.ops.dot_product_attention`.

        The returned callable adds `-m_h * |q_idx - kv_idx|` to each logit where
        the attention evaluates it, block by block on the chunked path, so no
        `(H, T, S)` bias is ever built: memory stays linear in the length.
        Distances are between the call's query and key indices (a cached
        decoding step's queries count from its cache index); within packed
        documents they equal those of positions restarted at each document.

        Returns:
            `score_mod(score, batch, head, q_idx, kv_idx) -> score`.

        Example:

        ```python
        q = k = v = np.random.rand(1, 4096, 8, 64).astype("float32")
        out = keras_attn.ops.dot_product_attention(
            q, k, v, is_causal=True, score_mod=AlibiBias(8).score_mod()
        )
        ```
        """
        slopes = _alibi_slopes(self.num_heads, self.alibi_bias_max)
        slopes = ops.convert_to_tensor(slopes.astype("float32"))

        def alibi(score, batch, head, q_idx, kv_idx):
            distance = ops.abs(ops.cast(q_idx - kv_idx, "float32"))
            return score - ops.take(slopes, head) * distance

        return alibi

    def get_config(self):
        config = super().get_config()
        config["alibi_bias_max"] = self.alibi_bias_max
        return config


def _alibi_slopes(num_heads, alibi_bias_max=8.0):
    """The `num_heads` slopes of ALiBi, float64 NumPy `(num_heads,)`."""
    power = 2 ** math.floor(math.log2(num_heads))  # largest power of two <= H
    slopes = _geometric_slopes(power, alibi_bias_max)
    if power < num_heads:
        # The interleaved slopes of twice as many heads fill the rest.
        extra = _geometric_slopes(2 * power, alibi_bias_max)[0::2]
        slopes = np.concatenate([slopes, extra[: num_heads - power]])
    return slopes


def _geometric_slopes(num_heads, alibi_bias_max):
    exponents = alibi_bias_max * np.arange(1, num_heads + 1) / num_heads
    return 2.0**-exponents
