"""Learned relative position biases: T5's distance buckets and Swin's window table."""

import math

import keras
import numpy as np
from keras import ops

from keras_attn._checks import check_bool
from keras_attn._checks import check_int_or_pair
from keras_attn._checks import check_positive_int
from keras_attn._checks import fail
from keras_attn._checks import is_integer
from keras_attn._checks import owner_name
from keras_attn.layers._attention_bias import AttentionBiasLayer

# The bucket arguments' defaults; with `window_size` they must keep them.
_BUCKET_DEFAULTS = {"num_buckets": 32, "max_distance": 128, "bidirectional": True}


@keras.saving.register_keras_serializable(package="keras_attn")
class RelativePositionBias(AttentionBiasLayer):
    """A learned bias per head for each query-key offset, T5 or Swin style.

    The layer owns a table `embeddings` of shape `(rows, num_heads)` and returns,
    for every query `i` and key `j`, the row of their offset: one float32 value
    per head, to pass as the `bias` of `keras_attn.ops.dot_product_attention` or
    the `attention_bias` of `MultiHeadAttention`. Gradients reach the table on
    every attention path.

    - Sequences (T5, `window_size=None`): the offset `key_position -
      query_position` falls into one of `num_buckets` buckets, the table's rows.
      With `bidirectional=True` half the buckets are for keys after the query.
      Of each half, the first half holds offsets `0, 1, ...` exactly, the rest
      grow logarithmically up to `max_distance`, beyond which all offsets share
      the last bucket. The buckets, float32 logarithm included, are those of
      Mesh TensorFlow's T5 and Hugging Face's `T5Attention`, so their table
      `(num_buckets, num_heads)` loads as it is.
    - Windows of image patches (Swin, `window_size=(Wh, Ww)`): the table has a
      row for each 2D offset `(dy, dx)`, `(2 Wh - 1) (2 Ww - 1)` rows, and the
      bias covers the `Wh * Ww` tokens of a window in row-major order, query
      minus key as in Swin's `relative_position_index`, so its
      `relative_position_bias_table` loads as it is.

    Args:
        num_heads: int. The number of attention heads, one column of the table
            each.
        num_buckets: int. The number of buckets of offsets (T5): at least 4
            with `bidirectional=True`, 2 without. Defaults to `32`.
        max_distance: int. Offsets this far or farther share the last bucket;
            more than the exact buckets (`num_buckets // 4` bidirectional,
            `num_buckets // 2` otherwise). Defaults to `128`.
        bidirectional: bool. Whether keys after the query get buckets of their
            own (encoders); if False, as in a causal decoder, they share bucket 0
            with the query's own position. Defaults to `True`.
        window_size: optional int or pair `(Wh, Ww)`: the window of image
            patches (Swin) that switches to the 2D table. The three bucket
            arguments must then keep their defaults. Defaults to `None`.
        initializer: initializer of the table. Defaults to a truncated normal
            with standard deviation 0.02, as Swin's.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, length, ...)` of rank 2 or more: the queries (or
            the sequence of self-attention), length `T` on axis 1; with
            `window_size`, the windows `(batch * windows, Wh * Ww, ...)`. Only
            its shape is used.
        key: optional tensor `(batch, key_length, ...)`: the keys, when they are
            not `inputs` (a decoding cache), length `S` on axis 1. Defaults to
            `inputs`. Not with `window_size`, nor are the three below.
        start_index: int or scalar integer tensor: the position of the first
            query when `key` is given (the cache index in incremental decoding).
            Defaults to `0`. Without `key` it moves queries and keys alike.
        positions: optional integer tensor `(T,)` or `(batch, T)`: the position of
            each query, in place of `start_index + arange(T)` (packed documents).
            Without `key`, the keys are at these positions too.
        key_positions: optional integer tensor `(S,)` or `(batch, S)`: the position
            of each key. Defaults to `arange(S)` when `key` is given, else to the
            query positions.

    Returns:
        A float32 bias `(1, num_heads, T, S)`, or `(batch, num_heads, T, S)` when
        `positions` or `key_positions` has a batch axis; with `window_size`,
        `(1, num_heads, Wh * Ww, Wh * Ww)`.

    Example:

    ```python
    x = np.random.rand(2, 10, 64).astype("float32")  # (B, T, F)
    bias = RelativePositionBias(num_heads=8)(x)  # (1, 8, 10, 10)
    q = k = v = keras.ops.reshape(x, (2, 10, 8, 8))
    out = keras_attn.ops.dot_product_attention(q, k, v, bias=bias)
    # Swin: 7x7 windows of 96-feature patches, 3 heads.
    windows = np.random.rand(16, 49, 96).astype("float32")
    bias = RelativePositionBias(num_heads=3, window_size=7)(windows)  # (1,3,49,49)
    ```

    References:
     - [Raffel et al., 2020](https://arxiv.org/abs/1910.10683) (T5)
     - [Liu et al., 2021](https://arxiv.org/abs/2103.14030) (Swin Transformer)
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        window_size=None,
        initializer=None,
        **kwargs,
    ):
        super().__init__(num_heads, **kwargs)
        owner = owner_name(self)
        self.num_buckets = check_positive_int(owner, "num_buckets", num_buckets)
        self.max_distance = check_positive_int(owner, "max_distance", max_distance)
        self.bidirectional = check_bool(owner, "bidirectional", bidirectional)
        if window_size is None:
            self.window_size = None
            self._check_buckets()
        else:
            self.window_size = check_int_or_pair(owner, "window_size", window_size)
            self._check_bucket_defaults()
        if initializer is None:
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)

    def _check_buckets(self):
        exact = self._exact_buckets()
        if exact < 1:
            expected = "at least " + ("4 with" if self.bidirectional else "2 without")
            fail(
                owner_name(self),
                "num_buckets",
                self.num_buckets,
                f"{expected} `bidirectional=True`",
            )
        if self.max_distance <= exact:
            fail(
                owner_name(self),
                "max_distance",
                self.max_distance,
                f"more than the {exact} exact buckets of `num_buckets`="
                f"{self.num_buckets}",
            )

    def _exact_buckets(self):
        half = self.num_buckets // 2 if self.bidirectional else self.num_buckets
        return half // 2

    def _check_bucket_defaults(self):
        for argument, default in _BUCKET_DEFAULTS.items():
            value = getattr(self, argument)
            if value != default:
                fail(
                    owner_name(self),
                    argument,
                    value,
                    f"its default {default!r} with `window_size` (the window's "
                    "table has a row per 2D offset)",
                )

    def build(self, input_shape):
        if self.window_size is None:
            rows = self.num_buckets
        else:
            height, width = self.window_size
            rows = (2 * height - 1) * (2 * width - 1)
        # Not autocast: the bias stays float32 under a mixed dtype policy.
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(rows, self.num_heads),
            initializer=self.initializer,
            autocast=False,
        )

    def call(self, inputs, key=None, start_index=0, positions=None, key_positions=None):
        if self.window_size is None:
            return super().call(inputs, key, start_index, positions, key_positions)
        self._check_window_call(inputs.shape, key, positions, key_positions)
        if not (is_integer(start_index) and start_index == 0):
            self._refuse_with_window("start_index", start_index)
        tokens = self.window_size[0] * self.window_size[1]
        index = ops.convert_to_tensor(_window_index(self.window_size).reshape(-1))
        bias = ops.take(self.embeddings, index, axis=0)  # (N * N, H)
        bias = ops.reshape(bias, (tokens, tokens, self.num_heads))
        return ops.transpose(bias, (2, 0, 1))[None]  # (1, H, N, N)

    def _bias(self, relative_positions):
        """`(b, T, S)` offsets to the float32 bias `(b, H, T, S)`."""
        buckets = _t5_buckets(
            relative_positions,
            self.bidirectional,
            self.num_buckets,
            self.max_distance,
        )
        bias = ops.take(self.embeddings, buckets, axis=0)  # (b, T, S, H)
        return ops.transpose(bias, (0, 3, 1, 2))

    def _check_window_call(self, input_shape, key, positions, key_positions):
        for argument, value in (
            ("key", key),
            ("positions", positions),
            ("key_positions", key_positions),
        ):
            if value is not None:
                self._refuse_with_window(argument, value)
        self._check_sequence("inputs", input_shape)
        tokens = self.window_size[0] * self.window_size[1]
        if input_shape[1] is not None and input_shape[1] != tokens:
            raise ValueError(
                f"{owner_name(self)}: argument `inputs` must hold the {tokens} "
                f"tokens of a {self.window_size[0]}x{self.window_size[1]} window "
                f"(`window_size`) on axis 1; received a tensor of shape "
                f"{tuple(input_shape)}."
            )

    def _refuse_with_window(self, argument, value):
        value = getattr(value, "shape", value)
        fail(
            owner_name(self),
            argument,
            value,
            "left out with `window_size`: a window's offsets are fixed",
        )

    def compute_output_shape(
        self,
        input_shape,
        key_shape=None,
        positions_shape=None,
        key_positions_shape=None,
    ):
        if self.window_size is None:
            return super().compute_output_shape(
                input_shape, key_shape, positions_shape, key_positions_shape
            )
        self._check_window_call(
            input_shape, key_shape, positions_shape, key_positions_shape
        )
        tokens = self.window_size[0] * self.window_size[1]
        return (1, self.num_heads, tokens, tokens)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "window_size": self.window_size,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config


def _t5_buckets(relative_positions, bidirectional, num_buckets, max_distance):
    """T5's bucket of each offset `key - query`, int32 of the same shape."""
    offsets = ops.cast(relative_positions, "int32")
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = ops.where(offsets > 0, num_buckets, 0)  # keys after the query
        distance = ops.abs(offsets)
    else:
        distance = ops.maximum(-offsets, 0)  # keys after the query: bucket 0
    exact = num_buckets // 2
    # Log-spaced from `exact` to `max_distance`, in float32 and in the order of
    # operations of Mesh TensorFlow's T5 (whose checkpoints learned these buckets).
    # `maximum` keeps log(0) out: those distances take the exact branch anyway.
    scaled = ops.log(ops.cast(ops.maximum(distance, exact), "float32") / exact)
    scaled = scaled / math.log(max_distance / exact) * (num_buckets - exact)
    far = ops.minimum(exact + ops.cast(scaled, "int32"), num_buckets - 1)
    return buckets + ops.where(distance < exact, distance, far)


def _window_index(window_size):
    """The table row of each (query, key) pair of a window, `(N, N)` int32."""
    height, width = window_size
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)  # (N,), row-major
    dy = rows[:, None] - rows[None, :] + height - 1  # query minus key, from 0
    dx = cols[:, None] - cols[None, :] + width - 1
    return (dy * (2 * width - 1) + dx).astype("int32")
