"""Attention masks: build them, convert padding masks, combine them.

Polarity is Keras': `True` means "may attend". Attention masks broadcast to
`(batch, heads, query_length, key_length)`; a padding mask is `(batch, length)`.
"""

from keras import backend
from keras import ops


def causal_mask(query_length, key_length=None, offset=0):
    """Lower-triangular mask: query `i` may attend key `j` when `j <= i + offset`.

    Args:
        query_length: number of query positions (int or scalar tensor).
        key_length: number of key positions; defaults to `query_length`.
        offset: position of the first query among the keys, e.g. the cache
            index when decoding one token at a time. Int or scalar tensor.

    Returns:
        A boolean tensor of shape `(query_length, key_length)`.

    Example:
    ```python
    keras_attn.ops.causal_mask(3)
    # [[ True, False, False],
    #  [ True,  True, False],
    #  [ True,  True,  True]]
    ```
    """
    key_length = query_length if key_length is None else key_length
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(
        offset, "int32"
    )
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.greater_equal(query_positions[:, None], key_positions[None, :])


def padding_mask_to_attention_mask(padding_mask, query_length=None):
    """Expand a key padding mask `(batch, key_length)` to an attention mask.

    Args:
        padding_mask: boolean (or 0/1) tensor `(batch, key_length)`, True for
            real tokens.
        query_length: if given, the mask is tiled to
            `(batch, 1, query_length, key_length)`; otherwise it is returned as
            `(batch, 1, 1, key_length)`, which broadcasts over heads and queries.

    Returns:
        A boolean attention mask of rank 4.

    Example:
    ```python
    mask = keras_attn.ops.padding_mask_to_attention_mask([[1, 1, 0]])
    mask.shape  # (1, 1, 1, 3)
    ```
    """
    padding_mask = as_boolean_mask(
        padding_mask, "padding_mask_to_attention_mask", "padding_mask"
    )
    if len(padding_mask.shape) != 2:
        raise ValueError(
            "padding_mask_to_attention_mask: argument `padding_mask` must have "
            "rank 2 (batch, key_length); received a tensor of shape "
            f"{tuple(padding_mask.shape)}."
        )
    mask = padding_mask[:, None, None, :]  # (B, 1, 1, S)
    if query_length is not None:
        mask = ops.repeat(mask, query_length, axis=2)  # (B, 1, T, S)
    return mask


def combine_masks(*masks):
    """Logical AND of attention masks; `None` entries are ignored.

    Masks of rank 2 `(T, S)`, rank 3 `(B, T, S)` and rank 4 `(B, H, T, S)` are
    aligned on their last two axes before broadcasting, so a causal mask and
    a padding mask combine directly.

    Args:
        *masks: boolean (or 0/1 integer) tensors or `None`.

    Returns:
        The combined boolean mask, or `None` when every mask is `None`.

    Example:
    ```python
    mask = keras_attn.ops.combine_masks(
        keras_attn.ops.causal_mask(4),
        keras_attn.ops.padding_mask_to_attention_mask(padding_mask),
    )  # (B, 1, 4, 4)
    ```
    """
    combined = None
    for mask in masks:
        if mask is None:
            continue
        mask = as_attention_mask(mask)
        combined = mask if combined is None else ops.logical_and(combined, mask)
    return combined


def as_attention_mask(mask, owner="combine_masks", argument="masks"):
    """Bring a mask of rank 2, 3 or 4 to rank 4 `(B|1, H|1, T|1, S|1)`, boolean."""
    mask = as_boolean_mask(mask, owner, argument)
    rank = len(mask.shape)
    if rank == 2:  # (T, S)
        return mask[None, None, :, :]
    if rank == 3:  # (B, T, S)
        return mask[:, None, :, :]
    if rank == 4:
        return mask
    raise ValueError(
        f"{owner}: argument `{argument}` must have rank 2 (query_length, "
        "key_length), 3 (batch, query_length, key_length) or 4 (batch, heads, "
        f"query_length, key_length); received a tensor of shape "
        f"{tuple(mask.shape)}."
    )


def check_attention_mask(mask, score_shape, owner, argument):
    """Raise a ValueError unless rank-4 `mask` broadcasts to `score_shape`.

    `score_shape` is `(batch, heads, query_length, key_length)`; `None` entries
    (unknown sizes) accept anything.
    """
    for got, want in zip(mask.shape, score_shape):
        if got not in (None, 1) and want is not None and got != want:
            raise ValueError(
                f"{owner}: argument `{argument}` must broadcast to (batch, heads, "
                f"query_length, key_length) = {tuple(score_shape)}; received a "
                f"mask of shape {tuple(mask.shape)}."
            )


def as_boolean_mask(mask, owner, argument):
    """`mask` as a boolean tensor; boolean and 0/1 integer masks are accepted.

    A float mask is refused rather than cast: an additive mask (0 where a query may
    attend, a large negative number where it may not, the PyTorch and Hugging Face
    convention) would be inverted by a cast, silently.

    Args:
        mask: a boolean or integer tensor, NumPy array or nested list.
        owner: the layer or function name the error message starts with.
        argument: the argument name the error message quotes.

    Returns:
        A boolean tensor of the same shape: True where `mask` is True or nonzero.

    Example:
    ```python
    as_boolean_mask([[1, 1, 0]], "MyLayer", "padding_mask")  # [[True, True, False]]
    as_boolean_mask(additive, "MyLayer", "attention_mask")  # ValueError
    ```
    """
    if not hasattr(mask, "dtype"):
        mask = ops.convert_to_tensor(mask)  # Python lists of bools or of 0/1
    dtype = backend.standardize_dtype(mask.dtype)
    if dtype == "bool":
        return ops.cast(mask, "bool")  # a no-op on tensors; NumPy -> tensor
    if "int" in dtype:  # int8 ... int64, uint8 ...
        return ops.not_equal(mask, 0)
    raise ValueError(
        f"{owner}: argument `{argument}` must be a boolean (or 0/1 integer) mask, "
        f"True where a query may attend; received a mask of dtype {dtype}. A "
        "float mask is ambiguous: an additive mask (0 = attend, -inf or -1e9 = "
        "masked, the PyTorch and Hugging Face convention) converts with "
        "`additive_mask == 0`, a 0/1 float mask with `float_mask > 0`."
    )
