"""Rotary position embedding (RoPE), "rotate half" convention."""

import keras
from keras import ops

from keras_attn._checks import check_divisible
from keras_attn._checks import check_positive_float
from keras_attn._checks import owner_name
from keras_attn.layers._positions import PositionLayer
from keras_attn.layers._sinusoids import sinusoid_angles


@keras.saving.register_keras_serializable(package="keras_attn")
class RotaryEmbedding(PositionLayer):
    """Rotates query and key features by an angle proportional to their position.

    Feature `j` of the first half is paired with feature `j + D/2` of the second
    half ("rotate half", as in keras-hub's `RotaryEmbedding`, GPT-NeoX and Hugging
    Face LLaMA) and the pair is turned by `position * w_j / scaling_factor`, with
    `w_j = max_wavelength ** (-2j / D)`. A dot product between a query rotated at
    position `m` and a key rotated at position `n` then depends only on `m - n`.
    Angles are computed in float32; cosines and sines are cast to the compute dtype
    before they multiply the inputs. The Keras mask of the inputs passes through.

    Args:
        max_wavelength: float. The longest wavelength. Defaults to `10000`.
        scaling_factor: float. Positions are divided by it (linear position
            interpolation, to stretch a model to longer contexts). Defaults to `1.0`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of shape `(batch, length, ..., dim)`, rank 3 or more,
            `dim` even: `(batch, length, dim)` or, as inside attention,
            `(batch, length, heads, dim)`. The sequence is axis 1 and the
            features the last axis, as in keras-hub's `RotaryEmbedding` with its
            default `sequence_axis=1` and `feature_axis=-1`.
        start_index: int or scalar integer tensor. The position of the first step
            (the cache index in incremental decoding). Defaults to `0`.
        positions: optional tensor of shape `(length,)` or `(batch, length)`; when
            given, it replaces `start_index + arange(length)`.

    Returns:
        The rotated inputs, same shape, in the compute dtype.

    Example:

    ```python
    rotary = RotaryEmbedding()
    query = np.random.rand(2, 16, 4, 32).astype("float32")  # (B, T, H, D)
    query = rotary(query)
    next_query = rotary(query[:, :1], start_index=16)  # decoding step 16
    ```

    References:
     - [Su et al., 2021](https://arxiv.org/abs/2104.09864)
    """

    _input_layout = "(batch, length, ..., dim)"
    _min_rank = 3
    _sequence_axis = 1

    def __init__(self, max_wavelength=10000, scaling_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        owner = owner_name(self)
        self.max_wavelength = check_positive_float(
            owner, "max_wavelength", max_wavelength
        )
        self.scaling_factor = check_positive_float(
            owner, "scaling_factor", scaling_factor
        )
        self.built = True  # stateless

    def _check_shape(self, shape):
        super()._check_shape(shape)
        check_divisible(owner_name(self), "inputs.shape[-1]", shape[-1], 2, "two")

    def _cos_sin(self, inputs, start_index, positions):
        """cos and sin of the angles, `(B or 1, T, 1, ..., D)` in the compute dtype."""
        dim = ops.shape(inputs)[-1]
        positions = self._step_positions(inputs, start_index, positions)
        positions = ops.cast(positions, "float32") / self.scaling_factor
        if len(positions.shape) == 1:
            positions = positions[None]  # (1, T)
        angles = sinusoid_angles(positions, dim, self.max_wavelength)  # (b, T, D/2)
        angles = ops.concatenate([angles, angles], axis=-1)  # (b, T, D)
        for _ in range(len(inputs.shape) - 3):
            angles = ops.expand_dims(angles, axis=2)  # (b, T, 1, ..., D)
        cos = ops.cast(ops.cos(angles), self.compute_dtype)
        sin = ops.cast(ops.sin(angles), self.compute_dtype)
        return cos, sin

    def call(self, inputs, start_index=0, positions=None):
        self._check_shape(inputs.shape)
        cos, sin = self._cos_sin(inputs, start_index, positions)
        first, second = ops.split(inputs, 2, axis=-1)  # (..., D/2) each
        rotated_half = ops.concatenate([-second, first], axis=-1)  # (..., D)
        return inputs * cos + rotated_half * sin

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor,
            }
        )
        return config
