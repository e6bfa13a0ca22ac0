"""Batches of packed rows for `model.fit`: a `keras.utils.PyDataset`, or `tf.data`.

`PackedBatches` stacks the rows of `pack_sequences` into batches
`(x, y, sample_weight)`, the structure `model.fit`, `evaluate` and `predict` read on
every backend:

```
x = {"token_ids": (B, L) int32, "segment_ids": (B, L) int32, "positions": (B, L) int32}
y = labels (B, L) int32
sample_weight = loss_mask (B, L) float32
```

A functional model whose inputs are named `token_ids`, `segment_ids` and
`positions` takes `x` as it is. The loss mask weighs each token's loss, so no
target across a document boundary or on padding is learnt. With Keras' default
reduction (`"sum_over_batch_size"`) the weighted sum is divided by all `B * L`
positions; `reduction="mean_with_sample_weight"` averages over the learnt tokens.

Two kinds of source:
- A list (or tuple) of rows, e.g. `list(pack_sequences(documents, L))`: the rows
  are stacked once, the length is known (`len(batches)` batches), any batch can be
  read in any order, and `fit(shuffle=True)` (its default) shuffles the order of
  the batches each epoch.
- Any other iterable of rows, e.g. `pack_sequences(...)` itself: a stream, read
  lazily. Its length is unknown (`num_batches` is None), so `fit` needs
  `steps_per_epoch`, and continues the stream from epoch to epoch and from one
  `fit` to the next. Asking for a batch after the stream has ended is an
  `IndexError` that says so. `as_tf_dataset()` instead ends an epoch when the
  stream ends. Keras reads a few batches it does not train on: one to build the
  model in the first `fit` after `compile`, on TensorFlow two more at each `fit`
  to learn their shapes, and those it reads ahead (`workers`, prefetching). A
  stream cannot rewind, so it skips them, as a Python generator given to `fit`
  does: no matter for a large or endless stream, but a finite one must hold a few
  batches more than `steps_per_epoch * epochs`.
"""

import collections.abc
import threading

import keras
import numpy as np

from keras_attn._checks import check_bool
from keras_attn._checks import check_positive_int
from keras_attn.data.packing import ROW_KEYS

OWNER = "PackedBatches"
INPUT_KEYS = ("token_ids", "segment_ids", "positions")


class PackedBatches(keras.utils.PyDataset):
    """Batches `(x, y, sample_weight)` of packed rows, for `model.fit`.

    `x` is the dict of `"token_ids"`, `"segment_ids"` and `"positions"`, `y` the
    `"labels"` and `sample_weight` the `"loss_mask"` of `batch_size` rows, each
    `(batch_size, sequence_length)`. A list or tuple of rows gives a dataset of
    known length whose batches are read in any order; any other iterable (a
    generator such as `pack_sequences(...)`) is a stream of unknown length, read
    lazily in order (see the module docstring for how Keras iterates each).

    Args:
        rows: the rows of `keras_attn.data.pack_sequences`: a list or tuple of
            them (materialised), or any iterable of them (streamed). Each row is a
            dict with the keys `token_ids`, `segment_ids`, `positions`, `labels`
            and `loss_mask`, each 1-D of the same length in every row.
        batch_size: positive int, rows per batch.
        drop_remainder: whether the last batch, when shorter than `batch_size`,
            is dropped (every batch then has the same shape, so a compiled step
            is never retraced). Defaults to False.
        **kwargs: `keras.utils.PyDataset` arguments: `workers`,
            `use_multiprocessing`, `max_queue_size`. A stream is read by one
            process: threads (`workers > 1`) share it, each batch still served
            once, but `use_multiprocessing=True` is refused.

    Example:
    ```python
    # A causal LM whose attention stays inside each document of a row.
    inputs = {
        key: keras.Input((512,), dtype="int32", name=key)
        for key in ("token_ids", "segment_ids", "positions")
    }
    x = keras.layers.Embedding(vocabulary_size, 256)(inputs["token_ids"])
    attention = keras_attn.layers.MultiHeadAttention(
        num_heads=4, key_dim=64, rotary_embedding=keras_attn.layers.RotaryEmbedding()
    )
    x = x + attention(
        x,
        x,
        use_causal_mask=True,
        segment_ids=inputs["segment_ids"],
        positions=inputs["positions"],
    )
    model = keras.Model(inputs, keras.layers.Dense(vocabulary_size)(x))
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
    )

    rows = keras_attn.data.pack_sequences(documents, sequence_length=512)
    model.fit(keras_attn.data.PackedBatches(list(rows), batch_size=8), epochs=3)
    # An endless stream: Keras needs steps_per_epoch (and cannot shuffle it).
    stream = keras_attn.data.PackedBatches(
        keras_attn.data.pack_sequences(endless_documents(), 512), batch_size=8
    )
    model.fit(stream, steps_per_epoch=1000, epochs=10, shuffle=False)
    model.fit(stream.as_tf_dataset().prefetch(2), steps_per_epoch=1000)
    ```
    """

    def __init__(self, rows, batch_size, *, drop_remainder=False, **kwargs):
        super().__init__(**kwargs)
        self.batch_size = check_positive_int(OWNER, "batch_size", batch_size)
        self.drop_remainder = check_bool(OWNER, "drop_remainder", drop_remainder)
        self._lock = threading.Lock()
        self._stream = self._arrays = self._sequence_length = None
        self._pending = []  # rows read from a stream ahead of their batch
        self._served = 0
        if isinstance(rows, (list, tuple)):
            self._arrays = _materialise(rows, self.batch_size, self.drop_remainder)
            self._sequence_length = self._arrays["token_ids"].shape[1]
        else:
            self._stream = _open_stream(rows, kwargs.get("use_multiprocessing"))

    @property
    def num_batches(self):
        """The number of batches, or None for a stream (unknown length)."""
        if self._arrays is None:
            return None
        return -(-len(self._arrays["token_ids"]) // self.batch_size)

    @property
    def sequence_length(self):
        """The length of every row (for a stream, read from its first row)."""
        with self._lock:
            if self._sequence_length is None:
                self._pending = self._read(1)
                if not self._pending:
                    raise ValueError(
                        f"{OWNER}: argument `rows` must yield at least one row; "
                        "received an empty stream."
                    )
                arrays = _stack(self._pending, self._served * self.batch_size, None)
                self._sequence_length = arrays["token_ids"].shape[1]
        return self._sequence_length

    def __len__(self):
        if self._arrays is None:
            # As `len()` of a `tf.data.Dataset` of unknown cardinality.
            raise TypeError(f"{OWNER}: a stream of rows has no known length.")
        return self.num_batches

    def __bool__(self):
        return True  # a stream too, although its `len()` raises

    def __getitem__(self, index):
        """Batch `index` as `(x, y, sample_weight)`; for a stream, its next batch.

        A stream serves its batches in order, whatever `index`: Keras asks for 0,
        1, 2, ..., and a later `fit` that starts again at 0 continues the stream.

        Raises:
            IndexError: `index` is outside `range(len(self))`, or the stream has
                ended.
        """
        if self._arrays is not None:
            if not 0 <= index < len(self):
                raise IndexError(
                    f"{OWNER}: batch index {index} is out of range: there are "
                    f"{len(self)} batches."
                )
            span = slice(index * self.batch_size, (index + 1) * self.batch_size)
            return _as_batch({key: self._arrays[key][span] for key in ROW_KEYS})
        with self._lock:  # threads (`workers > 1`) share the stream
            batch = self._next_batch()
        if batch is None:
            raise IndexError(
                f"{OWNER}: the stream of rows ended after {self._served} batches "
                "(it has no known length). Give `fit` a `steps_per_epoch` for "
                "which the stream holds `steps_per_epoch * epochs` batches and "
                "the few Keras reads without training, make the source endless, "
                "pass a list of rows, or use `as_tf_dataset()`, which ends each "
                "epoch when the stream ends."
            )
        return batch

    def __iter__(self):
        """Every batch in order; for a stream, its remaining batches."""
        if self._arrays is not None:
            for index in range(len(self)):
                yield self[index]
            return
        while True:
            with self._lock:
                batch = self._next_batch()
            if batch is None:
                return
            yield batch

    def as_tf_dataset(self):
        """These batches as a `tf.data.Dataset` of `(x, y, sample_weight)`.

        Built with `tf.data.Dataset.from_generator` over `iter(self)`; `model.fit`
        reads it on every backend. A list of rows gives a dataset of known
        cardinality, replayed in order each epoch; a stream gives one of unknown
        cardinality whose epochs continue the stream, each ending when the
        stream ends. The batch dimension is static (`batch_size`) with
        `drop_remainder`, else None. As from the `PyDataset`, the first `fit`
        after `compile` reads batches to build the model, which a stream skips.
        TensorFlow is imported here only.

        Returns:
            A `tf.data.Dataset` whose `element_spec` is `(x, y, sample_weight)`:
            a dict of int32 `token_ids`, `segment_ids`, `positions`, int32
            labels and the float32 loss mask, each `(batch, sequence_length)`.
        """
        import tensorflow as tf

        shape = (self.batch_size if self.drop_remainder else None, self.sequence_length)
        ints = tf.TensorSpec(shape, tf.int32)
        signature = (
            {key: ints for key in INPUT_KEYS},
            ints,
            tf.TensorSpec(shape, tf.float32),
        )
        dataset = tf.data.Dataset.from_generator(
            self.__iter__, output_signature=signature
        )
        if self.num_batches is not None:
            cardinality = tf.data.experimental.assert_cardinality(self.num_batches)
            dataset = dataset.apply(cardinality)
        return dataset

    def _next_batch(self):
        """The stream's next batch, or None once it has ended; under the lock."""
        rows = self._read(self.batch_size)
        if not rows or (self.drop_remainder and len(rows) < self.batch_size):
            return None
        arrays = _stack(rows, self._served * self.batch_size, self._sequence_length)
        self._sequence_length = arrays["token_ids"].shape[1]
        self._served += 1
        return _as_batch(arrays)

    def _read(self, count):
        """Up to `count` rows: the pending ones first, then from the stream."""
        rows, self._pending = self._pending[:count], self._pending[count:]
        while len(rows) < count:
            row = next(self._stream, _END)
            if row is _END:
                break
            rows.append(row)
        return rows


_END = object()


def _materialise(rows, batch_size, drop_remainder):
    """The stacked arrays of a list of rows, less a short last batch if dropped."""
    count = len(rows) - (len(rows) % batch_size if drop_remainder else 0)
    if not count:
        raise ValueError(
            f"{OWNER}: argument `rows` must hold at least one batch "
            f"(batch_size={batch_size}, drop_remainder={drop_remainder}); "
            f"received {len(rows)} rows."
        )
    return _stack(rows[:count], 0, None)


def _open_stream(rows, use_multiprocessing):
    if use_multiprocessing:
        raise ValueError(
            f"{OWNER}: argument `use_multiprocessing` must be False when `rows` "
            "is a stream (each process would read its own copy of it and repeat "
            "its batches; pass a list of rows to use processes); received True."
        )
    try:
        return iter(rows)
    except TypeError:
        raise ValueError(
            f"{OWNER}: argument `rows` must be a list or an iterable of packed "
            f"rows; received a {type(rows).__name__}."
        ) from None


def _stack(rows, first_index, length):
    """`{key: (len(rows), L) array}` of the rows, each checked to be a packed row
    of length `length` (None: the first row's); `first_index` is the index of
    `rows[0]` in the source, for the message."""
    for index, row in enumerate(rows, first_index):
        shapes = _shapes(row)
        if shapes and length is None and len(shapes[0]) == 1:
            length = shapes[0][0]
        if shapes is None or any(shape != (length,) for shape in shapes):
            raise ValueError(
                f"{OWNER}: argument `rows` must hold rows of `pack_sequences`: "
                f"dicts with the keys {', '.join(ROW_KEYS)}, each of shape "
                "(sequence_length,) with the same length in every row; received "
                f"at index {index} {_describe_row(row)}."
            )
    return {
        key: np.stack([np.asarray(row[key]) for row in rows]).astype(
            "float32" if key == "loss_mask" else "int32", copy=False
        )
        for key in ROW_KEYS
    }


def _shapes(row):
    """The shapes of a row's arrays in `ROW_KEYS` order, or None if it is no row."""
    if not isinstance(row, collections.abc.Mapping):
        return None
    if any(key not in row for key in ROW_KEYS):
        return None
    return [np.shape(row[key]) for key in ROW_KEYS]


def _describe_row(row):
    if not isinstance(row, collections.abc.Mapping):
        return f"a {type(row).__name__}"
    shapes = ", ".join(f"{key}: {np.shape(value)}" for key, value in row.items())
    return f"a dict of shapes {{{shapes}}}"


def _as_batch(arrays):
    x = {key: arrays[key] for key in INPUT_KEYS}
    return x, arrays["labels"], arrays["loss_mask"]
