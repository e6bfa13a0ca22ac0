"""What the position layers share: their inputs, their positions, their outputs.

Each is called as `layer(inputs, start_index=0, positions=None)`, like keras-hub's,
returns a tensor of the shape of `inputs`, and passes the Keras mask of `inputs` on.
"""

import keras
from keras import ops

from keras_attn._checks import check_rank
from keras_attn._checks import fail
from keras_attn._checks import owner_name


class PositionLayer(keras.layers.Layer):
    """Base of the position layers (not used directly).

    Subclasses say how their inputs are laid out: `_input_layout` for messages,
    `_min_rank`, and `_sequence_axis`, the axis the positions run along.
    """

    _input_layout = "(..., length, dim)"
    _min_rank = 2
    _sequence_axis = -2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _check_shape(self, shape):
        """`inputs` of rank `_min_rank` or more; subclasses add their own checks."""
        if len(shape) < self._min_rank:
            expected = f"`{self._input_layout}`, rank {self._min_rank} or more"
            fail(owner_name(self), "inputs.shape", tuple(shape), expected)

    def _checked_positions(self, positions, inputs):
        """`positions` as a tensor: `(T,)`, or `(B, T)` for inputs of rank 3+."""
        positions = ops.convert_to_tensor(positions)
        check_rank(
            owner_name(self),
            "positions",
            positions.shape,
            (1, 2) if len(inputs.shape) >= 3 else 1,
        )
        received, length = positions.shape[-1], inputs.shape[self._sequence_axis]
        if None not in (received, length) and received != length:
            raise ValueError(
                f"{owner_name(self)}: argument `positions` must hold one position "
                f"per step of `inputs` ({length}); received a tensor of shape "
                f"{tuple(positions.shape)}."
            )
        return positions

    def _step_positions(self, inputs, start_index, positions):
        """The position of every step: `positions` (checked) if given, else
        `start_index + arange(length)` in float32, `(T,)`."""
        if positions is not None:
            return self._checked_positions(positions, inputs)
        length = ops.shape(inputs)[self._sequence_axis]
        return ops.arange(length, dtype="float32") + ops.cast(start_index, "float32")

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return tuple(input_shape)


def broadcast_over_inputs(encoding, inputs):
    """An encoding `(T, D)` or, per example, `(B, T, D)` to the shape of `inputs`.

    `inputs` is `(..., T, D)` with the batch, if any, on axis 0.
    """
    if len(encoding.shape) == 3:  # one row of positions per example
        for _ in range(len(inputs.shape) - 3):
            encoding = ops.expand_dims(encoding, axis=1)  # (B, 1, ..., T, D)
    return ops.broadcast_to(encoding, ops.shape(inputs))
