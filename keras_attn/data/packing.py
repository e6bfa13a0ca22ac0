"""Packing variable-length documents into fixed-length rows for language modelling.

`pack_sequences` concatenates documents (token-id sequences) and cuts the stream
into rows of `sequence_length` tokens, so no compute is spent on padding. Each row
says which document every token belongs to, so attention can stay inside a document
(`segment_ids` for `keras_attn.layers.MultiHeadAttention`), where each token stands
in its document (`positions`, e.g. rotary positions), and which next-token targets
may be learnt (`loss_mask`: never across a document boundary).

A document that does not fit in the rest of a row continues at the start of the
next one: no token is dropped and none is repeated; only the last row is padded.
The continuation is segment 1 of its new row and keeps counting its positions;
the last token of a row whose document goes on still has its label (the document's
next token) and is learnt.

Worked example, `sequence_length=4`, documents `[11, 12, 13]`, `[21, 22, 23, 24,
25]` and `[31]`:

```
                 row 0            row 1            row 2
token_ids     11 12 13 21      22 23 24 25      31  0  0  0
segment_ids    1  1  1  2       1  1  1  1       1  0  0  0
positions      0  1  2  0       1  2  3  4       0  0  0  0
labels        12 13  0 22      23 24 25  0       0  0  0  0
loss_mask      1  1  0  1       1  1  1  0       0  0  0  0
```

The second document starts at the end of row 0 and continues in row 1 (positions
1 to 4); the label of its first token (22) is known, so that position is learnt.
The last token of every document has nothing to predict (loss mask 0), so the
one-token document `[31]` contributes a token and no target. Where the loss mask
is 0 the label holds `padding_id`.
"""

import numpy as np

from keras_attn._checks import check_int_at_least

OWNER = "pack_sequences"
ROW_KEYS = ("token_ids", "segment_ids", "positions", "labels", "loss_mask")
_MAX_TOKEN_ID = 2**31 - 1  # rows are int32


def pack_sequences(sequences, sequence_length, *, padding_id=0):
    """Packs token-id documents into fixed-length next-token training rows.

    Documents are read lazily, one at a time, and each row is yielded as soon as
    it is full, so memory does not grow with the corpus: the source may be an
    endless generator. See the module docstring for the row layout and a worked
    example.

    Args:
        sequences: an iterable of documents, each a 1-D sequence of integer token
            ids that `np.asarray` converts (a list, a NumPy array, a tensor of any
            backend): a list, a generator, a `tf.data.Dataset` yielding 1-D
            tensors, or a `keras.utils.PyDataset`-like object yielding documents.
            Empty documents are skipped.
        sequence_length: int >= 2, the length of every row.
        padding_id: int >= 0, the token id (and label) of the padding that fills
            the last row. Defaults to 0.

    Returns:
        A generator of rows. Each row is a dict of NumPy arrays of shape
        `(sequence_length,)`:
        - `"token_ids"`: int32 token ids; `padding_id` on padding.
        - `"segment_ids"`: int32, the documents of the row numbered 1, 2, 3, ...
          in order; 0 on padding.
        - `"positions"`: int32 position of each token in its document, restarting
          at 0 at each document start and continuing across rows; 0 on padding.
        - `"labels"`: int32 next-token targets: the next token of the same
          document; `padding_id` where there is none.
        - `"loss_mask"`: float32, 1 where the label is a real next token, 0 on the
          last token of each document and on padding.

    Raises:
        ValueError: when called, for a bad `sequence_length` or `padding_id`, or a
            `sequences` that is not iterable; while iterating, for a document that
            is not a 1-D sequence of token ids in [0, 2**31) (the message gives the
            document's index and what it was).

    Example:
    ```python
    documents = [[11, 12, 13], [21, 22, 23, 24, 25], [31]]
    rows = list(keras_attn.data.pack_sequences(documents, sequence_length=4))
    rows[1]["positions"]  # array([1, 2, 3, 4], dtype=int32)
    # Streaming: an endless generator, read as far as needed.
    first = next(keras_attn.data.pack_sequences(endless_documents(), 2048))
    ```
    """
    sequence_length = check_int_at_least(
        OWNER,
        "sequence_length",
        sequence_length,
        2,
        " (a row holds a token and its next token)",
    )
    padding_id = check_int_at_least(OWNER, "padding_id", padding_id, 0)
    if padding_id > _MAX_TOKEN_ID:
        raise ValueError(
            f"{OWNER}: argument `padding_id` must be an int32 token id "
            f"(< 2**31); received {padding_id!r}."
        )
    try:
        documents = iter(sequences)
    except TypeError:
        raise ValueError(
            f"{OWNER}: argument `sequences` must be an iterable of token-id "
            f"sequences; received {_describe(sequences)}."
        ) from None
    return _pack(documents, sequence_length, padding_id)


def _pack(documents, length, padding_id):
    """The generator behind `pack_sequences`: fills one row at a time."""
    row, fill, segment = _empty_row(length, padding_id), 0, 0
    for index, document in enumerate(documents):
        tokens = _as_document(document, index)
        start = 0
        while start < len(tokens):
            take = min(length - fill, len(tokens) - start)
            stop = start + take
            segment += 1
            span = slice(fill, fill + take)
            row["token_ids"][span] = tokens[start:stop]
            row["segment_ids"][span] = segment
            row["positions"][span] = np.arange(start, stop)
            # Targets are the document's next tokens; the token after this span
            # is known when the document goes on into the next row.
            targets = tokens[start + 1 : stop + 1]
            row["labels"][fill : fill + len(targets)] = targets
            row["loss_mask"][fill : fill + len(targets)] = 1.0
            fill, start = fill + take, stop
            if fill == length:
                yield row
                row, fill, segment = _empty_row(length, padding_id), 0, 0
    if fill:
        yield row


def _empty_row(length, padding_id):
    row = {key: np.zeros(length, "int32") for key in ROW_KEYS[:-1]}
    row["token_ids"][:] = padding_id
    row["labels"][:] = padding_id
    row["loss_mask"] = np.zeros(length, "float32")
    return row


def _as_document(document, index):
    """`document` as a 1-D int64 array of token ids, or a ValueError naming it."""
    try:
        tokens = np.asarray(document)
    except (TypeError, ValueError):  # ragged nesting, unconvertible objects
        tokens = None
    if tokens is not None and tokens.ndim == 1 and tokens.size == 0:
        return tokens.astype("int64")  # skipped by the caller's loop
    if (
        tokens is None
        or tokens.ndim != 1
        or tokens.dtype.kind not in "iu"
        or tokens.min() < 0
        or tokens.max() > _MAX_TOKEN_ID
    ):
        raise ValueError(
            f"{OWNER}: argument `sequences` must yield 1-D sequences of integer "
            f"token ids in [0, 2**31); received at index {index} "
            f"{_describe(document)}."
        )
    return tokens.astype("int64")


def _describe(value):
    """What a user passed, briefly: dtype and shape of arrays, else a short repr."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(value.shape)
        kind = type(value).__name__
        return f"an array ({kind}) of dtype {value.dtype} and shape {shape}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} of type {type(value).__name__}"
