"""The optional inputs of `MultiHeadAttention`, checked once, naming the layer.

`check_structure` checks the constructor's window, soft cap and sinks (for the
Transformer blocks too). Of a call: `mask` turns `attention_mask`, the Keras masks
of the inputs and a cache's visible slots into one rank-4 boolean; `segment_ids`,
`bias` and `positions` are checked against the call's shapes; `check_cached_call`
refuses what a cached call cannot take. The attention core receives them as they
leave here.
"""

import functools

from keras import backend
from keras import ops

from keras_attn import _checks
from keras_attn.ops.masks import as_attention_mask
from keras_attn.ops.masks import as_boolean_mask
from keras_attn.ops.masks import check_attention_mask

_KERAS_MASKS = ("query_mask", "value_mask", "key_mask")


def check_structure(owner, sliding_window, logit_soft_cap, use_attention_sinks):
    """The constructor arguments `(sliding_window, logit_soft_cap,
    use_attention_sinks)` of an attention layer (or block), checked."""
    sliding_window = _checks.check_positive_int(
        owner, "sliding_window", sliding_window, allow_none=True
    )
    if logit_soft_cap is not None:
        logit_soft_cap = _checks.check_positive_float(
            owner, "logit_soft_cap", logit_soft_cap
        )
    use_attention_sinks = _checks.check_bool(
        owner, "use_attention_sinks", use_attention_sinks
    )
    return sliding_window, logit_soft_cap, use_attention_sinks


def check_key_value(owner, value_shape, key_shape, precomputed):
    """`value` is needed without precomputed keys; `key` has its length."""
    if value_shape is None and not precomputed:
        raise ValueError(
            f"{owner}: argument `value` must be a tensor unless `cache` holds "
            "precomputed keys and values; received None."
        )
    if value_shape is None or key_shape is None:
        return
    lengths = tuple(key_shape)[1:-1], tuple(value_shape)[1:-1]
    if len(lengths[0]) != len(lengths[1]) or any(
        None not in pair and pair[0] != pair[1] for pair in zip(*lengths)
    ):
        raise ValueError(
            f"{owner}: arguments `key` and `value` must be equal in length "
            f"(every axis but the last); received key of shape "
            f"{tuple(key_shape)} and value of shape {tuple(value_shape)}."
        )


def mask(owner, score_shape, attention_mask, keras_masks, visible=None):
    """`attention_mask`, the Keras masks `(query, value, key)` and the cache's
    `visible` slots as one boolean mask of rank 4, or None without any.

    `score_shape` is `(B, H, T, S)`; `keras_masks` may be empty.
    """
    masks = []
    if attention_mask is not None:
        attention_mask = as_attention_mask(attention_mask, owner, "attention_mask")
        check_attention_mask(attention_mask, score_shape, owner, "attention_mask")
        masks.append(attention_mask)
    for argument, keras_mask in zip(_KERAS_MASKS, keras_masks):
        if keras_mask is not None:
            keras_mask = as_boolean_mask(keras_mask, owner, argument)
            is_query = argument == "query_mask"  # (B, 1, T, 1), else (B, 1, 1, S)
            masks.append(
                keras_mask[:, None, :, None] if is_query else keras_mask[:, None, None]
            )
    if visible is not None:
        masks.append(visible)
    return functools.reduce(ops.logical_and, masks) if masks else None


def positions(owner, given, query_shape, key_shape, rotary_embedding):
    """`(query_positions, key_positions)` for the rotary embedding, or `(None,
    None)`: one tensor `(T,)`/`(B, T)` serves both in self-attention."""
    if given is None:
        return None, None
    if rotary_embedding is None:
        expected = "None without a `rotary_embedding` (they set its angles)"
        _fail(owner, "positions", given, expected)
    if _is_pair(given):
        return tuple(given)
    query_length, key_length = query_shape[1], key_shape[1]
    if None not in (query_length, key_length) and query_length != key_length:
        expected = (
            f"a pair (query_positions, key_positions) when the query length "
            f"({query_length}) differs from the key length ({key_length})"
        )
        _fail(owner, "positions", given, expected)
    return given, given


def check_cached_call(owner, cache, ring, segment_ids, attention_mask, attention_bias):
    """Refuse what a cached call cannot take: segment ids (the cache keeps no
    ids), and a mask or bias over a ring's slots (they move every step)."""
    if cache is None:
        return
    refused = {"segment_ids": segment_ids}
    if ring:
        refused.update(attention_mask=attention_mask, attention_bias=attention_bias)
    for argument, value in refused.items():
        if value is not None:
            why = (
                "a ring-buffer cache (sliding_window), whose slots hold other "
                "positions at every step"
                if ring and argument != "segment_ids"
                else "`cache`, which holds no segment ids"
            )
            _fail(owner, argument, value, f"None with {why}")


def _is_pair(value):
    return isinstance(value, (tuple, list)) and len(value) == 2


def _fits(shape, wanted):
    return len(shape) == len(wanted) and all(
        got is None or want is None or got == want for got, want in zip(shape, wanted)
    )


def _fail(owner, argument, value, expected):
    """A `ValueError` quoting the dtype and shape of `value`, not its values."""
    tensors = value if _is_pair(value) else (value,)
    described = []
    for tensor in tensors:
        if not hasattr(tensor, "shape"):
            tensor = ops.convert_to_tensor(tensor)
        dtype = backend.standardize_dtype(tensor.dtype)
        described.append(f"{dtype} {tuple(tensor.shape)}")
    what = "a pair of tensors " if _is_pair(value) else "a tensor "
    raise ValueError(
        f"{owner}: argument `{argument}` must be {expected}; received {what}"
        f"(dtype, shape) {' and '.join(described)}."
    )
