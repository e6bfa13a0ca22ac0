"""Validation of `dot_product_attention`'s arguments, each normalised once here.

Every check raises a `ValueError` naming `dot_product_attention`, the argument and
the value received.
"""

from keras import backend
from keras import ops

from keras_attn import _checks

OWNER = "dot_product_attention"


def check_shapes(query, key, value):
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if len(tensor.shape) != 4:
            raise ValueError(
                f"{OWNER}: argument `{name}` must have rank 4 (batch, length, "
                f"heads, head_dim); received a tensor of shape {tuple(tensor.shape)}."
            )
    heads, kv_heads = query.shape[2], key.shape[2]
    if value.shape[2] != kv_heads:
        raise ValueError(
            f"{OWNER}: argument `value` must have as many heads as `key` "
            f"({kv_heads}); received shape {tuple(value.shape)}."
        )
    if heads is not None and kv_heads is not None and heads % kv_heads != 0:
        raise ValueError(
            f"{OWNER}: argument `key` must have a number of heads that divides "
            f"the query heads ({heads}); received {kv_heads} heads "
            f"(shape {tuple(key.shape)})."
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"{OWNER}: argument `key` must have the query's head_dim "
            f"({query.shape[-1]}); received shape {tuple(key.shape)}."
        )
    # Kernels disagree on a value longer or shorter than the key (one reads past
    # it, one truncates, TensorFlow fails): refuse it here, on every path.
    _check_same_size("value", value, "key", key, axis=1, size="length")
    for name, tensor in (("key", key), ("value", value)):
        _check_same_size(name, tensor, "query", query, axis=0, size="batch size")


def _check_same_size(name, tensor, other_name, other, axis, size):
    """Raise unless `tensor.shape[axis]` equals `other`'s where both are known."""
    got, want = tensor.shape[axis], other.shape[axis]
    # Unknown sizes are None, or symbolic (jax2tf export) and not comparable.
    if isinstance(got, int) and isinstance(want, int) and got != want:
        raise ValueError(
            f"{OWNER}: argument `{name}` must have the {size} of `{other_name}` "
            f"({want}); received `{name}` of shape {tuple(tensor.shape)} and "
            f"`{other_name}` of shape {tuple(other.shape)}."
        )


def score_shape(query, key):
    """`(B, H, T, S)`, with None for unknown sizes."""
    return (query.shape[0], query.shape[2], query.shape[1], key.shape[1])


def check_sliding_window(sliding_window):
    if sliding_window is None:
        return None
    return _checks.check_int_at_least(OWNER, "sliding_window", sliding_window, 1)


def as_segment_ids(segment_ids, score_shape, owner=OWNER):
    """`(query_ids (B, T), key_ids (B, S))` int32 from one `(B, T)` or a pair.

    `score_shape` is `(B, H, T, S)` (None for unknown sizes); `owner` names the
    function or layer in the error message.
    """
    if segment_ids is None:
        return None
    pair = isinstance(segment_ids, (tuple, list)) and len(segment_ids) == 2
    query_ids, key_ids = segment_ids if pair else (segment_ids, segment_ids)
    batch, _, query_length, key_length = score_shape
    checked = []
    for ids, length, what in (
        (query_ids, query_length, "query_length"),
        (key_ids, key_length, "key_length"),
    ):
        ids = ops.convert_to_tensor(ids)
        dtype = backend.standardize_dtype(ids.dtype)
        if "int" not in dtype or not _fits(ids.shape, (batch, length)):
            expected = (
                f"integer ids of shape (batch, {what}) = ({batch}, {length})"
                if pair
                else f"integer ids of shape (batch, length) = ({batch}, "
                f"{query_length}) for self-attention (query_length == key_length), "
                "or a pair (query_segment_ids, key_segment_ids)"
            )
            raise ValueError(
                f"{owner}: argument `segment_ids` must be {expected}; received "
                f"{dtype} ids of shape {tuple(ids.shape)}."
            )
        checked.append(ops.cast(ids, "int32"))
    return tuple(checked)


def as_bias(bias, score_shape, owner=OWNER, argument="bias"):
    """`bias` as float32 of rank 4, broadcastable to `score_shape` `(B, H, T, S)`."""
    if bias is None:
        return None
    bias = ops.convert_to_tensor(bias)
    dtype = backend.standardize_dtype(bias.dtype)
    shape = tuple(bias.shape)
    fits = len(shape) <= 4 and all(
        got in (None, 1) or size is None or got == size
        for got, size in zip(shape[::-1], score_shape[::-1])
    )
    if "float" not in dtype or not fits:
        raise ValueError(
            f"{owner}: argument `{argument}` must be a float tensor broadcastable "
            "to (batch, heads, query_length, key_length) = "
            f"{tuple(score_shape)}; received a {dtype} tensor of shape {shape}."
        )
    bias = ops.cast(bias, "float32")
    return ops.reshape(bias, (1,) * (4 - len(shape)) + tuple(ops.shape(bias)))


def _fits(shape, wanted):
    """`shape` equals `wanted` where both sizes are known."""
    return len(shape) == len(wanted) and all(
        not (isinstance(got, int) and isinstance(want, int)) or got == want
        for got, want in zip(shape, wanted)
    )


def check_soft_cap(logit_soft_cap):
    if logit_soft_cap is None:
        return None
    return _checks.check_positive_float(OWNER, "logit_soft_cap", logit_soft_cap)


def as_sinks(sinks, query):
    """`sinks` as float32 `(H,)`."""
    if sinks is None:
        return None
    sinks = ops.convert_to_tensor(sinks)
    heads = query.shape[2]
    if tuple(sinks.shape) != (heads,) or "float" not in backend.standardize_dtype(
        sinks.dtype
    ):
        raise ValueError(
            f"{OWNER}: argument `sinks` must be a float tensor of shape "
            f"(num_heads,) = ({heads},); received a "
            f"{backend.standardize_dtype(sinks.dtype)} tensor of shape "
            f"{tuple(sinks.shape)}."
        )
    return ops.cast(sinks, "float32")


def check_callable(argument, value, signature):
    if value is not None and not callable(value):
        _checks.fail(OWNER, argument, value, f"None or a callable {signature}")
    return value
