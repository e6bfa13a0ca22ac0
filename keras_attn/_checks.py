"""Input validation shared by every layer and op.

Every check raises a `ValueError` that names the owner (a layer or a function), the
argument, the value received and what was expected, so a user can fix the call without
reading our source.
"""

import numbers

import keras
import numpy as np


def owner_name(layer):
    """`ClassName 'layer_name'`, the way error messages refer to a layer."""
    return f"{type(layer).__name__} '{layer.name}'"


def fail(owner, argument, value, expected):
    raise ValueError(
        f"{owner}: argument `{argument}` must be {expected}; received {value!r}."
    )


def is_integer(value):
    """An integral number, Python's or NumPy's (`np.int64(8)`), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(owner, argument, value, allow_none=False):
    if value is None and allow_none:
        return None
    if not is_integer(value) or value <= 0:
        expected = "a positive integer" + (" or None" if allow_none else "")
        fail(owner, argument, value, expected)
    return int(value)


def check_int_at_least(owner, argument, value, minimum, why=""):
    """An integer >= `minimum`; `why` (e.g. " (the start token and one more)")
    explains the bound in the message."""
    if not is_integer(value) or value < minimum:
        fail(owner, argument, value, f"an integer >= {minimum}{why}")
    return int(value)


def check_int_or_pair(owner, argument, value, names=("height", "width")):
    """`(first, second)` from a positive integer (both) or a pair of them."""
    pair = (value, value) if is_integer(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_integer(size) and size > 0 for size in pair)
    ):
        expected = f"a positive integer or a pair ({', '.join(names)}) of them"
        fail(owner, argument, value, expected)
    return int(pair[0]), int(pair[1])


def check_bool(owner, argument, value):
    if not isinstance(value, bool):
        fail(owner, argument, value, "True or False")
    return value


def check_rate(owner, argument, value):
    """A dropout-style rate in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        fail(owner, argument, value, "a number in [0, 1)")
    return float(value)


def check_positive_float(owner, argument, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        fail(owner, argument, value, "a positive number")
    return float(value)


def check_choice(owner, argument, value, choices):
    if value not in choices:
        fail(owner, argument, value, "one of " + ", ".join(map(repr, choices)))
    return value


def check_rank(owner, argument, shape, ranks):
    """`ranks` is an int or a tuple of accepted ranks; `shape` a tuple."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"{owner}: argument `{argument}` must have rank {expected}; received "
            f"a tensor of shape {tuple(shape)} (rank {len(shape)})."
        )


def check_divisible(owner, argument, value, divisor, divisor_description):
    if value is not None and divisor is not None and value % divisor != 0:
        raise ValueError(
            f"{owner}: argument `{argument}` must be divisible by "
            f"{divisor_description} ({divisor}); received {value!r}."
        )


def check_heads(owner, num_heads, num_key_value_heads):
    """`(num_heads, num_key_value_heads)` of grouped-query attention: positive
    integers, the second (None: one per query head) dividing the first."""
    num_heads = check_positive_int(owner, "num_heads", num_heads)
    num_key_value_heads = check_positive_int(
        owner, "num_key_value_heads", num_key_value_heads, allow_none=True
    )
    check_divisible(
        owner, "num_heads", num_heads, num_key_value_heads, "num_key_value_heads"
    )
    return num_heads, num_key_value_heads


def check_image_size(owner, image_size, patch_size, allow_pair=True):
    """`(height, width)` of the argument `image_size`: a positive integer, or a
    pair of them if `allow_pair`, each a multiple of `patch_size`."""
    if allow_pair:
        height, width = check_int_or_pair(owner, "image_size", image_size)
    else:
        height = width = check_positive_int(owner, "image_size", image_size)
    for size in (height, width):
        check_divisible(owner, "image_size", size, patch_size, "patch_size")
    return height, width


def check_images(owner, shape, channels, size=None, patch_size=None):
    """Images of `shape` `(batch, height, width, channels)`: exactly `size`
    `(height, width)` when given, else multiples of `patch_size` when given.
    Unknown (None) dimensions pass."""
    shape = tuple(shape)
    check_rank(owner, "images", shape, 4)
    height, width = size or ("height", "width")
    expected = f"shape (batch, {height}, {width}, {channels})"
    if shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"{owner}: argument `images` must have {channels} channels, {expected}; "
            f"received a tensor of shape {shape}."
        )
    if size is not None and any(
        got is not None and got != want for got, want in zip(shape[1:3], size)
    ):
        raise ValueError(
            f"{owner}: argument `images` must be {height}x{width} pixels "
            f"(`image_size`), {expected}; received a tensor of shape {shape}."
        )
    for axis, got in zip(("height", "width"), shape[1:3]):
        check_divisible(owner, f"images {axis}", got, patch_size, "patch_size")


def check_token_id(owner, argument, value, vocabulary_size, padding_id=None):
    """One token id: an integer in [0, vocabulary_size), not `padding_id` if given."""
    if (
        not is_integer(value)
        or not 0 <= value < vocabulary_size
        or (padding_id is not None and value == padding_id)
    ):
        expected = f"a token id in [0, {vocabulary_size})"
        if padding_id is not None:
            expected += f" other than the padding id {padding_id}"
        fail(owner, argument, value, expected)
    return int(value)


def check_token_ids(owner, argument, token_ids, vocabulary_size):
    """Every id of the tensor `token_ids` in [0, vocabulary_size), where known.

    Only concrete values are checked (eager calls, NumPy inputs): a traced tensor
    (under `jit`, `tf.function`, `torch.compile`, or a `keras.KerasTensor`)
    passes, since a data-dependent check cannot run inside a compiled graph.
    Without it, an id outside the vocabulary is an `IndexError` on torch and
    silently clipped on JAX.
    """
    values = concrete_values(token_ids)
    if values is None:
        return
    outside = (values < 0) | (values >= vocabulary_size)
    if np.any(outside):
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"{owner}: argument `{argument}` must hold token ids in "
            f"[0, {vocabulary_size}) (the vocabulary size is {vocabulary_size}); "
            f"received the id {values[index]} at index {index}."
        )


def concrete_values(tensor):
    """`tensor` as a NumPy array, or None while its values are not known: a
    `keras.KerasTensor`, a JAX tracer, a `tf.function` graph tensor, a torch
    tensor on the meta device or inside `torch.compile`."""
    if isinstance(tensor, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(tensor, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.is_tensor(tensor) and tf.is_symbolic_tensor(tensor):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling() or (
            isinstance(tensor, torch.Tensor) and tensor.device.type == "meta"
        ):
            return None
    return np.asarray(keras.ops.convert_to_numpy(tensor))
