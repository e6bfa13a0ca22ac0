"""Packed training of a `CausalLM`: each document learns as if it were alone.

Three documents are packed into one row by `keras_attn.data.pack_sequences`.
The next-token loss of each inside the row (its tokens under the row's loss
mask) must equal its loss alone, and the gradient of the row's loss with
respect to every weight must equal the sum of the documents' gradients alone.
"""

import keras
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


def alone():
    """Inputs, labels and loss mask of each document in its own row.

    Rows are independent, and right padding (loss-masked) comes after every
    real token of a causal model, so row `i` computes document `i` alone.
    """
    width = max(len(d) for d in DOCUMENTS)
    tokens = np.zeros((len(DOCUMENTS), width), "int32")
    labels, mask = np.zeros_like(tokens), np.zeros(tokens.shape, "float32")
    for i, document in enumerate(DOCUMENTS):
        tokens[i, : len(document)] = document
        labels[i, : len(document) - 1] = document[1:]
        mask[i, : len(document) - 1] = 1.0
    return {"token_ids": tokens}, labels, mask


def loss_function(model, inputs, labels, mask):
    inputs = {k: ops.convert_to_tensor(v) for k, v in inputs.items()}
    labels, mask = ops.convert_to_tensor(labels), ops.convert_to_tensor(mask)

    def loss(*weights):
        return ops.sum(token_losses(model, list(weights), inputs, labels) * mask)

    return loss


def evaluate(fn, *weights):
    """`fn(*weights)` as NumPy, compiled on JAX (eagerly, each primitive of the
    model compiles on its own: tens of seconds)."""
    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(fn)
    return ops.convert_to_numpy(fn(*weights))


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
        inputs = {k: ops.convert_to_tensor(v) for k, v in inputs.items()}
        labels = ops.convert_to_tensor(labels)
        losses = evaluate(
            lambda *w: token_losses(model, list(w), inputs, labels), *weights
        )[0]
        tokens_alone, labels_alone, mask_alone = alone()
        inputs_alone = {"token_ids": ops.convert_to_tensor(tokens_alone["token_ids"])}
        labels_alone = ops.convert_to_tensor(labels_alone)
        losses_alone = evaluate(
            lambda *w: token_losses(model, list(w), inputs_alone, labels_alone),
            *weights,
        )
        for segment in range(1, len(DOCUMENTS) + 1):
            in_row = np.sum((losses * row["loss_mask"])[row["segment_ids"] == segment])
            by_itself = np.sum(losses_alone[segment - 1] * mask_alone[segment - 1])
            np.testing.assert_allclose(in_row, by_itself, rtol=1e-5, atol=1e-5)

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
        loss = loss_function(model, *packed_inputs(row))
        packed = gradients(loss, *weights, compiled=True)
        # The gradient of the sum over independent rows: the documents' sum.
        expected = gradients(loss_function(model, *alone()), *weights, compiled=True)
        self.assertGreater(max(np.abs(g).max() for g in packed), 1e-3)
        for variable, got, want in zip(model.trainable_variables, packed, expected):
            np.testing.assert_allclose(
                got, want, rtol=1e-5, atol=1e-5, err_msg=variable.path
            )
