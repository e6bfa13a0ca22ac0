"""Fixed sinusoidal position encoding ("Attention Is All You Need")."""

import keras
from keras import ops

from keras_attn._checks import check_divisible
from keras_attn._checks import check_positive_float
from keras_attn._checks import owner_name
from keras_attn.layers._positions import PositionLayer
from keras_attn.layers._positions import broadcast_over_inputs
from keras_attn.layers._sinusoids import sinusoid_angles


@keras.saving.register_keras_serializable(package="keras_attn")
class SinusoidalPositionEmbedding(PositionLayer):
    """Fixed sinusoidal position encoding with interleaved sine and cosine.

    `PE(pos, 2i) = sin(pos * w_i)` and `PE(pos, 2i + 1) = cos(pos * w_i)` with
    `w_i = max_wavelength ** (-2i / D)`. Each feature pair is a point on a circle
    that turns by `k * w_i` when the position moves by `k`, so a fixed linear map
    takes the encoding of `pos` to that of `pos + k`. Angles are computed in float32
    whatever the dtype policy and only the result is cast to the compute dtype, so
    `mixed_bfloat16` costs one rounding of values in [-1, 1] at any length. There is
    no table: any sequence length works, including a dynamic one.

    The layer returns the encoding only, broadcast over the leading axes, as
    keras-hub's `SinePositionEncoding` does. The Keras mask of the inputs passes
    through, so add the encoding with `keras.layers.Add()`, which keeps the mask of
    an `Embedding(mask_zero=True)` for the layers after it. The `+` operator does
    not: Keras propagates masks through layers, never through raw ops, so
    `x + encoding` silently lets the next attention layer attend the padding.

    Args:
        max_wavelength: float. The longest wavelength of the sinusoids. Defaults to
            `10000`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of shape `(..., length, dim)`, rank 2 or more, `dim`
            even. Only its shape is used.
        start_index: int or scalar integer tensor. The position of the first step
            (the cache index in incremental decoding). Defaults to `0`.
        positions: optional tensor of shape `(length,)` or, for inputs of rank 3
            or more, `(batch, length)`; when given, it replaces
            `start_index + arange(length)`.

    Returns:
        Tensor of the shape of `inputs` in the compute dtype.

    Example:

    ```python
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    x = keras.layers.Add()([x, SinusoidalPositionEmbedding()(x)])  # keeps the mask
    ```

    References:
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_float(
            owner_name(self), "max_wavelength", max_wavelength
        )
        self.built = True  # stateless

    def _check_shape(self, shape):
        super()._check_shape(shape)
        check_divisible(owner_name(self), "inputs.shape[-1]", shape[-1], 2, "two")

    def call(self, inputs, start_index=0, positions=None):
        self._check_shape(inputs.shape)
        dim = ops.shape(inputs)[-1]
        positions = self._step_positions(inputs, start_index, positions)  # ([B,] T)
        angles = sinusoid_angles(positions, dim, self.max_wavelength)  # ([B,] T, D/2)
        # Interleave: (..., D/2, 2) -> (..., D) puts sin at 2i and cos at 2i + 1.
        encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        encoding = ops.reshape(encoding, (*ops.shape(angles)[:-1], dim))  # ([B,] T, D)
        encoding = ops.cast(encoding, self.compute_dtype)
        return broadcast_over_inputs(encoding, inputs)  # (..., T, D)

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
