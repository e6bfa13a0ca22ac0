"""Packed training of a `CausalLM`: each document learns as if it were alone.

Three documents are packed into one row by `keras_attn.data.pack_sequences`.
The next-token loss of each inside the row (its tokens under the row's loss
mask) must equal its loss alone, and the gradient of the row's loss with
respect to every weight must equal the sum of the documents' gradients alone.
"""

import numpy as np
from absl.testing import parameterized
from keras import ops

from keras_attn.data import pack_sequences
from tests import _tiny_models
from tests._keras_private import TestCase
from tests.gradients import gradients

VOCABULARY, ROW = 19, 16
DOCUMENTS = ([3, 8, 5, 11, 4], [7, 7, 2, 9, 13, 6, 10, 3, 12], [15, 4])  # 5 + 9 + 2


def packed_model(**overrides):
    model = _tiny_models.tiny_causal_lm(
        vocabulary_size=VOCABULARY,
        max_sequence_length=ROW,
        packed_inputs=True,
        padding_id=None,
        **overrides,
    )
    return _tiny_models.randomize(model, scale=0.5)


def token_losses(model, weights, inputs, labels):
    """`(B, T)` next-token cross-entropy with the trainable `weights` given."""
    non_trainable = [v.value for v in model.non_trainable_variables]
    logits, _ = model.stateless_call(weights, non_trainable, inputs)
    log_probabilities = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    picked = ops.take_along_axis(log_probabilities, labels[..., None], axis=-1)
    return -picked[..., 0]


def the_row():
    (row,) = list(pack_sequences(DOCUMENTS, ROW))
    return row


def alone(document):
    """Inputs, labels and loss mask of one document as its own row."""
    tokens = np.asarray(document, "int32")[None]
    labels = np.concatenate([tokens[:, 1:], tokens[:, :1]], axis=1)  # last: unused
    mask = np.ones(tokens.shape, "float32")
    mask[:, -1] = 0.0
    return {"token_ids": tokens}, labels, mask


def loss_function(model, inputs, labels, mask):
    inputs = {k: ops.convert_to_tensor(v) for k, v in inputs.items()}
    labels, mask = ops.convert_to_tensor(labels), ops.convert_to_tensor(mask)

    def loss(*weights):
        return ops.sum(token_losses(model, list(weights), inputs, labels) * mask)

    return loss


def packed_inputs(row):
    names = ("token_ids", "segment_ids", "positions")
    inputs = {name: row[name][None] for name in names}
    return inputs, row["labels"][None], row["loss_mask"][None]


class PackedTrainingTest(TestCase, parameterized.TestCase):
    def test_the_documents_fill_one_row(self):
        row = the_row()
        np.testing.assert_array_equal(row["segment_ids"], [1] * 5 + [2] * 9 + [3] * 2)
        np.testing.assert_array_equal(row["loss_mask"].sum(), 4 + 8 + 1)

    @parameterized.named_parameters(
        ("learned", {}),
        (
            "rotary_window",
            {"position_embedding": "rotary", "sliding_window": (3, None)},
        ),
    )
    def test_each_document_loses_what_it_loses_alone(self, options):
        model, row = packed_model(**options), the_row()
        weights = [v.value for v in model.trainable_variables]
        inputs, labels, mask = packed_inputs(row)
        losses = ops.convert_to_numpy(
            token_losses(
                model,
                weights,
                {k: ops.convert_to_tensor(v) for k, v in inputs.items()},
                ops.convert_to_tensor(labels),
            )
        )[0]
        for segment, document in enumerate(DOCUMENTS, start=1):
            in_row = np.sum((losses * row["loss_mask"])[row["segment_ids"] == segment])
            inputs_alone, labels_alone, mask_alone = alone(document)
            by_itself = loss_function(model, inputs_alone, labels_alone, mask_alone)
            expected = ops.convert_to_numpy(by_itself(*weights))
            np.testing.assert_allclose(in_row, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(
        ("learned", {}),
        (
            "rotary_window",
            {"position_embedding": "rotary", "sliding_window": (3, None)},
        ),
    )
    def test_row_gradients_are_the_sum_of_the_documents_gradients(self, options):
        model, row = packed_model(**options), the_row()
        weights = [ops.convert_to_numpy(v.value) for v in model.trainable_variables]
        packed = gradients(loss_function(model, *packed_inputs(row)), *weights)
        expected = [np.zeros_like(w) for w in weights]
        for document in DOCUMENTS:
            grads = gradients(loss_function(model, *alone(document)), *weights)
            expected = [e + g for e, g in zip(expected, grads)]
        self.assertGreater(max(np.abs(g).max() for g in packed), 1e-3)
        for variable, got, want in zip(model.trainable_variables, packed, expected):
            np.testing.assert_allclose(
                got, want, rtol=1e-5, atol=1e-5, err_msg=variable.path
            )
