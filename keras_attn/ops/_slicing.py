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


def score_block(x, query_start, query_size, key_start, key_size):
    """The block of a `(..., T|1, S|1)` mask or bias for those queries and keys;
    a size-1 (broadcast) axis stays whole."""
    query_axis, key_axis = len(x.shape) - 2, len(x.shape) - 1
    if x.shape[query_axis] != 1:
        x = block(x, query_axis, query_start, query_size)
    if x.shape[key_axis] != 1:
        x = block(x, key_axis, key_start, key_size)
    return x


def pad_end(x, axis, amount, value=0):
    """`x` with `amount` elements of `value` appended along `axis`."""
    if isinstance(amount, int) and amount == 0:
        return x
    widths = [(0, 0)] * len(x.shape)
    widths[axis] = (0, amount)
    return ops.pad(x, widths, constant_values=value)
