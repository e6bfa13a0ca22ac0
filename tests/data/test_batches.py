"""`PackedBatches`: batch structures, streams, and `model.fit` on every backend."""

import itertools
import multiprocessing.dummy

import keras
import numpy as np

from keras_attn.data import PackedBatches
from keras_attn.data import pack_sequences
from keras_attn.data.packing import ROW_KEYS
from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from tests._keras_private import TestCase

VOCAB, LENGTH, BATCH = 16, 8, 2
INPUTS = ("token_ids", "segment_ids", "positions")


def documents(count=12, seed=0):
    """Documents of 1 to 3 * LENGTH tokens, ids in [1, VOCAB)."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(1, VOCAB, size=rng.integers(1, 3 * LENGTH)) for _ in range(count)
    ]


def endless_documents(seed=0, max_length=3 * LENGTH):
    rng = np.random.default_rng(seed)
    while True:
        yield rng.integers(1, VOCAB, size=rng.integers(1, max_length))


def rows_of(count, seed=0, max_length=3 * LENGTH):
    """The first `count` rows packed from an endless source (none padded)."""
    source = endless_documents(seed, max_length)
    return list(itertools.islice(pack_sequences(source, LENGTH), count))


def tiny_language_model():
    """Embeddings of the three packed inputs summed, then logits over the vocabulary."""
    inputs = {key: keras.Input((LENGTH,), dtype="int32", name=key) for key in INPUTS}
    x = keras.layers.Embedding(VOCAB, 8)(inputs["token_ids"])
    x = x + keras.layers.Embedding(LENGTH + 1, 8)(inputs["segment_ids"])
    x = x + keras.layers.Embedding(4 * LENGTH, 8)(inputs["positions"])
    return keras.Model(inputs, keras.layers.Dense(VOCAB)(x))


def compile_model(model, reduction="sum_over_batch_size"):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=reduction
        ),
    )
    return model


def cross_entropy(logits, labels):
    """Per-token `-log softmax(logits)[label]` in NumPy, `(B, L)`."""
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


class PackedBatchesStructureTest(TestCase):
    def test_list_of_rows_gives_batches_of_known_length(self):
        rows = rows_of(5)
        batches = PackedBatches(rows, batch_size=BATCH)
        self.assertEqual(len(batches), 3)
        self.assertEqual(batches.num_batches, 3)
        self.assertEqual(batches.sequence_length, LENGTH)
        for index, size in enumerate((2, 2, 1)):
            x, y, sample_weight = batches[index]
            self.assertEqual(sorted(x), sorted(INPUTS))
            chunk = rows[index * BATCH : index * BATCH + size]
            for key in INPUTS:
                self.assertEqual(x[key].dtype, "int32")
                np.testing.assert_array_equal(x[key], [row[key] for row in chunk])
            self.assertEqual(y.dtype, "int32")
            self.assertEqual(sample_weight.dtype, "float32")
            self.assertEqual(sample_weight.shape, (size, LENGTH))
            np.testing.assert_array_equal(y, [row["labels"] for row in chunk])
            np.testing.assert_array_equal(
                sample_weight, [row["loss_mask"] for row in chunk]
            )
        self.assertEqual(len(list(batches)), 3)
        for index in (3, -1):
            with self.assertRaisesRegex(IndexError, "out of range: there are 3"):
                batches[index]

    def test_drop_remainder_drops_the_short_last_batch(self):
        batches = PackedBatches(rows_of(5), batch_size=BATCH, drop_remainder=True)
        self.assertEqual(len(batches), 2)
        self.assertEqual([b[1].shape for b in batches], [(BATCH, LENGTH)] * 2)

    def test_stream_has_no_length_and_serves_its_batches_in_order(self):
        rows = rows_of(5)
        batches = PackedBatches(iter(rows), batch_size=BATCH)
        self.assertIsNone(batches.num_batches)
        self.assertTrue(batches)
        with self.assertRaisesRegex(TypeError, "no known length"):
            len(batches)
        self.assertEqual(batches.sequence_length, LENGTH)  # peeks, loses nothing
        served = [batches[0][0]["token_ids"], batches[1][0]["token_ids"]]
        served += [batch[0]["token_ids"] for batch in batches]  # the rest
        np.testing.assert_array_equal(
            np.concatenate(served), [row["token_ids"] for row in rows]
        )
        with self.assertRaisesRegex(IndexError, "stream of rows ended after 3"):
            batches[2]

    def test_stream_serves_its_next_batch_whatever_the_index(self):
        rows = rows_of(3 * BATCH)
        batches = PackedBatches(iter(rows), BATCH)
        served = [batches[0][1], batches[0][1], batches[7][1]]
        np.testing.assert_array_equal(
            np.concatenate(served), [row["labels"] for row in rows]
        )

    def test_threads_share_a_stream_each_row_served_once(self):
        rows = rows_of(10 * BATCH)
        batches = PackedBatches(iter(rows), BATCH, workers=4)
        with multiprocessing.dummy.Pool(4) as pool:
            served = pool.map(lambda index: batches[index][0]["token_ids"], range(10))
        got = sorted(map(bytes, np.concatenate(served)))
        self.assertEqual(got, sorted(bytes(row["token_ids"]) for row in rows))

    def test_bad_arguments_are_named(self):
        rows = rows_of(3)
        for value in (0, -1, 2.0, True):
            with self.assertRaisesRegex(
                ValueError, rf"PackedBatches: argument `batch_size`.*received {value}"
            ):
                PackedBatches(rows, value)
        with self.assertRaisesRegex(ValueError, "`drop_remainder` must be True or"):
            PackedBatches(rows, 2, drop_remainder="yes")
        with self.assertRaisesRegex(ValueError, "`rows` must be a list or an iterable"):
            PackedBatches(5, 2)
        with self.assertRaisesRegex(ValueError, "at least one batch.*received 0 rows"):
            PackedBatches([], 2)
        with self.assertRaisesRegex(ValueError, "at least one batch.*received 3 rows"):
            PackedBatches(rows, 4, drop_remainder=True)
        with self.assertRaisesRegex(ValueError, "`use_multiprocessing` must be False"):
            PackedBatches(iter(rows), 2, use_multiprocessing=True)
        with self.assertRaisesRegex(ValueError, "received an empty stream"):
            PackedBatches(iter([]), 2).as_tf_dataset()

    def test_rows_that_are_not_packed_rows_are_named_by_index(self):
        short = dict(rows_of(1)[0], labels=np.zeros(LENGTH - 1, "int32"))
        missing = {key: rows_of(1)[0][key] for key in ROW_KEYS[:-1]}
        for bad, received in (
            (short, r"a dict of shapes \{.*labels: \(7,\)"),
            (missing, "a dict of shapes"),
            ([1, 2], "a list"),
        ):
            message = rf"`rows` must hold rows of `pack_sequences`.*index 2 {received}"
            with self.assertRaisesRegex(ValueError, message):
                PackedBatches(rows_of(2) + [bad], 2)
            stream = PackedBatches(iter(rows_of(2) + [bad, bad]), 2)
            stream[0]
            with self.assertRaisesRegex(ValueError, message):
                stream[1]


class PackedBatchesTrainingTest(TestCase):
    def test_fit_on_a_list_of_rows_takes_one_step_per_batch(self):
        model = compile_model(tiny_language_model())
        history = model.fit(PackedBatches(rows_of(4), BATCH), epochs=1, verbose=0)
        self.assertEqual(int(model.optimizer.iterations), 2)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_fit_on_a_stream_continues_it_across_epochs_and_fits(self):
        read = []  # the rows the stream has given

        def counted(rows):
            for row in rows:
                read.append(row)
                yield row

        model = compile_model(tiny_language_model())
        stream = PackedBatches(counted(pack_sequences(endless_documents(), LENGTH)), 2)
        history = model.fit(
            stream, steps_per_epoch=2, epochs=2, verbose=0, shuffle=False
        )
        self.assertEqual(int(model.optimizer.iterations), 4)
        self.assertEqual(len(history.history["loss"]), 2)
        # Four batches trained, and at most the batches Keras reads ahead without
        # training them: its queue, or tf.data's prefetch buffer on TensorFlow,
        # whose fill depends on thread timing (a loaded machine read 6 for 2).
        ahead = stream.max_queue_size
        first_fit = len(read)
        self.assertBetween(first_fit, 4 * BATCH, (4 + ahead) * BATCH)
        model.fit(stream, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        self.assertBetween(len(read) - first_fit, 2 * BATCH, (2 + ahead) * BATCH)

    def test_evaluate_loss_is_the_numpy_masked_cross_entropy(self):
        batches = PackedBatches(rows_of(BATCH, seed=3), BATCH)
        x, y, mask = batches[0]
        model = tiny_language_model()
        token_losses = cross_entropy(model.predict(x, verbose=0), y)
        expected = {
            "sum_over_batch_size": (token_losses * mask).sum() / mask.size,
            "mean_with_sample_weight": (token_losses * mask).sum() / mask.sum(),
        }
        for reduction, want in expected.items():
            compile_model(model, reduction)
            loss = model.evaluate(batches, verbose=0)
            self.assertAllClose(loss, want, rtol=1e-5, msg=reduction)

    def test_labels_where_the_loss_mask_is_zero_change_nothing(self):
        rows = rows_of(BATCH, seed=4, max_length=5)  # several document ends
        changed = [
            dict(row, labels=np.where(row["loss_mask"], row["labels"], VOCAB - 1))
            for row in rows
        ]
        self.assertFalse(
            all(np.array_equal(a["labels"], b["labels"]) for a, b in zip(rows, changed))
        )
        model = compile_model(tiny_language_model())
        initial = model.get_weights()
        results = []
        for source in (rows, changed):
            model.set_weights(initial)
            loss = model.evaluate(PackedBatches(source, BATCH), verbose=0)
            model.fit(PackedBatches(source, BATCH), epochs=1, verbose=0)
            results.append((loss, model.get_weights()))
        self.assertAllClose(results[0][0], results[1][0], rtol=1e-6)
        for before, after in zip(results[0][1], results[1][1]):
            self.assertAllClose(before, after, rtol=1e-6, atol=1e-7)
        self.assertFalse(np.allclose(results[0][1][-1], initial[-1]))  # it trained

    def test_a_packed_document_attends_only_to_itself(self):
        # Segment ids keep attention inside a document and positions restart at
        # its start: its logits in a packed row equal its logits alone.
        inputs = {
            key: keras.Input((LENGTH,), dtype="int32", name=key) for key in INPUTS
        }
        x = keras.layers.Embedding(VOCAB, 8)(inputs["token_ids"])
        attention = MultiHeadAttention(1, 8, rotary_embedding=RotaryEmbedding())
        x = x + attention(
            x,
            x,
            use_causal_mask=True,
            segment_ids=inputs["segment_ids"],
            positions=inputs["positions"],
        )
        model = keras.Model(inputs, keras.layers.Dense(VOCAB)(x))
        first, second = [3, 4, 5], [6, 7, 8, 9]
        packed = next(pack_sequences([first, second], LENGTH))
        alone = next(pack_sequences([second], LENGTH))
        x, _, _ = PackedBatches([packed, alone], BATCH)[0]
        logits = model.predict(x, verbose=0)
        self.assertAllClose(logits[0, 3:7], logits[1, 0:4], atol=1e-5)


class TfDatasetTest(TestCase):
    def test_tf_dataset_of_a_list_has_known_cardinality_and_the_same_batches(self):
        batches = PackedBatches(rows_of(5), BATCH)
        dataset = batches.as_tf_dataset()
        self.assertEqual(int(dataset.cardinality()), 3)
        x_spec, y_spec, weight_spec = dataset.element_spec
        self.assertEqual(sorted(x_spec), sorted(INPUTS))
        self.assertEqual(tuple(y_spec.shape), (None, LENGTH))
        self.assertEqual(weight_spec.dtype.name, "float32")
        for (x, y, weight), (want_x, want_y, want_weight) in zip(dataset, batches):
            for key in INPUTS:
                np.testing.assert_array_equal(x[key].numpy(), want_x[key])
            np.testing.assert_array_equal(y.numpy(), want_y)
            np.testing.assert_array_equal(weight.numpy(), want_weight)
        static = PackedBatches(rows_of(5), BATCH, drop_remainder=True).as_tf_dataset()
        self.assertEqual(tuple(static.element_spec[1].shape), (BATCH, LENGTH))

    def test_fit_and_evaluate_from_tf_data_on_every_backend(self):
        rows = rows_of(2 * BATCH, seed=5)
        model = compile_model(tiny_language_model())
        expected = model.evaluate(PackedBatches(rows, BATCH), verbose=0)
        dataset = PackedBatches(rows, BATCH).as_tf_dataset()
        self.assertAllClose(model.evaluate(dataset, verbose=0), expected, rtol=1e-6)
        model.fit(dataset, epochs=1, verbose=0)
        self.assertEqual(int(model.optimizer.iterations), 2)

    def test_tf_dataset_of_a_stream_ends_the_epoch_when_the_stream_ends(self):
        rows = rows_of(3 * BATCH)
        dataset = PackedBatches(iter(rows), BATCH).as_tf_dataset()
        self.assertEqual(int(dataset.cardinality()), int(tf_unknown_cardinality()))
        labels = [y.numpy() for _, y, _ in dataset]
        np.testing.assert_array_equal(
            np.concatenate(labels), [row["labels"] for row in rows]
        )
        self.assertEqual(list(dataset), [])  # a stream does not rewind
        # Built first: the first `fit` after `compile` reads batches to build.
        model = compile_model(tiny_language_model())
        model.evaluate(PackedBatches(rows, BATCH), verbose=0)
        stream = PackedBatches(iter(rows_of(4 * BATCH)), BATCH)
        trained = TrainedBatches()
        model.fit(stream.as_tf_dataset(), epochs=1, verbose=0, callbacks=[trained])
        self.assertEqual(trained.count, 4)  # the whole stream, then the epoch ends


class TrainedBatches(keras.callbacks.Callback):
    """Counts training steps (TensorFlow's `optimizer.iterations` counts one more
    on a dataset of unknown cardinality)."""

    count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


def tf_unknown_cardinality():
    import tensorflow as tf

    return tf.data.UNKNOWN_CARDINALITY
