import inspect

import keras
import numpy as np
import pytest

from keras_attn.training import MaskedSparseCategoricalCrossentropy
from tests._keras_private import TestCase
from tests.gradients import gradients

VOCAB = 7
# Two sequences, 0 is padding; 5 real tokens in all.
LABELS = np.array([[3, 1, 6, 0], [2, 4, 0, 0]], "int32")


def random_logits(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_loss(labels, logits, smoothing=0.0, ignore_class=0):
    """Mean over non-ignored tokens of the cross-entropy with a smoothed target."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    vocab = logits.shape[-1]
    target = (1 - smoothing) * np.eye(vocab)[labels] + smoothing / vocab
    per_token = -(target * log_probs).sum(-1)  # (B, T)
    valid = (
        np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    )
    return per_token[valid].mean()


def to_numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


class MaskedSparseCategoricalCrossentropyTest(TestCase):
    def test_matches_numpy_without_smoothing(self):
        logits = random_logits((2, 4, VOCAB))
        loss = MaskedSparseCategoricalCrossentropy()(LABELS, logits)
        self.assertAllClose(loss, numpy_loss(LABELS, logits), rtol=1e-5)

    def test_matches_numpy_with_smoothing(self):
        logits = random_logits((2, 4, VOCAB))
        loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)(LABELS, logits)
        self.assertAllClose(loss, numpy_loss(LABELS, logits, 0.1), rtol=1e-5)

    def test_ignore_class_none_averages_over_every_position(self):
        logits = random_logits((2, 4, VOCAB))
        loss_fn = MaskedSparseCategoricalCrossentropy(
            label_smoothing=0.2, ignore_class=None
        )
        expected = numpy_loss(LABELS, logits, 0.2, ignore_class=None)
        self.assertAllClose(loss_fn(LABELS, logits), expected, rtol=1e-5)

    def test_negative_ignore_class(self):
        labels = np.where(LABELS == 0, -100, LABELS)
        logits = random_logits((2, 4, VOCAB))
        loss_fn = MaskedSparseCategoricalCrossentropy(ignore_class=-100)
        self.assertAllClose(
            loss_fn(labels, logits), numpy_loss(LABELS, logits), rtol=1e-5
        )

    def test_extra_padding_leaves_the_loss_unchanged(self):
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        logits = random_logits((2, 4, VOCAB))
        # Three more padding steps and one all-padding sequence, random logits.
        padded_labels = np.zeros((3, 7), "int32")
        padded_labels[:2, :4] = LABELS
        padded_logits = random_logits((3, 7, VOCAB), seed=1)
        padded_logits[:2, :4] = logits
        self.assertAllClose(
            loss_fn(padded_labels, padded_logits), loss_fn(LABELS, logits), rtol=1e-6
        )

    def test_padding_predictions_do_not_matter_even_when_nan(self):
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        logits = random_logits((2, 4, VOCAB))
        garbage = np.where((LABELS == 0)[..., None], np.nan, logits).astype("float32")
        self.assertAllClose(loss_fn(LABELS, garbage), loss_fn(LABELS, logits))

    def test_gradient_is_finite_and_zero_at_padding(self):
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        logits = random_logits((2, 4, VOCAB))
        logits[LABELS == 0] = np.inf
        labels = keras.ops.convert_to_tensor(LABELS)
        (grad,) = gradients(lambda x: loss_fn(labels, x), logits)
        self.assertTrue(np.all(np.isfinite(grad)))
        self.assertAllClose(grad[LABELS == 0], np.zeros((3, VOCAB)))
        self.assertTrue(np.all(np.abs(grad[LABELS != 0]).sum(-1) > 0))

    def test_gradient_matches_softmax_minus_smoothed_target(self):
        eps, logits = 0.1, random_logits((2, 4, VOCAB))
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=eps)
        labels = keras.ops.convert_to_tensor(LABELS)
        (grad,) = gradients(lambda x: loss_fn(labels, x), logits)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        target = (1 - eps) * np.eye(VOCAB)[LABELS] + eps / VOCAB
        expected = (probs - target) * (LABELS != 0)[..., None] / 5  # 5 real tokens
        self.assertAllClose(grad, expected, atol=1e-6)

    def test_all_padding_gives_zero_not_nan(self):
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        labels, logits = np.zeros((2, 4), "int32"), random_logits((2, 4, VOCAB))
        self.assertAllClose(loss_fn(labels, logits), 0.0)
        (grad,) = gradients(lambda x: loss_fn(labels, x), logits)
        self.assertAllClose(grad, np.zeros_like(grad))

    def test_matches_keras_sparse_crossentropy_without_smoothing(self):
        logits = random_logits((2, 4, VOCAB))
        keras_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        )
        ours = MaskedSparseCategoricalCrossentropy()
        self.assertAllClose(ours(LABELS, logits), keras_loss(LABELS, logits), rtol=1e-5)

    def test_smoothing_matches_keras_categorical_crossentropy(self):
        labels = np.array([[3, 1, 6, 1], [2, 4, 5, 5]], "int32")  # no padding
        logits = random_logits((2, 4, VOCAB))
        keras_loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=0.1
        )
        ours = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        one_hot = np.eye(VOCAB, dtype="float32")[labels]
        self.assertAllClose(
            ours(labels, logits), keras_loss(one_hot, logits), rtol=1e-5
        )

    def test_probabilities_match_logits(self):
        logits = random_logits((2, 4, VOCAB))
        probs = to_numpy(keras.ops.softmax(logits, axis=-1))
        on_logits = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        on_probs = MaskedSparseCategoricalCrossentropy(
            from_logits=False, label_smoothing=0.1
        )
        self.assertAllClose(
            on_probs(LABELS, probs), on_logits(LABELS, logits), rtol=1e-5
        )

    def test_labels_with_trailing_axis(self):
        logits = random_logits((2, 4, VOCAB))
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        self.assertAllClose(loss_fn(LABELS[..., None], logits), loss_fn(LABELS, logits))

    def test_bfloat16_logits_give_float32_loss(self):
        logits = random_logits((2, 4, VOCAB))
        low = keras.ops.cast(logits, "bfloat16")
        loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)(LABELS, low)
        self.assertEqual(keras.backend.standardize_dtype(loss.dtype), "float32")
        rounded = to_numpy(low)
        # A float32 comparison: the reference sees the same bfloat16-rounded
        # logits. 1e-5 is 84 float32 ulps, above the ~30 roundings of a log-softmax
        # over 7 classes and a mean over 5 tokens (no cancellation: every term > 0).
        self.assertAllClose(loss, numpy_loss(LABELS, rounded, 0.1), rtol=1e-5)

    def test_reduction_sum_and_none(self):
        logits = random_logits((2, 4, VOCAB))
        per_token = MaskedSparseCategoricalCrossentropy(reduction="none")(
            LABELS, logits
        )
        self.assertEqual(tuple(per_token.shape), (2, 4))
        per_token = to_numpy(per_token)
        self.assertAllClose(per_token[LABELS == 0], np.zeros(3))
        total = MaskedSparseCategoricalCrossentropy(reduction="sum")(LABELS, logits)
        self.assertAllClose(total, per_token.sum(), rtol=1e-5)
        self.assertAllClose(total / 5, numpy_loss(LABELS, logits), rtol=1e-5)

    def test_sequence_weights_broadcast_over_tokens(self):
        logits = random_logits((2, 4, VOCAB))
        loss_fn = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
        per_sequence = np.array([2.0, 0.5], "float32")
        per_token = np.repeat(per_sequence[:, None], 4, axis=1)
        by_sequence = loss_fn(LABELS, logits, sample_weight=per_sequence)
        self.assertAllClose(by_sequence, loss_fn(LABELS, logits, per_token))
        tokens = to_numpy(
            MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, reduction="none")(
                LABELS, logits
            )
        )
        expected = (tokens * per_token).sum() / 5  # still over the 5 real tokens
        self.assertAllClose(by_sequence, expected, rtol=1e-5)

    def test_caller_sample_weight_is_not_modified(self):
        logits = random_logits((2, 4, VOCAB))
        weights = keras.ops.convert_to_tensor(np.full((2, 4), 2.0, "float32"))
        MaskedSparseCategoricalCrossentropy()(LABELS, logits, sample_weight=weights)
        self.assertAllClose(weights, np.full((2, 4), 2.0))

    def test_serialization_round_trip(self):
        loss_fn = MaskedSparseCategoricalCrossentropy(
            from_logits=False, label_smoothing=0.1, ignore_class=-1, reduction="sum"
        )
        serialized = keras.saving.serialize_keras_object(loss_fn)
        self.assertEqual(
            serialized["registered_name"],
            "keras_attn>MaskedSparseCategoricalCrossentropy",
        )
        restored = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(restored, MaskedSparseCategoricalCrossentropy)
        self.assertEqual(restored.get_config(), loss_fn.get_config())

    def test_config_keys_are_constructor_arguments(self):
        config = MaskedSparseCategoricalCrossentropy().get_config()
        arguments = inspect.signature(MaskedSparseCategoricalCrossentropy).parameters
        self.assertEqual(set(config), set(arguments))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"label_smoothing": True}, "label_smoothing"),
        ({"ignore_class": "pad"}, "ignore_class"),
        ({"ignore_class": 0.0}, "ignore_class"),
        ({"from_logits": "yes"}, "from_logits"),
        ({"reduction": "average"}, "reduction"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, argument):
    pattern = f"MaskedSparseCategoricalCrossentropy '.*': argument `{argument}`"
    with pytest.raises(ValueError, match=pattern):
        MaskedSparseCategoricalCrossentropy(**kwargs)
