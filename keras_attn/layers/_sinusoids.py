"""Angles shared by the sinusoidal and rotary position layers."""

from keras import ops


def sinusoid_angles(positions, dim, max_wavelength):
    """`positions[..., None] * w`, float32, with `w_i = max_wavelength ** (-2i / dim)`.

    Always float32, whatever the dtype policy: in bfloat16 the positions themselves
    round (1023 becomes 1024) and the sinusoids of long sequences are garbage.

    Args:
        positions: tensor of shape `(...)`, any numeric dtype.
        dim: int or scalar tensor, even. The feature size the angles are for.
        max_wavelength: float. The longest wavelength.

    Returns:
        float32 tensor of shape `(..., dim // 2)`.
    """
    exponents = ops.arange(0, dim, 2, dtype="float32") / ops.cast(dim, "float32")
    inverse_frequencies = ops.power(float(max_wavelength), -exponents)  # (D/2,)
    positions = ops.cast(positions, "float32")
    return positions[..., None] * inverse_frequencies  # (..., D/2)
