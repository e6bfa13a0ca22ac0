"""What the attention bias layers share: their call, positions and output.

`AlibiBias` and `RelativePositionBias` are called as
`layer(inputs, key=None, start_index=0, positions=None, key_positions=None)` and
return a float32 bias `(1 or batch, num_heads, query_length, key_length)` for
`dot_product_attention(..., bias=...)`, computed from the distance
`key_position - query_position` of every query and key. Only the shapes of
`inputs` and `key` are used, never their values.
"""

import keras
import numpy as np
from keras import ops

from keras_attn._checks import check_positive_int
from keras_attn._checks import check_rank
from keras_attn._checks import fail
from keras_attn._checks import owner_name


class AttentionBiasLayer(keras.layers.Layer):
    """Base of the attention bias layers (not used directly).

    Subclasses implement `_bias(relative_positions)`: float32 `(b, T, S)` distances
    to the float32 bias `(b, H, T, S)`.
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(owner_name(self), "num_heads", num_heads)

    def call(self, inputs, key=None, start_index=0, positions=None, key_positions=None):
        distances = self._relative_positions(
            inputs, key, start_index, positions, key_positions
        )
        return self._bias(distances)

    def _check_sequence(self, argument, shape):
        if len(shape) < 2:
            expected = "a tensor `(batch, length, ...)` of rank 2 or more"
            fail(owner_name(self), f"{argument}.shape", tuple(shape), expected)

    def _checked_positions(self, argument, positions, length, of):
        """`positions` as a tensor `(L,)` or `(B, L)`, `L` the length of `of`."""
        positions = ops.convert_to_tensor(positions)
        check_rank(owner_name(self), argument, positions.shape, (1, 2))
        received = positions.shape[-1]
        if None not in (received, length) and received != length:
            raise ValueError(
                f"{owner_name(self)}: argument `{argument}` must hold one position "
                f"per step of `{of}` ({length}); received a tensor of shape "
                f"{tuple(positions.shape)}."
            )
        return ops.cast(positions, "float32")

    def _relative_positions(self, inputs, key, start_index, positions, key_positions):
        """`key_position - query_position`, float32 `(1 or B, T, S)`."""
        self._check_sequence("inputs", inputs.shape)
        if key is not None:
            self._check_sequence("key", key.shape)
        if positions is None:
            query_positions = ops.arange(ops.shape(inputs)[1], dtype="float32")
            query_positions = query_positions + ops.cast(start_index, "float32")
        else:
            query_positions = self._checked_positions(
                "positions", positions, inputs.shape[1], "inputs"
            )
        keys, of = (inputs, "inputs") if key is None else (key, "key")
        if key_positions is not None:
            key_positions = self._checked_positions(
                "key_positions", key_positions, keys.shape[1], of
            )
        elif key is None:  # self-attention: the keys are the queries
            key_positions = query_positions
        else:
            key_positions = ops.arange(ops.shape(key)[1], dtype="float32")
        query_positions = _as_rows(query_positions)  # (1|B, T)
        key_positions = _as_rows(key_positions)  # (1|B, S)
        return key_positions[:, None, :] - query_positions[:, :, None]  # (b, T, S)

    def compute_mask(self, inputs, mask=None):
        return None  # a bias, not a sequence: it carries no mask

    def compute_output_shape(
        self,
        input_shape,
        key_shape=None,
        positions_shape=None,
        key_positions_shape=None,
    ):
        self._check_sequence("inputs", input_shape)
        if key_shape is not None:
            self._check_sequence("key", key_shape)
        query_length = input_shape[1]
        key_length = query_length if key_shape is None else key_shape[1]
        batch = 1
        for argument, shape in (
            ("positions", positions_shape),
            ("key_positions", key_positions_shape),
        ):
            if shape is not None:
                check_rank(owner_name(self), argument, shape, (1, 2))
                if len(shape) == 2:
                    batch = shape[0]
        return (batch, self.num_heads, query_length, key_length)

    def compute_output_spec(
        self, inputs, key=None, start_index=0, positions=None, key_positions=None
    ):
        shape = self.compute_output_shape(
            _shape(inputs), _shape(key), _shape(positions), _shape(key_positions)
        )
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config["num_heads"] = self.num_heads
        return config


def _as_rows(positions):
    return positions[None] if len(positions.shape) == 1 else positions


def _shape(value):
    if value is None:
        return None
    return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
