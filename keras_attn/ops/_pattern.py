"""Which (query, key) pairs may attend: the attention pattern of one call.

A pattern combines every kind of mask `dot_product_attention` takes: causal, a
sliding window, segment ids (packed documents), a boolean `mask` tensor and a
`mask_mod` callable. Each kind answers two questions:

- element-wise, for a block of queries × keys: which pairs may attend
  (`allowed`), as a `(B|1, H|1, bq|1, bk|1)` boolean;
- block-wise, for the whole `(num_query_blocks, num_key_blocks)` grid: which blocks
  are empty, whole or partial (`block_states`), derived from positions and per-block
  minima and maxima for the structured kinds, so that no `(T, S)` tensor is built.

Positions are those of the call: query `i` and key `j` sit at positions `i` and `j`
(a cached decoding step passes its own explicit mask instead).
"""

import copy

from keras import backend
from keras import ops

from keras_attn.ops._slicing import block
from keras_attn.ops._slicing import pad_end
from keras_attn.ops._slicing import score_block

EMPTY, PARTIAL, WHOLE = 0, 1, 2
_BIG = 2**31 - 1  # beyond any int32 segment id, for per-block minima


class AttentionPattern:
    """The mask kinds of one call, evaluated per block or as block states.

    Args:
        query_length, key_length: `T` and `S` (ints or scalar tensors).
        batch_size: `B`, for the batch indices of `mask_mod`.
        num_heads: `H`, for the head indices of `mask_mod`.
        is_causal: query `i` sees keys `j <= i`.
        sliding_window: `W` or None: `|i - j| < W` (with causal, `i - W < j`).
        segment_ids: None or `(query_ids (B, T), key_ids (B, S))`, int32.
        mask: None or a boolean `(B|1, H|1, T|1, S|1)` tensor.
        mask_mod: None or `mask_mod(batch, head, q_idx, kv_idx) -> bool`.
    """

    # Attributes that hold tensors or a callable; the rest are Python values
    # or, for lengths known only when traced, scalar tensors.
    TENSOR_ATTRIBUTES = ("segment_ids", "mask", "mask_mod")

    def __init__(
        self,
        query_length,
        key_length,
        batch_size,
        num_heads,
        is_causal=False,
        sliding_window=None,
        segment_ids=None,
        mask=None,
        mask_mod=None,
    ):
        self.query_length, self.key_length = query_length, key_length
        self.batch_size, self.num_heads = batch_size, num_heads
        self.is_causal, self.sliding_window = is_causal, sliding_window
        self.segment_ids, self.mask, self.mask_mod = segment_ids, mask, mask_mod

    def replace(self, **attributes):
        """A copy with `attributes` replaced."""
        pattern = copy.copy(self)
        vars(pattern).update(attributes)
        return pattern

    @property
    def is_empty(self):
        """True when every query may attend every key."""
        return not (
            self.is_causal
            or self.sliding_window
            or self.segment_ids is not None
            or self.mask is not None
            or self.mask_mod is not None
        )

    def padded(self, padded_query_length, padded_key_length):
        """The same pattern on queries and keys padded at the end.

        Padded keys are never attended; padded queries are treated like real
        ones (their outputs are discarded).
        """
        query_extra = padded_query_length - self.query_length
        key_extra = padded_key_length - self.key_length
        segment_ids, mask = self.segment_ids, self.mask
        if segment_ids is not None:
            query_ids, key_ids = segment_ids
            segment_ids = (
                pad_end(query_ids, 1, query_extra, 0),
                pad_end(key_ids, 1, key_extra, 0),
            )
        if mask is not None:
            if mask.shape[2] != 1:
                mask = pad_end(mask, 2, query_extra, True)
            if mask.shape[3] != 1:
                mask = pad_end(mask, 3, key_extra, False)
        return _Padded(self, segment_ids, mask, padded_query_length, padded_key_length)

    def allowed(self, query_start, query_size, key_start, key_size):
        """`(B|1, H|1, bq|1, bk|1)` booleans for a block, or None: all allowed."""
        q = query_start + ops.arange(query_size, dtype="int32")
        k = key_start + ops.arange(key_size, dtype="int32")
        conditions = []
        if self.key_padding:
            conditions.append(ops.less(k, self.key_length)[None, None, None, :])
        if self.is_causal:
            conditions.append(ops.greater_equal(q[:, None], k[None, :])[None, None])
        if self.sliding_window:
            offset = q[:, None] - k[None, :]
            if not self.is_causal:
                offset = ops.abs(offset)
            conditions.append(ops.less(offset, self.sliding_window)[None, None])
        if self.segment_ids is not None:
            query_ids, key_ids = self.segment_ids
            query_ids = block(query_ids, 1, query_start, query_size)
            key_ids = block(key_ids, 1, key_start, key_size)
            same = ops.equal(query_ids[:, :, None], key_ids[:, None, :])
            conditions.append(same[:, None])  # (B, 1, bq, bk)
        if self.mask is not None:
            conditions.append(
                score_block(self.mask, query_start, query_size, key_start, key_size)
            )
        if self.mask_mod is not None:
            conditions.append(self._evaluate_mask_mod(q, k))
        if not conditions:
            return None
        allowed = conditions[0]
        for condition in conditions[1:]:
            allowed = ops.logical_and(allowed, condition)
        return allowed

    key_padding = False  # keys beyond `key_length` exist only once padded

    def indices(self, q, k):
        """The index tensors of `mask_mod` and `score_mod`, rank 4, clamped."""
        batch = ops.arange(self.batch_size, dtype="int32")[:, None, None, None]
        head = ops.arange(self.num_heads, dtype="int32")[None, :, None, None]
        # Padded positions are clamped, so that a modifier indexing a tensor of
        # length T or S (`ops.take(document_ids, q_idx)`) stays in range.
        q = ops.minimum(q, self.query_length - 1)[None, None, :, None]
        k = ops.minimum(k, self.key_length - 1)[None, None, None, :]
        return batch, head, q, k

    def _evaluate_mask_mod(self, q, k):
        allowed = self.mask_mod(*self.indices(q, k))
        dtype = backend.standardize_dtype(getattr(allowed, "dtype", None))
        if dtype != "bool":
            raise ValueError(
                "dot_product_attention: argument `mask_mod` must return a boolean "
                f"tensor (True where a query may attend); it returned {dtype}."
            )
        return allowed


class _Padded(AttentionPattern):
    """A pattern over padded lengths: keys beyond the real length are refused."""

    key_padding = True

    def __init__(self, pattern, segment_ids, mask, padded_query, padded_key):
        super().__init__(
            pattern.query_length,
            pattern.key_length,
            pattern.batch_size,
            pattern.num_heads,
            pattern.is_causal,
            pattern.sliding_window,
            segment_ids,
            mask,
            pattern.mask_mod,
        )
        self.padded_query_length, self.padded_key_length = padded_query, padded_key

    def block_states(self, query_block, key_block):
        """`(num_query_blocks, num_key_blocks)` int32: EMPTY, PARTIAL or WHOLE."""
        num_query_blocks = self.padded_query_length // query_block
        num_key_blocks = self.padded_key_length // key_block
        q_first = ops.arange(num_query_blocks, dtype="int32")[:, None] * query_block
        q_last = ops.minimum(q_first + query_block, self.query_length) - 1
        k_first = ops.arange(num_key_blocks, dtype="int32")[None, :] * key_block
        k_last = ops.minimum(k_first + key_block, self.key_length) - 1
        empty = ops.zeros((num_query_blocks, num_key_blocks), "bool")
        whole = ops.broadcast_to(
            k_first + key_block <= self.key_length, (num_query_blocks, num_key_blocks)
        )
        empty = ops.logical_or(empty, k_first >= self.key_length)
        window = self.sliding_window
        if self.is_causal:
            empty = ops.logical_or(empty, k_first > q_last)
            whole = ops.logical_and(whole, k_last <= q_first)
        if window and self.is_causal:
            empty = ops.logical_or(empty, k_last <= q_first - window)
            whole = ops.logical_and(whole, k_first > q_last - window)
        elif window:
            far = ops.logical_or(k_first - q_last >= window, q_first - k_last >= window)
            near = ops.logical_and(k_last - q_first < window, q_last - k_first < window)
            empty, whole = ops.logical_or(empty, far), ops.logical_and(whole, near)
        for kind_empty, kind_whole in self._tensor_kind_states(query_block, key_block):
            empty = ops.logical_or(empty, kind_empty)
            whole = ops.logical_and(whole, kind_whole)
        return ops.where(empty, EMPTY, ops.where(whole, WHOLE, PARTIAL))

    def _tensor_kind_states(self, query_block, key_block):
        """(empty, whole) per block for segment ids, `mask` and `mask_mod`."""
        states = []
        if self.segment_ids is not None:
            states.append(self._segment_states(query_block, key_block))
        if self.mask is not None:
            states.append(self._mask_states(query_block, key_block))
        if self.mask_mod is not None:
            states.append(self._mask_mod_states(query_block, key_block))
        return states

    def _segment_states(self, query_block, key_block):
        # Per batch row and block, the smallest and largest segment id: no id in
        # common when the ranges are disjoint; one and the same id when all four
        # agree. Padded positions take no part.
        query_ids, key_ids = self.segment_ids
        q_min, q_max = _block_extremes(query_ids, query_block, self.query_length)
        k_min, k_max = _block_extremes(key_ids, key_block, self.key_length)
        q_min, q_max = q_min[:, :, None], q_max[:, :, None]
        k_min, k_max = k_min[:, None, :], k_max[:, None, :]
        disjoint = ops.logical_or(q_max < k_min, k_max < q_min)
        same = ops.logical_and(
            ops.logical_and(q_min == q_max, k_min == k_max), q_min == k_min
        )
        return ops.all(disjoint, axis=0), ops.all(same, axis=0)

    def _mask_states(self, query_block, key_block):
        mask = self.mask  # (B|1, H|1, Tp|1, Sp|1)
        shape = ops.shape(mask)
        rows = 1 if mask.shape[2] == 1 else self.padded_query_length // query_block
        columns = 1 if mask.shape[3] == 1 else self.padded_key_length // key_block
        blocked = ops.reshape(
            mask,
            (shape[0], shape[1], rows, shape[2] // rows, columns, shape[3] // columns),
        )
        any_allowed = ops.any(blocked, axis=(0, 1, 3, 5))  # (rows, columns)
        all_allowed = ops.all(blocked, axis=(0, 1, 3, 5))
        return ops.logical_not(any_allowed), all_allowed

    def _mask_mod_states(self, query_block, key_block):
        # Evaluated one query block at a time over all keys: memory bq × S.
        num_query_blocks = self.padded_query_length // query_block
        num_key_blocks = self.padded_key_length // key_block
        keys = ops.arange(self.padded_key_length, dtype="int32")
        in_range = ops.less(keys, self.key_length)

        def query_block_states(i, carry):
            any_allowed, all_allowed = carry
            queries = i * query_block + ops.arange(query_block, dtype="int32")
            allowed = ops.logical_and(self._evaluate_mask_mod(queries, keys), in_range)
            shape = (*ops.shape(allowed)[:2], query_block, self.padded_key_length)
            allowed = ops.reshape(
                ops.broadcast_to(allowed, shape),
                (-1, query_block, num_key_blocks, key_block),
            )
            row_any = ops.any(allowed, axis=(0, 1, 3))[None]  # (1, nk)
            row_all = ops.all(allowed, axis=(0, 1, 3))[None]
            return (
                ops.slice_update(any_allowed, (i, 0), row_any),
                ops.slice_update(all_allowed, (i, 0), row_all),
            )

        grid = (num_query_blocks, num_key_blocks)
        init = (ops.zeros(grid, "bool"), ops.zeros(grid, "bool"))
        any_allowed, all_allowed = ops.fori_loop(
            0, num_query_blocks, query_block_states, init
        )
        return ops.logical_not(any_allowed), all_allowed


def _block_extremes(ids, block, length):
    """Per row and block of `block` positions: the smallest and largest id `(B, n)`
    among the first `length` positions."""
    batch, padded_length = ops.shape(ids)
    blocked = ops.reshape(ids, (batch, padded_length // block, block))
    real = ops.reshape(ops.arange(padded_length) < length, (1, -1, block))
    smallest = ops.min(ops.where(real, blocked, _BIG), axis=2)
    largest = ops.max(ops.where(real, blocked, -_BIG), axis=2)
    return smallest, largest
