import inspect

import keras
import numpy as np
import pytest
from absl.testing import parameterized

from keras_attn.training import MaskedAccuracy
from keras_attn.training import SequenceExactMatch
from tests._keras_private import TestCase
from tests._keras_private import set_keras_mask

VOCAB = 5


def logits_for(predicted, seed=0):
    """Random logits whose arg-max is `predicted` (B, T)."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-1.0, 0.0, size=(*predicted.shape, VOCAB))
    np.put_along_axis(logits, predicted[..., None], 1.0, axis=-1)
    return logits.astype("float32")


def numpy_accuracy(labels, predicted, ignore_class=0):
    valid = (
        np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    )
    return (predicted == labels)[valid].mean()


def numpy_exact_match(labels, predicted, ignore_class=0):
    valid = labels != ignore_class
    matched = np.all((predicted == labels) | ~valid, axis=-1)
    real = valid.any(-1)
    return matched[real].mean()


def with_keras_mask(logits, mask):
    """`logits` as a tensor carrying `mask` the way `Embedding(mask_zero=True)` does."""
    logits = keras.ops.convert_to_tensor(logits)
    set_keras_mask(logits, keras.ops.convert_to_tensor(mask))
    return logits


def value(metric):
    return float(keras.ops.convert_to_numpy(metric.result()))


# 0 is padding. Row 0: 2 of 3 right; row 1: 2 of 2 right (padding wrong); row 2: 1/1.
LABELS = np.array([[1, 2, 3, 0], [4, 4, 0, 0], [2, 0, 0, 0]], "int32")
PREDICTED = np.array([[1, 2, 4, 3], [4, 4, 1, 1], [2, 3, 3, 3]], "int32")


@pytest.mark.parametrize(
    "metric_class, numpy_metric, expected",
    [
        (MaskedAccuracy, numpy_accuracy, 5 / 6),
        (SequenceExactMatch, numpy_exact_match, 2 / 3),
    ],
)
def test_matches_numpy_and_ignores_padding(metric_class, numpy_metric, expected):
    metric = metric_class()
    metric.update_state(LABELS, logits_for(PREDICTED))
    np.testing.assert_allclose(value(metric), numpy_metric(LABELS, PREDICTED), 1e-6)
    np.testing.assert_allclose(value(metric), expected, 1e-6)


@pytest.mark.parametrize(
    "metric_class, arguments",
    [
        (MaskedAccuracy, {"ignore_class": -100, "name": "acc"}),
        (SequenceExactMatch, {"ignore_class": None}),
    ],
)
def test_serialization_round_trip(metric_class, arguments):
    metric = metric_class(**arguments)
    serialized = keras.saving.serialize_keras_object(metric)
    assert serialized["registered_name"] == f"keras_attn>{metric_class.__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, metric_class)
    assert restored.get_config() == metric.get_config()
    assert set(metric.get_config()) == set(inspect.signature(metric_class).parameters)


@pytest.mark.parametrize(
    "metric_class, after_reset",
    [(MaskedAccuracy, 2 / 3), (SequenceExactMatch, 0.0)],
)
def test_reset_state_forgets_earlier_batches(metric_class, after_reset):
    metric = metric_class()
    metric.update_state(LABELS, logits_for(PREDICTED))
    metric.reset_state()
    np.testing.assert_allclose(value(metric), 0.0)
    metric.update_state(LABELS[:1], logits_for(PREDICTED[:1]))  # row 0 only
    np.testing.assert_allclose(value(metric), after_reset, 1e-6)


class MaskedAccuracyTest(TestCase):
    def test_accumulates_over_batches_by_token_count(self):
        metric = MaskedAccuracy()
        metric.update_state(LABELS[:1], logits_for(PREDICTED[:1]))  # 2 / 3
        metric.update_state(LABELS[1:], logits_for(PREDICTED[1:]))  # 3 / 3
        self.assertAllClose(value(metric), 5 / 6)

    def test_ignore_class_none_counts_every_position(self):
        metric = MaskedAccuracy(ignore_class=None)
        metric.update_state(LABELS, logits_for(PREDICTED))
        self.assertAllClose(value(metric), numpy_accuracy(LABELS, PREDICTED, None))

    def test_sequence_weights(self):
        metric = MaskedAccuracy()
        weights = np.array([2.0, 1.0, 0.0], "float32")
        metric.update_state(LABELS, logits_for(PREDICTED), sample_weight=weights)
        self.assertAllClose(value(metric), (2 * 2 + 2) / (2 * 3 + 2))

    def test_labels_with_trailing_axis(self):
        metric = MaskedAccuracy()
        metric.update_state(LABELS[..., None], logits_for(PREDICTED))
        self.assertAllClose(value(metric), 5 / 6)

    @parameterized.named_parameters(("bool", "bool"), ("int32", "int32"))
    def test_keras_mask_of_y_pred_leaves_positions_out(self, dtype):
        metric = MaskedAccuracy(ignore_class=None)
        mask = (LABELS != 0).astype(dtype)
        metric.update_state(LABELS, with_keras_mask(logits_for(PREDICTED), mask))
        self.assertAllClose(value(metric), 5 / 6)

    def test_float_keras_mask_is_rejected(self):
        logits = with_keras_mask(logits_for(PREDICTED), (LABELS != 0).astype("float32"))
        with self.assertRaisesRegex(
            ValueError,
            r"^MaskedAccuracy 'masked_accuracy': argument `y_pred \(its Keras mask\)` "
            r"must be a boolean \(or 0/1 integer\) mask.*dtype float32",
        ):
            MaskedAccuracy().update_state(LABELS, logits)

    def test_all_padding_gives_zero(self):
        metric = MaskedAccuracy()
        padding = np.zeros((3, 4), "int32")
        metric.update_state(padding, logits_for(padding))
        self.assertAllClose(value(metric), 0.0)


class SequenceExactMatchTest(TestCase):
    def test_sequences_without_real_tokens_are_left_out(self):
        labels = np.concatenate([LABELS, np.zeros((2, 4), "int32")])
        predicted = np.concatenate([PREDICTED, np.ones((2, 4), "int32")])
        metric = SequenceExactMatch()
        metric.update_state(labels, logits_for(predicted))
        self.assertAllClose(value(metric), 2 / 3)

    def test_sequence_weights(self):
        metric = SequenceExactMatch()
        weights = np.array([3.0, 1.0, 0.0], "float32")
        metric.update_state(LABELS, logits_for(PREDICTED), sample_weight=weights)
        self.assertAllClose(value(metric), 1 / 4)


@pytest.mark.parametrize("metric_class", [MaskedAccuracy, SequenceExactMatch])
@pytest.mark.parametrize("ignore_class", ["pad", 1.5, True])
def test_bad_ignore_class_raises_value_error(metric_class, ignore_class):
    with pytest.raises(ValueError, match=f"{metric_class.__name__} .*`ignore_class`"):
        metric_class(ignore_class=ignore_class)


def test_exact_match_rejects_token_weights():
    with pytest.raises(ValueError, match="SequenceExactMatch .*`sample_weight`"):
        SequenceExactMatch().update_state(
            LABELS, logits_for(PREDICTED), sample_weight=np.ones((3, 4), "float32")
        )
