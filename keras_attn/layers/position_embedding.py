"""Learned absolute position embedding (BERT, GPT-2)."""

import numbers

import keras
from keras import ops

from keras_attn._checks import check_positive_int
from keras_attn._checks import fail
from keras_attn._checks import owner_name
from keras_attn.layers._positions import PositionLayer
from keras_attn.layers._positions import broadcast_over_inputs


@keras.saving.register_keras_serializable(package="keras_attn")
class PositionEmbedding(PositionLayer):
    """A learned vector per position, up to a fixed sequence length.

    The layer owns a table `embeddings` of shape `(sequence_length, dim)`, where
    `dim` is the feature size of the inputs it is built for, and returns rows
    `start_index .. start_index + length - 1`, broadcast over the leading axes, as
    keras-hub's `PositionEmbedding` does. The Keras mask of the inputs passes
    through, so add the rows with `keras.layers.Add()`, which keeps the mask of an
    `Embedding(mask_zero=True)` for the layers after it. The `+` operator does not:
    Keras propagates masks through layers, never through raw ops, so `x + rows`
    silently lets the next attention layer attend the padding.

    Args:
        sequence_length: int. The longest sequence the table covers.
        initializer: initializer of the table. Defaults to `"glorot_uniform"`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of shape `(..., length, dim)`, rank 2 or more. Only its
            shape is used.
        start_index: int or scalar integer tensor. The position of the first step
            (the cache index in incremental decoding). Defaults to `0`. A Python
            int is checked against `sequence_length`; a tensor cannot be, and an
            out-of-range tensor is clamped or fails depending on the backend.
        positions: optional integer tensor of shape `(length,)` or, for inputs
            of rank 3 or more, `(batch, length)`: the rows to take, in place of
            `start_index + arange(length)`. Out-of-range positions, like an
            out-of-range tensor `start_index`, are clamped or fail depending on
            the backend.

    Returns:
        Tensor of the shape of `inputs` in the compute dtype.

    Example:

    ```python
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    x = keras.layers.Add()([x, PositionEmbedding(sequence_length=512)(x)])
    ```

    References:
     - [Devlin et al., 2019](https://arxiv.org/abs/1810.04805)
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = check_positive_int(
            owner_name(self), "sequence_length", sequence_length
        )
        self.initializer = keras.initializers.get(initializer)

    def _check_shape(self, shape, start_index=0):
        super()._check_shape(shape)
        static_start = isinstance(start_index, numbers.Integral)
        if static_start and start_index < 0:
            fail(owner_name(self), "start_index", start_index, "non-negative")
        length = shape[-2]
        offset = start_index if static_start else 0
        # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
        known = isinstance(length, int)
        if known and offset + length > self.sequence_length:
            raise ValueError(
                f"{owner_name(self)}: argument `inputs` must fit in "
                f"`sequence_length`={self.sequence_length} positions from "
                f"`start_index`={offset}; received a sequence of length {length} "
                f"(inputs of shape {tuple(shape)}), which ends at position "
                f"{offset + length - 1}."
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        dim = input_shape[-1]
        if dim is None:
            fail(owner_name(self), "inputs", input_shape, "a static feature size")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, dim),
            initializer=self.initializer,
        )

    def call(self, inputs, start_index=0, positions=None):
        self._check_shape(inputs.shape, start_index)
        table = ops.convert_to_tensor(self.embeddings)  # (sequence_length, D)
        if positions is None:
            # A gather, not a slice: its size may be symbolic (jax2tf export),
            # where a slice of the table would need `T <= sequence_length` proven.
            positions = start_index + ops.arange(ops.shape(inputs)[-2])  # (T,)
        else:
            positions = self._checked_positions(positions, inputs)
        rows = ops.take(table, positions, axis=0)  # ([B,] T, D)
        rows = ops.cast(rows, self.compute_dtype)
        return broadcast_over_inputs(rows, inputs)  # (..., T, D)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
