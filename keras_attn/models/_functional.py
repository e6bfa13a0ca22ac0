"""Base of our functional-API models (the keras-hub "Backbone" pattern), and the
block stacks they share.

A model checks its arguments, creates its layers as attributes, builds its graph on
`keras.Input`s by calling them, then calls `super().__init__(inputs=..., outputs=...)`.
Its config is its constructor arguments, so `from_config` rebuilds the graph from
them. Every model has an encoder stack (embedding dropout, `encoder_layer_{i}`
blocks, an optional `encoder_norm`), made by `block_stack`, which also makes the
decoder stack of the encoder–decoder models. The layer names are part of the
format: `.keras` files and the weight converters (`keras_attn.convert`) find the
weights by them.
"""

import keras

from keras_attn import _checks
from keras_attn.layers.transformer_encoder import TransformerEncoder


class FunctionalModel(keras.Model):
    """A functional `keras.Model` whose layers are attributes set before `__init__`.

    Subclasses check their call inputs in `_check_inputs`, with messages that name
    the argument; the functional input spec, which would reject them first with a
    generic message, is off.
    """

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            self.dtype_policy = dtype  # functional models ignore a `dtype` argument
        self.input_spec = None

    def _constructor_owner(self, name):
        """How errors name the model before `keras.Model.__init__` named it."""
        return type(self).__name__ + (f" '{name}'" if name else "")

    @staticmethod
    def _pop_dtype_policy(kwargs):
        """The `dtype` in `kwargs` as a `DTypePolicy` (or None), removed from them.

        Subclasses give it to every layer they create: the policy of a functional
        model does not reach layers created before its `__init__`.
        """
        return dtype_policy_or_none(kwargs.pop("dtype", None))

    def __setattr__(self, name, value):
        # torch.nn.Module refuses sub-modules before its __init__ ran (inside
        # `keras.Model.__init__`). The layers set before then are tracked by the
        # functional graph, so bypass it until then, and only until then: the
        # variables Keras registers with torch afterwards (`_torch_params`) must
        # reach `model.parameters()`.
        if keras.config.backend() == "torch" and "_modules" not in self.__dict__:
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def _create_encoder_stack(
        self, num_layers, block, dropout_name="encoder_embedding_dropout"
    ):
        """Create `encoder_embedding_dropout`, `encoder_layers`, `encoder_norm`.

        `block` holds the `block_stack` arguments (from `block_arguments`).
        """
        (
            self.encoder_embedding_dropout,
            self.encoder_layers,
            self.encoder_norm,
        ) = block_stack(
            TransformerEncoder, "encoder", num_layers, dropout_name, **block
        )

    def _run_encoder_stack(self, x, padding_mask=None, training=None):
        """Embedded inputs `(B, S, D)` through dropout, the blocks and the norm."""
        x = self.encoder_embedding_dropout(x, training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x

    def _check_inputs(self, inputs):
        """Raise a `ValueError` naming the model and the argument; subclasses."""

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_inputs(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        self._check_inputs(inputs)
        return super().compute_output_spec(inputs, training=training, mask=mask)

    def _base_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def dtype_policy_or_none(dtype):
    return None if dtype is None else keras.dtype_policies.get(dtype)


def block_arguments(
    owner,
    *,
    hidden_dim,
    intermediate_dim,
    num_heads,
    dropout,
    activation,
    normalize_first,
    layer_norm_epsilon,
    attention_dropout=None,
    final_norm=None,
    dtype=None,
):
    """The checked `block_stack` arguments of a model's Transformer blocks.

    `hidden_dim` is checked (a positive multiple of `num_heads`) but not
    returned: the blocks take their width from their inputs.
    """
    _checks.check_positive_int(owner, "hidden_dim", hidden_dim)
    num_heads = _checks.check_positive_int(owner, "num_heads", num_heads)
    _checks.check_divisible(owner, "hidden_dim", hidden_dim, num_heads, "num_heads")
    if attention_dropout is not None:
        attention_dropout = _checks.check_rate(
            owner, "attention_dropout", attention_dropout
        )
    return dict(
        intermediate_dim=_checks.check_positive_int(
            owner, "intermediate_dim", intermediate_dim
        ),
        num_heads=num_heads,
        dropout=_checks.check_rate(owner, "dropout", dropout),
        attention_dropout=attention_dropout,
        activation=activation,
        normalize_first=normalize_first,
        layer_norm_epsilon=_checks.check_positive_float(
            owner, "layer_norm_epsilon", layer_norm_epsilon
        ),
        final_norm=final_norm,
        dtype=dtype,
    )


def block_stack(
    block_class,
    prefix,
    num_layers,
    dropout_name,
    *,
    intermediate_dim,
    num_heads,
    dropout,
    attention_dropout,
    activation,
    normalize_first,
    layer_norm_epsilon,
    final_norm,
    dtype,
):
    """`(embedding dropout, blocks, final norm or None)`.

    The blocks are `{prefix}_layer_{i}`, the norm `{prefix}_norm`, the dropout
    `dropout_name`. `dtype` (a `DTypePolicy` or None) is given to every layer: a
    functional model's own policy does not reach layers created before its
    `__init__`. Pre-LN stacks end with a norm; post-LN blocks already end
    normalised, unless `final_norm` asks for one (as `torch.nn.Transformer` has).
    """
    embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name=dropout_name)
    blocks = [
        block_class(
            intermediate_dim,
            num_heads,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=normalize_first,
            dtype=dtype,
            name=f"{prefix}_layer_{i}",
        )
        for i in range(num_layers)
    ]
    norm = None
    if normalize_first if final_norm is None else final_norm:
        norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name=f"{prefix}_norm"
        )
    return embedding_dropout, blocks, norm
