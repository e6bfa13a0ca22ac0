"""Tolerances that hold on any x86-64 CPU: comparisons in units in the last place.

A fixed `atol` tuned until a test passes on one machine breaks on the next one: the
oneDNN, Eigen, XLA and ATen kernels behind a bfloat16 or float16 matrix product
accumulate in float32 on CPUs with native low-precision instructions (AVX-512 BF16,
AMX, AVX512-FP16) and may round every partial sum to the low-precision type on
others (AVX2). Both are correct; they differ by a few roundings. So a
low-precision result is compared in ulps of its own magnitude, with a count of
ulps that comes from the arithmetic: how many roundings the computation makes.

    ulp(x) = 2 ** (floor(log2 |x|) - mantissa_bits)

is the spacing of the numbers of `dtype` around `x` (bfloat16: 7 mantissa bits, so
ulp(-2.99) = 2**(1 - 7) = 0.015625). Below the smallest normal number the spacing
is the subnormal one, the floor near zero. Rounding to nearest errs by at most
half an ulp; one rounding of a value `y` in a sum errs by at most `u * |y|`, with
the unit roundoff `u = 2 ** -(mantissa_bits + 1)`, which is less than `ulp(y)`.

Values that come out of cancellation are smaller than the terms that were rounded
on the way (a weighted sum of values of both signs), and their error is a count of
ulps of those terms, not of the result. Pass those terms' size as `magnitude`:
`sum_s w_s |v_s|` for an attention output, `sum |x_i|` for a sum. The ulp is then
measured at `max(|expected|, magnitude)`.

Usage (the bound is justified where it is chosen, in the test):

```python
from tests._tolerances import assert_close_in_ulps

# Each output is one bfloat16 rounding of the float64 reference: half an ulp.
assert_close_in_ulps(out, expected, "bfloat16", ulps=0.5)
```
"""

import keras
import numpy as np

# (explicit mantissa bits, exponent of the smallest normal number)
_FORMATS = {
    "float16": (10, -14),
    "bfloat16": (7, -126),
    "float32": (23, -126),
    "float64": (52, -1022),
}


def mantissa_bits(dtype):
    """Explicit mantissa bits of a floating-point dtype (bfloat16: 7)."""
    return _format(dtype)[0]


def unit_roundoff(dtype):
    """`u = 2 ** -(mantissa_bits + 1)`: one rounding errs by at most `u * |x|`."""
    return 2.0 ** -(mantissa_bits(dtype) + 1)


def ulp(x, dtype):
    """The spacing of `dtype`'s numbers around each element of `x`, as float64.

    `2 ** (floor(log2 |x|) - mantissa_bits)`; below the smallest normal number
    (zero included) the subnormal spacing `2 ** (min_exponent - mantissa_bits)`.
    """
    bits, min_exponent = _format(dtype)
    magnitude = np.abs(np.asarray(x, "float64"))
    exponent = np.floor(np.log2(np.maximum(magnitude, 2.0**min_exponent)))
    return 2.0 ** (exponent - bits)


def ulp_distance(actual, expected, dtype, magnitude=None):
    """`|actual - expected|` in ulps of `max(|expected|, magnitude)`, elementwise."""
    actual, expected = as_float64(actual), as_float64(expected)
    return np.abs(actual - expected) / ulp(_scale(expected, magnitude), dtype)


def assert_close_in_ulps(actual, expected, dtype, ulps, magnitude=None, msg=None):
    """Assert `|actual - expected| <= ulps * ulp(max(|expected|, magnitude))`.

    Args:
        actual: the computed tensor or array (any backend, any float dtype).
        expected: the reference, typically float64 NumPy computed from the
            inputs `actual` saw (so already rounded to `dtype`).
        dtype: the format whose ulps count: the low-precision dtype the
            computation rounds to (`"bfloat16"`, `"float16"`, `"float32"`).
        ulps: the allowed distance, from the arithmetic (how many roundings);
            a scalar, or an array broadcasting to `expected`.
        magnitude: optional size of the terms the value was computed from,
            broadcasting to `expected`, for values that come out of cancellation.
        msg: optional text prefixed to the error message.

    Raises:
        AssertionError: if the shapes differ or any element (NaN included) is
            beyond the bound; the message names the worst element, its values
            and ulp distance, and how many elements are beyond the bound.
    """
    prefix = f"{msg}: " if msg else ""
    actual, expected = as_float64(actual), as_float64(expected)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{prefix}shapes differ: {actual.shape} != {expected.shape}."
        )
    spacing = ulp(_scale(expected, magnitude), dtype)
    distance = np.abs(actual - expected) / spacing
    allowed = np.broadcast_to(np.asarray(ulps, "float64"), distance.shape)
    failing = ~(distance <= allowed)  # NaN fails too
    if not np.any(failing):
        return
    excess = np.where(np.isnan(distance), np.inf, distance - allowed)
    worst = np.unravel_index(
        np.argmax(np.where(failing, excess, -np.inf)), excess.shape
    )
    raise AssertionError(
        f"{prefix}{int(np.sum(failing))} of {distance.size} elements differ by more "
        f"than {allowed[worst]:g} {dtype} ulps. Worst at index "
        f"{tuple(int(i) for i in worst)}: actual {actual[worst]:.8g}, expected "
        f"{expected[worst]:.8g}, {distance[worst]:.3g} ulps of {spacing[worst]:.3g}."
    )


def as_float64(x):
    """A float64 NumPy array from a backend tensor (bfloat16 too) or array-like."""
    if not isinstance(x, (np.ndarray, np.generic, float, int, list, tuple)):
        x = keras.ops.convert_to_numpy(x)
    return np.asarray(x, "float64")


def _scale(expected, magnitude):
    """Where the ulp is measured: `max(|expected|, magnitude)`, elementwise."""
    scale = np.abs(expected)
    if magnitude is None:
        return scale
    return np.maximum(scale, np.broadcast_to(as_float64(magnitude), scale.shape))


def _format(dtype):
    name = keras.backend.standardize_dtype(dtype)
    if name not in _FORMATS:
        raise ValueError(
            f"ulps are defined here for {tuple(_FORMATS)}; received dtype {name!r}."
        )
    return _FORMATS[name]
