"""Label-smoothed token cross-entropy that ignores padding."""

import numbers

import keras
from keras import ops

from keras_attn._checks import check_choice
from keras_attn._checks import check_rate
from keras_attn._checks import fail
from keras_attn._keras_private import set_keras_mask

_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none")


def check_ignore_class(owner, value):
    """`ignore_class` is an integer class id (negative allowed) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(owner, "ignore_class", value, "an integer class id or None")
    return int(value)


def sparse_labels(y_true, y_pred):
    """Integer labels of shape `y_pred.shape[:-1]`; accepts a trailing axis of 1."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.cast(y_true, "int32")


@keras.saving.register_keras_serializable(package="keras_attn")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Label-smoothed sparse cross-entropy averaged over non-padding tokens.

    For integer labels `y` and predictions over `V` classes, the per-token loss is
    the cross-entropy with the smoothed target
    `(1 - label_smoothing) * one_hot(y) + label_smoothing / V`, the convention of
    `keras.losses.CategoricalCrossentropy(label_smoothing=...)` (the smoothing
    mass is spread over all `V` classes, the padding class included). It equals
    `(1 - eps) * -log p_y + eps * mean_k(-log p_k)`, so no one-hot tensor is made.
    Positions whose label is `ignore_class` contribute neither loss nor gradient,
    whatever their predictions (NaN included).

    The reduction counts real tokens only. The loss returns the per-token losses
    with the non-padding positions attached as the Keras mask, exactly as
    `keras.losses.SparseCategoricalCrossentropy(ignore_class=...)` does, and the
    Keras `Loss` reduction turns that mask into weights: with
    `"sum_over_batch_size"` (or `"mean"`) the result is
    `sum(loss * sample_weight over real tokens) / number of real tokens`, so
    adding padding never changes the value. A Keras mask carried by `y_pred`
    (from `Embedding(mask_zero=True)`) is combined with the label mask. `"sum"`
    sums over real tokens, `"mean_with_sample_weight"` divides by the sum of the
    sample weights over real tokens, and `"none"` returns the per-token losses
    with zeros at ignored positions. A batch with no real token gives 0, not NaN.
    All of it is computed in float32, whatever the dtype of `y_pred`.

    Args:
        from_logits: bool. Whether `y_pred` holds logits (`True`, the default)
            or probabilities.
        label_smoothing: float in `[0, 1)`. The smoothing `eps`; the paper uses
            `0.1`. Defaults to `0.0`.
        ignore_class: int or `None`. The label of positions to ignore, usually
            the padding id. `None` ignores nothing. Defaults to `0`.
        reduction: str or `None`. One of `"sum_over_batch_size"` (the default),
            `"mean"`, `"sum"`, `"mean_with_sample_weight"`, `"none"` or `None`;
            see above.
        name: str. The name of the loss. Defaults to
            `"masked_sparse_categorical_crossentropy"`.

    Call arguments:
        y_true: integer tensor of shape `(batch, length)` or
            `(batch, length, 1)`: the target token ids.
        y_pred: float tensor of shape `(batch, length, vocabulary_size)`.
        sample_weight: optional tensor of shape `(batch,)` (one weight per
            sequence), `(batch, length)` or `(batch, length, 1)` (one per token).

    Returns:
        A float32 scalar, or the per-token losses of shape `(batch, length)`
        when `reduction` is `"none"` or `None`.

    Example:

    ```python
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    labels = np.array([[5, 2, 7, 0, 0]])  # 0 is padding
    logits = np.random.normal(size=(1, 5, 10)).astype("float32")
    loss(labels, logits)  # the mean over the 3 real tokens
    ```

    References:
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762), section 5.4.
     - [Szegedy et al., 2016](https://arxiv.org/abs/1512.00567), section 7.
    """

    def __init__(
        self,
        from_logits=True,
        label_smoothing=0.0,
        ignore_class=0,
        reduction="sum_over_batch_size",
        name="masked_sparse_categorical_crossentropy",
    ):
        owner = f"{type(self).__name__} '{name}'"
        if not isinstance(from_logits, bool):
            fail(owner, "from_logits", from_logits, "a bool")
        self.from_logits = from_logits
        self.label_smoothing = check_rate(owner, "label_smoothing", label_smoothing)
        self.ignore_class = check_ignore_class(owner, ignore_class)
        check_choice(owner, "reduction", reduction, _REDUCTIONS + (None,))
        # float32 whatever the dtype policy: `Loss.__call__` casts `y_pred` to it.
        super().__init__(name=name, reduction=reduction, dtype="float32")

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            sample_weight = self._token_weights(y_true, y_pred, sample_weight)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def _token_weights(self, y_true, y_pred, sample_weight):
        """A new `(B, T)` float32 tensor from weights per sequence or per token.

        Always a new tensor: on torch, Keras' reduction multiplies the mask into
        the sample weights in place, which would overwrite the caller's tensor.
        """
        tokens = ops.ones_like(sparse_labels(ops.convert_to_tensor(y_true), y_pred))
        tokens = ops.cast(tokens, "float32")  # (B, T)
        sample_weight = ops.convert_to_tensor(sample_weight, "float32")
        if len(sample_weight.shape) == 1:
            sample_weight = ops.expand_dims(sample_weight, axis=-1)  # (B, 1)
        elif len(sample_weight.shape) == 3:
            sample_weight = ops.squeeze(sample_weight, axis=-1)  # (B, T, 1)
        return sample_weight * tokens

    def call(self, y_true, y_pred):
        labels = sparse_labels(y_true, y_pred)  # (B, T)
        if self.ignore_class is None:
            valid = None
        else:
            valid = ops.not_equal(labels, self.ignore_class)  # (B, T)
            # Padding positions may hold anything: give them a harmless label
            # and finite predictions so neither the value nor the gradient sees them.
            labels = ops.where(valid, labels, 0)
            fill = 0.0 if self.from_logits else 1.0
            y_pred = ops.where(ops.expand_dims(valid, -1), y_pred, fill)
        log_probs = self._log_probabilities(y_pred)  # (B, T, V)
        picked = ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)
        losses = -ops.squeeze(picked, axis=-1)  # (B, T)
        if self.label_smoothing:
            eps = self.label_smoothing
            uniform = -ops.mean(log_probs, axis=-1)  # (B, T)
            losses = (1.0 - eps) * losses + eps * uniform
        if valid is not None:
            losses = ops.where(valid, losses, 0.0)
            set_keras_mask(losses, valid)  # read by `Loss.__call__`'s reduction
        return losses

    def _log_probabilities(self, y_pred):
        if self.from_logits:
            return ops.log_softmax(y_pred, axis=-1)
        # As Keras' categorical cross-entropy on probabilities: renormalise, clip.
        epsilon = keras.config.epsilon()
        probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
        return ops.log(ops.clip(probs, epsilon, 1.0 - epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "ignore_class": self.ignore_class,
            }
        )
        return config
