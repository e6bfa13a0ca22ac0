"""What the Transformer encoder and decoder share: arguments, sublayers, residuals.

Each sub-block is `x + dropout(f(norm(x)))` (pre-LN, `normalize_first=True`) or
`norm(x + dropout(f(x)))` (post-LN, the original paper); a block writes each one
out, `f` between `_pre_norm` and `_residual_add`. Sublayer names and their build
order follow keras-hub, so weights copy across with `set_weights`.

The self-attention's structure (`sliding_window`, `logit_soft_cap`,
`use_attention_sinks`, `rotary_embedding`) is configured here and its per-call
inputs (`segment_ids`, `attention_bias`, `positions`) pass to it unchanged; the
decoder's cross-attention takes none of them.

Masks are normalised once, here, on their way down: a block turns its padding and
attention masks into one boolean `(B|1, H|1, T|1, S)` mask (`_attention_mask`), so
an error names the block and its argument, and the attention layer and the core
receive a mask that they pass on as it is.
"""

import keras
from keras import ops

from keras_attn import _checks
from keras_attn._keras_private import get_keras_mask
from keras_attn.layers import _attention_inputs
from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.ops.masks import as_attention_mask
from keras_attn.ops.masks import as_boolean_mask


class TransformerBlock(keras.layers.Layer):
    """Base of `TransformerEncoder` and `TransformerDecoder` (not used directly)."""

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        dropout=0.0,
        attention_dropout=None,
        activation="relu",
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        num_key_value_heads=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        sliding_window=None,
        logit_soft_cap=None,
        use_attention_sinks=False,
        rotary_embedding=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = _checks.owner_name(self)
        self.intermediate_dim = _checks.check_positive_int(
            owner, "intermediate_dim", intermediate_dim
        )
        self.num_heads, self.num_key_value_heads = _checks.check_heads(
            owner, num_heads, num_key_value_heads
        )
        self.dropout = _checks.check_rate(owner, "dropout", dropout)
        self.attention_dropout = (
            self.dropout
            if attention_dropout is None
            else _checks.check_rate(owner, "attention_dropout", attention_dropout)
        )
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = _checks.check_positive_float(
            owner, "layer_norm_epsilon", layer_norm_epsilon
        )
        self.normalize_first = bool(normalize_first)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        if isinstance(rotary_embedding, dict):  # as `get_config` wrote it
            rotary_embedding = keras.saving.deserialize_keras_object(rotary_embedding)
        self.rotary_embedding = rotary_embedding
        (
            self.sliding_window,
            self.logit_soft_cap,
            self.use_attention_sinks,
        ) = _attention_inputs.check_structure(
            owner, sliding_window, logit_soft_cap, use_attention_sinks
        )
        self.supports_masking = True

    def _check_hidden_dim(self, sequence_shape, argument):
        owner = _checks.owner_name(self)
        _checks.check_rank(owner, argument, sequence_shape, 3)
        hidden_dim = sequence_shape[-1]
        if hidden_dim is None:
            _checks.fail(owner, argument, sequence_shape, "a known feature size")
        if hidden_dim % self.num_heads != 0:
            raise ValueError(
                f"{owner}: argument `num_heads` must divide the hidden size "
                f"{hidden_dim} of `{argument}`; received {self.num_heads}."
            )
        return hidden_dim

    def _build_self_attention(self, sequence_shape):
        """`self_attention`, with the block's window, soft cap, sinks and rotary."""
        return self._build_attention(
            "self_attention",
            sequence_shape,
            sequence_shape,
            sliding_window=self.sliding_window,
            logit_soft_cap=self.logit_soft_cap,
            use_attention_sinks=self.use_attention_sinks,
            # A copy: the attention builds its own, the block's config stays.
            rotary_embedding=_copy(self.rotary_embedding),
        )

    def _build_attention(self, name, query_shape, value_shape, **structure):
        hidden_dim = query_shape[-1]
        attention = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            num_key_value_heads=self.num_key_value_heads,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer.clone(),
            bias_initializer=self.bias_initializer.clone(),
            dtype=self.dtype_policy,
            name=name,
            **structure,
        )
        attention.build(query_shape, value_shape)
        return attention

    def _build_norm(self, name, shape):
        norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )
        norm.build(shape)
        return norm

    def _build_feedforward(self, shape):
        """Norm and the two dense layers of the position-wise feed-forward block."""
        hidden_dim = shape[-1]
        self.feedforward_layer_norm = self._build_norm("feedforward_layer_norm", shape)
        self.feedforward_intermediate_dense = self._dense(
            self.intermediate_dim, "feedforward_intermediate_dense", self.activation
        )
        self.feedforward_intermediate_dense.build(shape)
        self.feedforward_output_dense = self._dense(
            hidden_dim, "feedforward_output_dense"
        )
        self.feedforward_output_dense.build(
            tuple(shape[:-1]) + (self.intermediate_dim,)
        )
        self.residual_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="residual_dropout"
        )

    def _dense(self, units, name, activation=None):
        return keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=self.kernel_initializer.clone(),
            bias_initializer=self.bias_initializer.clone(),
            dtype=self.dtype_policy,
            name=name,
        )

    def _pre_norm(self, norm, x):
        """A sub-block's input: `norm(x)` in pre-LN, `x` as it is in post-LN."""
        return norm(x) if self.normalize_first else x

    def _residual_add(self, norm, x, residual, training):
        """A sub-block's output: `residual + dropout(x)`, then `norm` in post-LN."""
        x = self.residual_dropout(x, training=training) + residual
        return x if self.normalize_first else norm(x)

    def _feedforward(self, x, training):
        residual = x
        x = self._pre_norm(self.feedforward_layer_norm, x)
        x = self.feedforward_output_dense(self.feedforward_intermediate_dense(x))
        return self._residual_add(self.feedforward_layer_norm, x, residual, training)

    def _attention_mask(self, padding_mask, attention_mask, keys=None, prefix=""):
        """`{prefix}padding_mask` `(B, S)` and `{prefix}attention_mask` as one mask.

        Without a padding mask, the Keras mask of `keys` (the sequence attended
        to, e.g. from `Embedding(mask_zero=True)`) is used. The result is
        boolean, `(B|1, H|1, T|1, S)`, or None without any.
        """
        owner = _checks.owner_name(self)
        if padding_mask is None and keys is not None:
            padding_mask = get_keras_mask(keys)
        masks = []
        if padding_mask is not None:
            argument = f"{prefix}padding_mask"
            padding_mask = as_boolean_mask(padding_mask, owner, argument)
            _checks.check_rank(owner, argument, padding_mask.shape, 2)
            masks.append(padding_mask[:, None, None, :])  # (B, 1, 1, S)
        if attention_mask is not None:
            argument = f"{prefix}attention_mask"
            masks.append(as_attention_mask(attention_mask, owner, argument))
        if len(masks) < 2:
            return masks[0] if masks else None
        return ops.logical_and(*masks)

    def _scores_spec(self, query_sequence, key_length):
        """The attention scores `(B, num_heads, T, key_length)` of a symbolic call."""
        batch, query_length = query_sequence.shape[0], query_sequence.shape[1]
        shape = (batch, self.num_heads, query_length, key_length)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "num_key_value_heads": self.num_key_value_heads,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "sliding_window": self.sliding_window,
                "logit_soft_cap": self.logit_soft_cap,
                "use_attention_sinks": self.use_attention_sinks,
                "rotary_embedding": keras.saving.serialize_keras_object(
                    self.rotary_embedding
                ),
            }
        )
        return config


def _copy(layer):
    return None if layer is None else layer.__class__.from_config(layer.get_config())
