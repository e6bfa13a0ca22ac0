"""Grouped-query layout shared by the math and chunked attention paths.

Query heads are split as `(kv_heads, groups)`: query head `h` reads key/value head
`h // groups`, the order `keras.layers.GroupedQueryAttention` uses. Keeping the groups
as their own axis lets one einsum serve all groups without repeating keys and values.
"""

from keras import ops

# Blocks of logits are queries-major, `(B, Hkv, G, bq, bk)`, except in the chunked
# backward pass, which works keys-major, `(B, Hkv, bk, G, bq)`.
_KEYS_MAJOR, _QUERIES_MAJOR = (0, 1, 4, 2, 3), (0, 1, 3, 4, 2)

# Large negative logit for masked positions: finite, so that a fully masked row gives
# exp(NEG - NEG) = 1 instead of NaN; such rows are zeroed explicitly afterwards.
NEG = -1e30


def split_query_heads(query, num_kv_heads):
    """(B, T, H, D) -> (B, T, Hkv, G, D)."""
    batch, length, heads, dim = ops.shape(query)
    return ops.reshape(query, (batch, length, num_kv_heads, heads // num_kv_heads, dim))


def merge_query_heads(x):
    """(B, T, Hkv, G, D) -> (B, T, H, D)."""
    batch, length, kv_heads, groups, dim = ops.shape(x)
    return ops.reshape(x, (batch, length, kv_heads * groups, dim))


def group_mask_heads(mask, num_kv_heads):
    """(B|1, H|1, T|1, S|1) -> (B|1, Hkv|1, G|1, T|1, S|1)."""
    batch, heads, query_length, key_length = ops.shape(mask)
    if heads == 1:
        return mask[:, :, None]
    return ops.reshape(
        mask,
        (batch, num_kv_heads, heads // num_kv_heads, query_length, key_length),
    )


def keys_major(x):
    """A block `(B, Hkv, G, bq, bk)` (or broadcastable) as `(B, Hkv, bk, G, bq)`."""
    return ops.transpose(x, _KEYS_MAJOR)


def queries_major(x):
    """A keys-major block `(B, Hkv, bk, G, bq)` as `(B, Hkv, G, bq, bk)`."""
    return ops.transpose(x, _QUERIES_MAJOR)
