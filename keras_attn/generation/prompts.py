"""Prompts of a decoder-only model as one right-padded batch.

`generate` continues each prompt in place: row `i` holds its prompt at positions
`[0, length_i)` and the generated tokens after it, so every row keeps the
positions it would have alone and a batch decodes like its rows one at a time.
The sampler keeps the positions a prompt gives (`given`) and writes the others.
"""

import numpy as np
from keras import ops

from keras_attn import _checks


def prompt_batch(owner, prompts, max_length, padding_id, start_token_id):
    """`(tokens (B, max_length) int32, given (B, max_length) bool)`.

    Args:
        owner: how errors name the caller.
        prompts: a list of token-id lists (any lengths), or a 2-D array or
            tensor right-padded with `padding_id` (with `padding_id=None`, every
            entry is a prompt token).
        max_length: int, the length of the returned rows.
        padding_id: the model's padding id, or None.
        start_token_id: None, or a token put before every prompt.
    """
    fill = 0 if padding_id is None else padding_id
    if isinstance(prompts, (list, tuple)):
        tokens, lengths = _from_lists(owner, prompts, fill)
    else:
        tokens = ops.cast(prompts, "int32")
        _checks.check_rank(owner, "inputs", tuple(tokens.shape), 2)
        lengths = _right_padded_lengths(tokens, padding_id)
    if start_token_id is not None:
        start = ops.full((ops.shape(tokens)[0], 1), start_token_id, "int32")
        tokens, lengths = ops.concatenate([start, tokens], axis=1), lengths + 1
    _check_lengths(owner, lengths, max_length)
    # Columns gathered, not sliced into place: the prompts' width may be
    # symbolic (jax2tf export), where a slice would need `width <= max_length`
    # proven. Columns past the width repeat its last one and are then filled.
    batch, width = ops.shape(tokens)
    columns = ops.minimum(ops.arange(max_length, dtype="int32"), width - 1)
    rows = ops.take_along_axis(
        tokens, ops.broadcast_to(columns[None], (batch, max_length)), axis=1
    )
    given = ops.arange(max_length)[None, :] < ops.cast(lengths, "int32")[:, None]
    return ops.where(given, rows, fill), given


def _from_lists(owner, prompts, fill):
    """A list of token-id lists, right-padded with `fill`, and their lengths."""
    rows = []
    for index, prompt in enumerate(prompts):
        row = np.asarray(prompt)
        if row.ndim != 1 or not (row.size == 0 or np.issubdtype(row.dtype, np.integer)):
            raise ValueError(
                f"{owner}: argument `inputs` must be a list of token-id lists; "
                f"received {prompt!r} at index {index}."
            )
        rows.append(row)
    if not rows:
        _checks.fail(owner, "inputs", prompts, "at least one prompt")
    lengths = np.array([len(row) for row in rows], "int32")
    tokens = np.full((len(rows), int(lengths.max())), fill, "int32")
    for row, prompt in zip(tokens, rows):
        row[: len(prompt)] = prompt
    return ops.convert_to_tensor(tokens), ops.convert_to_tensor(lengths)


def _right_padded_lengths(tokens, padding_id):
    """`(B,)` prompt lengths: the position after each row's last real token."""
    width = ops.shape(tokens)[1]
    if padding_id is None:
        return ops.full((ops.shape(tokens)[0],), width, "int32")
    is_token = ops.cast(ops.not_equal(tokens, padding_id), "int32")
    # Position + 1 of the last non-padding token (0 for an all-padding row).
    return ops.max(is_token * (ops.arange(width, dtype="int32") + 1)[None], axis=1)


def _check_lengths(owner, lengths, max_length):
    """Every prompt has a token and fits in `max_length`, where values are known."""
    values = _checks.concrete_values(lengths)
    if values is None:
        return
    if values.size and values.min() == 0:
        row = int(np.argmin(values))
        raise ValueError(
            f"{owner}: argument `inputs` must give every prompt at least one "
            f"token (or pass `start_token_id`); prompt {row} is empty."
        )
    if values.size and values.max() > max_length:
        row = int(np.argmax(values))
        raise ValueError(
            f"{owner}: argument `inputs` holds prompt {row} of {int(values[row])} "
            f"tokens, longer than `max_length`={max_length}."
        )
