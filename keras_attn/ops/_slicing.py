"""Slicing and padding along one axis, shared by the attention paths' block loops."""

from keras import ops


def block(x, axis, start, size):
    """`size` elements of `x` from `start` along `axis` (start may be a tensor)."""
    shape = ops.shape(x)
    starts = [0] * len(shape)
    starts[axis] = start
    sizes = list(shape)
    sizes[axis] = size
    return ops.slice(x, starts, sizes)


def pad_end(x, axis, amount, value=0):
    """`x` with `amount` elements of `value` appended along `axis`."""
    if isinstance(amount, int) and amount == 0:
        return x
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (0, amount)
    return ops.pad(x, widths, constant_values=value)
