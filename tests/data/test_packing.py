"""`pack_sequences`: rows against a token-by-token reference written here."""

import itertools

import keras
import numpy as np

from keras_attn.data import pack_sequences
from keras_attn.data.packing import ROW_KEYS
from tests._keras_private import TestCase

LENGTH = 8


def reference_rows(documents, length, padding_id=0):
    """The rows, built one token at a time from the documents' flat stream."""
    stream = []  # (document index, position, token, next token or None)
    for number, document in enumerate(documents):
        document = list(document)
        for position, token in enumerate(document):
            following = document[position + 1] if position + 1 < len(document) else None
            stream.append((number, position, token, following))
    rows = []
    for start in range(0, len(stream), length):
        row = {key: [] for key in ROW_KEYS}
        segment, previous = 0, None
        for number, position, token, following in stream[start : start + length]:
            if number != previous:
                segment, previous = segment + 1, number
            row["token_ids"].append(token)
            row["segment_ids"].append(segment)
            row["positions"].append(position)
            row["labels"].append(padding_id if following is None else following)
            row["loss_mask"].append(0.0 if following is None else 1.0)
        padding = length - len(row["token_ids"])
        for key, value in zip(ROW_KEYS, (padding_id, 0, 0, padding_id, 0.0)):
            row[key] += [value] * padding
        rows.append(row)
    return rows


def random_documents(seed, count=40, length=LENGTH):
    """Random lengths including 0, 1, `length`, `length ± 1` and several times it."""
    rng = np.random.default_rng(seed)
    special = [0, 1, length, length - 1, length + 1, 3 * length, 4 * length + 3, 1]
    lengths = list(rng.integers(0, 2 * length, size=count)) + special
    rng.shuffle(lengths)
    return [rng.integers(1, 1000, size=n).astype("int32") for n in lengths]


class PackSequencesTest(TestCase):
    def assert_rows_equal(self, rows, expected):
        self.assertEqual(len(rows), len(expected))
        for got, want in zip(rows, expected):
            self.assertEqual(sorted(got), sorted(ROW_KEYS))
            for key in ROW_KEYS:
                np.testing.assert_array_equal(got[key], np.asarray(want[key]), key)

    def test_worked_example_of_the_module_docstring(self):
        documents = [[11, 12, 13], [21, 22, 23, 24, 25], [31]]
        rows = list(pack_sequences(documents, sequence_length=4))
        expected = [
            {
                "token_ids": [11, 12, 13, 21],
                "segment_ids": [1, 1, 1, 2],
                "positions": [0, 1, 2, 0],
                "labels": [12, 13, 0, 22],
                "loss_mask": [1, 1, 0, 1],
            },
            {
                "token_ids": [22, 23, 24, 25],
                "segment_ids": [1, 1, 1, 1],
                "positions": [1, 2, 3, 4],
                "labels": [23, 24, 25, 0],
                "loss_mask": [1, 1, 1, 0],
            },
            {
                "token_ids": [31, 0, 0, 0],
                "segment_ids": [1, 0, 0, 0],
                "positions": [0, 0, 0, 0],
                "labels": [0, 0, 0, 0],
                "loss_mask": [0, 0, 0, 0],
            },
        ]
        self.assert_rows_equal(rows, expected)

    def test_rows_have_the_documented_dtypes_and_shapes(self):
        dtypes = {key: "int32" for key in ROW_KEYS} | {"loss_mask": "float32"}
        for row in pack_sequences(random_documents(0), LENGTH):
            for key in ROW_KEYS:
                self.assertIsInstance(row[key], np.ndarray)
                self.assertEqual(row[key].shape, (LENGTH,))
                self.assertEqual(row[key].dtype, dtypes[key], key)

    def test_no_token_is_lost_or_duplicated(self):
        documents = random_documents(1)
        rows = list(pack_sequences(documents, LENGTH))
        tokens = np.concatenate(
            [row["token_ids"][row["segment_ids"] > 0] for row in rows]
        )
        np.testing.assert_array_equal(tokens, np.concatenate(documents))
        # Only the last row holds padding.
        padded = [bool(np.any(row["segment_ids"] == 0)) for row in rows]
        self.assertFalse(any(padded[:-1]))
        self.assertEqual(len(rows), -(-len(tokens) // LENGTH))

    def test_rows_match_the_token_by_token_reference(self):
        for seed, length in enumerate((LENGTH, LENGTH, 2, 3, 5)):
            documents = random_documents(seed, length=length)
            rows = list(pack_sequences(documents, length))
            self.assert_rows_equal(rows, reference_rows(documents, length))

    def test_padding_id_fills_the_last_row(self):
        documents = [[5, 6, 7], [8, 9]]
        rows = list(pack_sequences(documents, 4, padding_id=99))
        self.assert_rows_equal(rows, reference_rows(documents, 4, padding_id=99))
        np.testing.assert_array_equal(rows[1]["token_ids"], [9, 99, 99, 99])
        np.testing.assert_array_equal(rows[1]["labels"], [99, 99, 99, 99])

    def test_document_continuing_into_the_next_row_keeps_its_positions(self):
        document = np.arange(1, 2 * LENGTH + 4)  # 2L + 3 tokens, after one of 5
        rows = list(pack_sequences([np.arange(100, 105), document], LENGTH))
        first, middle, last = rows
        # The row's last token predicts the document's next token (in the next row).
        self.assertEqual(first["labels"][-1], middle["token_ids"][0])
        self.assertEqual(first["loss_mask"][-1], 1.0)
        np.testing.assert_array_equal(middle["segment_ids"], np.ones(LENGTH))
        np.testing.assert_array_equal(middle["positions"], np.arange(3, 3 + LENGTH))
        self.assertEqual(middle["loss_mask"][-1], 1.0)
        np.testing.assert_array_equal(
            last["positions"][:8], np.arange(3 + LENGTH, 2 * LENGTH + 3)
        )

    def test_document_of_exactly_one_row_ends_without_a_target(self):
        (row,) = pack_sequences([np.arange(1, LENGTH + 1)], LENGTH)
        np.testing.assert_array_equal(row["loss_mask"], [1] * (LENGTH - 1) + [0])
        np.testing.assert_array_equal(row["positions"], np.arange(LENGTH))

    def test_one_token_documents_add_tokens_but_no_targets(self):
        (row,) = pack_sequences([[7], [], [8], [9, 10]], 6)
        np.testing.assert_array_equal(row["token_ids"], [7, 8, 9, 10, 0, 0])
        np.testing.assert_array_equal(row["segment_ids"], [1, 2, 3, 3, 0, 0])
        np.testing.assert_array_equal(row["loss_mask"], [0, 0, 1, 0, 0, 0])

    def test_empty_documents_are_skipped(self):
        self.assertEqual(list(pack_sequences([[], np.zeros(0, "int64")], 4)), [])
        self.assertEqual(list(pack_sequences([], 4)), [])

    def test_streams_lazily_from_an_endless_generator(self):
        pulled = []  # the lengths of the documents read so far

        def endless_documents():
            rng = np.random.default_rng(0)
            for _ in itertools.count():
                document = rng.integers(1, 50, size=rng.integers(1, 3 * LENGTH))
                pulled.append(len(document))
                yield document

        packed = pack_sequences(endless_documents(), LENGTH)
        self.assertEqual(pulled, [])  # nothing is read before the first row
        rows = list(itertools.islice(packed, 5))
        self.assertEqual(len(rows), 5)
        # Exactly the documents needed for five full rows were read: the last
        # one read completes the fifth row.
        self.assertLess(sum(pulled[:-1]), 5 * LENGTH)
        self.assertGreaterEqual(sum(pulled), 5 * LENGTH)
        for row in rows:
            self.assertTrue(np.all(row["segment_ids"] > 0))

    def test_accepts_every_kind_of_source(self):
        documents = [[3, 4, 5], [6], [7, 8, 9, 10, 11]]
        expected = reference_rows(documents, 4)
        backend_tensors = [keras.ops.convert_to_tensor(d) for d in documents]
        sources = {
            "list of lists": documents,
            "tuple of arrays": tuple(np.asarray(d, "int64") for d in documents),
            "generator": (np.asarray(d, "uint16") for d in documents),
            "backend tensors": backend_tensors,
            "2-D array": np.asarray([[1, 2, 3], [4, 5, 6]]),
        }
        for name, source in sources.items():
            want = (
                reference_rows([[1, 2, 3], [4, 5, 6]], 4) if "2-D" in name else expected
            )
            self.assert_rows_equal(list(pack_sequences(source, 4)), want)

    def test_accepts_a_tf_data_pipeline_and_a_py_dataset(self):
        import tensorflow as tf

        documents = [[3, 4, 5], [6], [7, 8, 9, 10, 11]]
        pipeline = tf.data.Dataset.from_generator(
            lambda: iter(documents), output_signature=tf.TensorSpec((None,), tf.int64)
        )

        class Documents(keras.utils.PyDataset):
            num_batches = 3

            def __getitem__(self, index):
                return np.asarray(documents[index])

        for source in (pipeline, Documents()):
            rows = list(pack_sequences(source, 4))
            self.assert_rows_equal(rows, reference_rows(documents, 4))


class PackSequencesValidationTest(TestCase):
    def test_sequence_length_must_be_an_int_of_at_least_two(self):
        for value in (1, 0, -3, 2.0, True, "8", None):
            with self.assertRaisesRegex(
                ValueError,
                rf"pack_sequences: argument `sequence_length` must be an integer "
                rf">= 2 .*received {value!r}\.",
            ):
                pack_sequences([[1, 2]], value)
        self.assertEqual(len(list(pack_sequences([[1, 2]], np.int64(2)))), 1)

    def test_bad_arguments_fail_when_called_not_when_iterated(self):
        with self.assertRaisesRegex(ValueError, "`padding_id` must be an integer"):
            pack_sequences([[1, 2]], 4, padding_id=-1)
        with self.assertRaisesRegex(ValueError, "`padding_id` must be an int32"):
            pack_sequences([[1, 2]], 4, padding_id=2**31)
        with self.assertRaisesRegex(
            ValueError, r"argument `sequences` must be an iterable.*received 5"
        ):
            pack_sequences(5, 4)

    def test_document_that_is_not_1d_integers_is_named_by_its_index(self):
        bad_documents = {
            "float64 and shape \\(2,\\)": np.array([1.0, 2.0]),
            "int64 and shape \\(2, 2\\)": np.ones((2, 2), "int64"),
            "bool and shape \\(2,\\)": np.array([True, False]),
            "'text' of type str": "text",
            "7 of type int": 7,
            "\\[\\[1, 2\\], \\[3\\]\\] of type list": [[1, 2], [3]],
            "\\[1, -2\\] of type list": [1, -2],
            "\\[1, 4294967296\\] of type list": [1, 2**32],
        }
        for received, document in bad_documents.items():
            rows = pack_sequences([[1, 2, 3], [4], document], 4)
            with self.assertRaisesRegex(
                ValueError,
                r"pack_sequences: argument `sequences` must yield 1-D sequences of "
                rf"integer token ids in \[0, 2\*\*31\); received at index 2 "
                rf"(an array \(ndarray\) of dtype )?{received}\.",
            ):
                list(rows)
