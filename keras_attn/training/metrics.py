"""Token accuracy and sequence exact match over non-padding positions."""

import keras
from keras import ops

from keras_attn._checks import check_rank
from keras_attn._checks import owner_name
from keras_attn._keras_private import get_keras_mask
from keras_attn.ops.masks import as_boolean_mask
from keras_attn.training.losses import check_ignore_class
from keras_attn.training.losses import sparse_labels


class _RatioMetric(keras.metrics.Metric):
    """A `total / count` metric; subclasses say what one update adds to each."""

    def __init__(self, ignore_class=0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = check_ignore_class(owner_name(self), ignore_class)
        self.total = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        hits, counts = self._hits_and_counts(y_true, y_pred)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            # (B,) against (B, T) counts: one weight per sequence.
            while len(sample_weight.shape) < len(counts.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            hits, counts = hits * sample_weight, counts * sample_weight
        self.total.assign_add(ops.sum(hits))
        self.count.assign_add(ops.sum(counts))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.total, self.count), self.dtype)

    def _token_hits(self, y_true, y_pred):
        """`(correct, valid)` float32 tensors of shape `(B, T)`."""
        y_pred = ops.convert_to_tensor(y_pred)
        labels = sparse_labels(ops.convert_to_tensor(y_true), y_pred)  # (B, T)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")  # (B, T)
        valid = ops.ones_like(labels, dtype="bool")
        if self.ignore_class is not None:
            valid = ops.not_equal(labels, self.ignore_class)
        mask = get_keras_mask(y_pred)  # from `Embedding(mask_zero=True)`, if any
        if mask is not None:
            mask = as_boolean_mask(mask, owner_name(self), "y_pred (its Keras mask)")
            valid = ops.logical_and(valid, mask)
        correct = ops.logical_and(ops.equal(predicted, labels), valid)
        return ops.cast(correct, "float32"), ops.cast(valid, "float32")

    def get_config(self):
        config = super().get_config()
        config["ignore_class"] = self.ignore_class
        return config


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedAccuracy(_RatioMetric):
    """Token accuracy over the positions whose label is not padding.

    The fraction of real tokens (label not equal to `ignore_class`, and inside
    the Keras mask of `y_pred` if it carries one) whose arg-max prediction equals
    the label, accumulated over batches as `total / count`. Padding never counts
    towards either. Before any real token it is 0.

    Args:
        ignore_class: int or `None`. The label of positions to skip, usually the
            padding id. `None` counts every position. Defaults to `0`.
        name: str. The name of the metric. Defaults to `"masked_accuracy"`.
        dtype: the dtype of the result. Defaults to `keras.config.floatx()`.

    Call arguments:
        y_true: integer tensor of shape `(batch, length)` or `(batch, length, 1)`.
        y_pred: float tensor of shape `(batch, length, vocabulary_size)`,
            logits or probabilities.
        sample_weight: optional tensor of shape `(batch,)` or `(batch, length)`.

    Returns:
        `result()`: a scalar, the weighted share of correct real tokens.

    Example:

    ```python
    metric = MaskedAccuracy()
    labels = np.array([[3, 1, 0]])  # 0 is padding
    logits = np.eye(4)[[[3, 2, 1]]]  # right, wrong, padding
    metric.update_state(labels, logits)
    metric.result()  # 0.5
    ```

    References:
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, ignore_class=0, name="masked_accuracy", dtype=None):
        super().__init__(ignore_class=ignore_class, name=name, dtype=dtype)

    def _hits_and_counts(self, y_true, y_pred):
        return self._token_hits(y_true, y_pred)  # (B, T) each


@keras.saving.register_keras_serializable(package="keras_attn")
class SequenceExactMatch(_RatioMetric):
    """The share of sequences whose real tokens are all predicted correctly.

    A sequence counts as a match when the arg-max prediction equals the label at
    every position whose label is not `ignore_class` (and that is inside the
    Keras mask of `y_pred`, if any); padding may hold any prediction. Sequences
    with no real token at all (padding rows of a batch) are left out of both the
    numerator and the denominator.

    Args:
        ignore_class: int or `None`. The label of positions to skip, usually the
            padding id. `None` checks every position. Defaults to `0`.
        name: str. The name of the metric. Defaults to `"sequence_exact_match"`.
        dtype: the dtype of the result. Defaults to `keras.config.floatx()`.

    Call arguments:
        y_true: integer tensor of shape `(batch, length)` or `(batch, length, 1)`.
        y_pred: float tensor of shape `(batch, length, vocabulary_size)`.
        sample_weight: optional tensor of shape `(batch,)`, one weight per
            sequence.

    Returns:
        `result()`: a scalar, the weighted share of exactly matched sequences.

    Example:

    ```python
    metric = SequenceExactMatch()
    labels = np.array([[3, 1, 0], [2, 2, 2]])
    logits = np.eye(4)[[[3, 1, 2], [2, 0, 2]]]
    metric.update_state(labels, logits)
    metric.result()  # 0.5: the first matches (padding aside), the second not
    ```

    References:
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, ignore_class=0, name="sequence_exact_match", dtype=None):
        super().__init__(ignore_class=ignore_class, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight)
            check_rank(owner_name(self), "sample_weight", sample_weight.shape, 1)
        super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def _hits_and_counts(self, y_true, y_pred):
        correct, valid = self._token_hits(y_true, y_pred)  # (B, T) each
        has_tokens = ops.max(valid, axis=-1)  # (B,)
        wrong = ops.sum(valid - correct, axis=-1)  # (B,): real tokens mispredicted
        matched = ops.cast(ops.equal(wrong, 0.0), "float32") * has_tokens
        return matched, has_tokens  # (B,) each
