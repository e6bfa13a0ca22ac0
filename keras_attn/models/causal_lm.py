"""A decoder-only (GPT-style) language model, and the methods generation drives.

The functional graph has fixed inputs: `token_ids` and `padding_mask`, and with
`packed_inputs=True` also `segment_ids` and `positions`. A call may give token
ids alone (a tensor, or a dict of some of the inputs): `call` fills in the
missing ones before the graph runs (the mask from `padding_id`, one segment per
row, positions `0, 1, ...`), so `fit`, `predict` and `.keras` files see one graph.

`keras_attn.generation` drives the model with `initialize_caches(batch_size,
max_length)` (a list of per-layer caches, a ring buffer for each windowed layer)
and `_decode(token_ids, caches=None, start_index=0, training=False)` →
`(logits, caches)`, uncached when `caches is None`; `decode` is the same with its
token ids checked. The graph is built from `_decode` too, so training, cached and
uncached decoding run the same code.
"""

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.models import _causal_lm_checks as _arguments
from keras_attn.models._functional import FunctionalModel
from keras_attn.models._functional import block_arguments
from keras_attn.models.encoder_decoder import token_embedding_layer
from keras_attn.ops.masks import as_boolean_mask

_PACKED_INPUTS = _arguments.PACKED_INPUTS


@keras.saving.register_keras_serializable(package="keras_attn")
class CausalLM(FunctionalModel):
    """A decoder-only Transformer language model (GPT, GPT-2), a functional model.

    Token ids are embedded, given positions, passed through `num_layers` causal
    `TransformerDecoder` blocks (pre-LN with a final norm, as GPT-2, or post-LN)
    and projected back to the vocabulary. Blocks may attend a window of recent
    tokens (per layer: Gemma's alternating local and global layers) and share
    key/value heads (grouped-query attention).

    Padding: a key is masked where `padding_mask` is False, by default where
    the token is `padding_id` (None: nothing is masked). Padding queries still
    get logits (ignore them in the loss); positions count from the row's first
    token, so pad on the right (or pass `positions`, `packed_inputs=True`).

    Packed rows (`packed_inputs=True`, as `keras_attn.data` packs them): a token
    attends only its own document (`segment_ids`) and takes its position from
    `positions` (0 at each document's start): each document's logits are those
    it has alone.

    Layer names are stable (`.keras` files, the converters and `layout_map` use
    them): `token_embedding` (`embeddings`, and `reverse_embeddings` untied),
    `position_embedding` (learned or sinusoidal; rotary angles are in each
    `self_attention`), `embedding_dropout`, `decoder_layer_{i}`, `decoder_norm`.

    Args:
        vocabulary_size: int. Size of the vocabulary.
        num_layers: int. Number of decoder blocks.
        hidden_dim: int. Model width d.
        intermediate_dim: int. Feed-forward width.
        num_heads: int. Query heads; must divide `hidden_dim`.
        num_key_value_heads: int or None. Key/value heads (grouped-query
            attention); must divide `num_heads`. None: one per query head.
        max_sequence_length: int or None. The longest sequence (the rows of a
            learned table); None (sinusoidal and rotary only): no limit.
        position_embedding: `"learned"` (GPT-2), `"sinusoidal"` (added to the
            token embedding) or `"rotary"` (rotating queries and keys).
        sliding_window: None, an int `W >= 1`, or a list of one int-or-None
            per layer: a token attends only the last `W` tokens, itself too.
        normalize_first: bool. Pre-LN blocks and a final `decoder_norm` if
            True; post-LN blocks if False.
        tie_output_embeddings: bool. Logits are `x @ embeddingsᵀ` if True, else
            `x @ token_embedding/reverse_embeddings` (no bias).
        activation: feed-forward activation, a Keras name or a registered
            function, e.g. `keras_attn.models.gelu_approximate` (GPT-2's).
        dropout: float in [0, 1). Dropout on the embeddings, the sub-block
            outputs and the attention weights.
        layer_norm_epsilon: float. Epsilon of the layer normalisations.
        padding_id: int or None. The token masked as a key when no
            `padding_mask` is given; None: no token is padding.
        packed_inputs: bool. Add the `segment_ids` and `positions` inputs.
        **kwargs: `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: token ids `(B, T)`, or a dict with `"token_ids"` and optionally
            `"padding_mask"` (boolean or 0/1) and, with `packed_inputs=True`,
            `"segment_ids"` and `"positions"` (integers), all `(B, T)`.
        training: bool. Whether dropout is active.

    Returns:
        Logits `(B, T, vocabulary_size)`, float32 under any dtype policy.

    Example:
    ```python
    model = keras_attn.models.CausalLM(
        vocabulary_size=1000, num_layers=2, hidden_dim=64, intermediate_dim=256,
        num_heads=4, max_sequence_length=128,
    )
    logits = model({"token_ids": token_ids})  # (B, T, 1000)
    ```

    References:
        - Radford et al., "Language Models are Unsupervised Multitask
          Learners", 2019 (GPT-2).
        - Gemma Team, "Gemma 2", 2024 (alternating local and global layers).
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers=12,
        hidden_dim=768,
        intermediate_dim=3072,
        num_heads=12,
        num_key_value_heads=None,
        max_sequence_length=1024,
        position_embedding="learned",
        sliding_window=None,
        normalize_first=True,
        tie_output_embeddings=True,
        activation="gelu",
        dropout=0.1,
        layer_norm_epsilon=1e-5,
        padding_id=0,
        packed_inputs=False,
        **kwargs,
    ):
        owner = self._constructor_owner(kwargs.get("name"))
        self.vocabulary_size = _checks.check_positive_int(
            owner, "vocabulary_size", vocabulary_size
        )
        num_layers = _checks.check_positive_int(owner, "num_layers", num_layers)
        _, num_key_value_heads = _checks.check_heads(
            owner, num_heads, num_key_value_heads
        )
        self.max_sequence_length = _arguments.check_max_sequence_length(
            owner, max_sequence_length, position_embedding
        )
        windows = _arguments.per_layer_windows(owner, sliding_window, num_layers)
        self.padding_id = _arguments.check_padding_id(
            owner, padding_id, self.vocabulary_size
        )
        self.packed_inputs = _checks.check_bool(owner, "packed_inputs", packed_inputs)
        _checks.check_bool(owner, "normalize_first", normalize_first)
        _checks.check_bool(owner, "tie_output_embeddings", tie_output_embeddings)
        _arguments.check_activation(owner, activation)
        dtype = self._pop_dtype_policy(kwargs)
        block = block_arguments(
            owner,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            dropout=dropout,
            activation=activation,
            normalize_first=normalize_first,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=dtype,
        )
        del block["final_norm"]  # pre-LN stacks end with a norm, post-LN do not
        _arguments.check_even_features(owner, position_embedding, hidden_dim, num_heads)

        # === Layers ===
        self.token_embedding = token_embedding_layer(
            self.vocabulary_size,
            hidden_dim,
            False,
            tie_output_embeddings,
            name="token_embedding",
            dtype=dtype,
        )
        self.position_layer = _position_layer(
            position_embedding, self.max_sequence_length, dtype
        )
        self.embedding_dropout = keras.layers.Dropout(
            block["dropout"], dtype=dtype, name="embedding_dropout"
        )
        rotary = position_embedding == "rotary"
        self.decoder_layers = [
            TransformerDecoder(
                **block,
                num_key_value_heads=num_key_value_heads,
                sliding_window=window,
                rotary_embedding=RotaryEmbedding(dtype=dtype) if rotary else None,
                name=f"decoder_layer_{i}",
            )
            for i, window in enumerate(windows)
        ]
        self.decoder_norm = None
        if normalize_first:
            self.decoder_norm = keras.layers.LayerNormalization(
                epsilon=block["layer_norm_epsilon"], dtype=dtype, name="decoder_norm"
            )

        # === Functional model ===
        dtypes = {"token_ids": "int32", "padding_mask": "bool"}
        dtypes.update(dict.fromkeys(_PACKED_INPUTS if packed_inputs else (), "int32"))
        inputs = {n: keras.Input((None,), dtype=d, name=n) for n, d in dtypes.items()}
        logits, _ = self._decode(
            inputs["token_ids"],
            padding_mask=inputs["padding_mask"],
            segment_ids=inputs.get("segment_ids"),
            positions=inputs.get("positions"),
            training=None,  # the model's call decides
        )
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)

        # === Config ===
        self.num_layers = num_layers
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = block["intermediate_dim"]
        self.num_heads = block["num_heads"]
        self.num_key_value_heads = num_key_value_heads
        self.position_embedding = position_embedding
        per_layer = isinstance(sliding_window, (list, tuple))
        self.sliding_window = windows if per_layer else windows[0]  # JSON-like
        self.normalize_first = normalize_first
        self.tie_output_embeddings = tie_output_embeddings
        self.activation = activation
        self.dropout = block["dropout"]
        self.layer_norm_epsilon = block["layer_norm_epsilon"]

    def call(self, inputs, training=None, mask=None, **kwargs):
        inputs = self._complete_inputs(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        inputs = self._complete_inputs(inputs)
        return super().compute_output_spec(inputs, training=training, mask=mask)

    def _complete_inputs(self, inputs):
        """The graph's inputs from a call's: token ids alone or a dict of some."""
        owner = _checks.owner_name(self)
        inputs = dict(inputs) if isinstance(inputs, dict) else {"token_ids": inputs}
        _arguments.check_input_names(owner, inputs, self.packed_inputs)
        token_ids = inputs["token_ids"]
        if not hasattr(token_ids, "shape"):  # a nested list
            token_ids = inputs["token_ids"] = ops.convert_to_tensor(token_ids, "int32")
        _checks.check_rank(owner, "token_ids", tuple(token_ids.shape), 2)
        if "padding_mask" in inputs:
            inputs["padding_mask"] = as_boolean_mask(
                inputs["padding_mask"], owner, "padding_mask"
            )
        else:
            inputs["padding_mask"] = self._default_padding_mask(token_ids)
        if self.packed_inputs:
            ones = ops.ones_like(token_ids, dtype="int32")  # (B, T)
            inputs.setdefault("segment_ids", ones)  # one document per row
            inputs.setdefault("positions", ops.cumsum(ones, axis=1) - 1)
        return inputs

    def _check_inputs(self, inputs):
        _arguments.check_inputs(
            _checks.owner_name(self),
            inputs,
            self.vocabulary_size,
            self.max_sequence_length,
            self.packed_inputs,
        )

    def _default_padding_mask(self, token_ids):
        """`(B, T)`: True where the token is not `padding_id` (all, without one)."""
        if self.padding_id is None:
            return ops.ones_like(token_ids, dtype="bool")
        return ops.not_equal(token_ids, self.padding_id)

    def initialize_caches(self, batch_size, max_length, dtype=None):
        """A list of empty caches, one per block, for `max_length` positions
        (int or scalar tensor, at most `max_sequence_length`): `(batch_size, 2,
        slots, kv_heads, head_dim)` in `dtype` (default: the compute dtype),
        `max_length` slots, or a ring of `min(W, max_length)` for a window `W`.
        """
        _arguments.check_max_length(
            _checks.owner_name(self), max_length, self.max_sequence_length
        )
        return [
            layer.initialize_cache(batch_size, max_length, dtype=dtype)
            for layer in self.decoder_layers
        ]

    def decode(
        self,
        token_ids,
        caches=None,
        start_index=0,
        training=False,
        padding_mask=None,
        segment_ids=None,
        positions=None,
    ):
        """`(logits (B, T, vocabulary_size), caches)` for `token_ids` `(B, T)`.

        Args:
            token_ids: integer `(B, T)`.
            caches: None (the whole sequence; None is returned), or the list
                from `initialize_caches`: `token_ids` are then the tokens at
                positions `start_index, ...`, and the updated list is returned.
            start_index: int or scalar tensor, the position of `token_ids[:, 0]`.
            training: whether dropout is active.
            padding_mask: optional boolean. Uncached: `(B, T)`, by default the
                tokens that are not `padding_id`. Cached: `(B, max_length)`
                over the cache slots (plain caches only), by default every slot.
            segment_ids: optional `(B, T)` documents of packed rows; uncached.
            positions: optional `(B, T)`, in place of `start_index + arange(T)`.
        """
        owner = _checks.owner_name(self)
        _checks.check_rank(owner, "token_ids", tuple(token_ids.shape), 2)
        _checks.check_token_ids(owner, "token_ids", token_ids, self.vocabulary_size)
        return self._decode(
            token_ids,
            caches,
            start_index,
            training,
            padding_mask,
            segment_ids,
            positions,
        )

    def _decode(
        self,
        token_ids,
        caches=None,
        start_index=0,
        training=False,
        padding_mask=None,
        segment_ids=None,
        positions=None,
    ):
        x = self.token_embedding(token_ids)  # (B, T, D)
        if self.position_layer is not None:
            x = x + self.position_layer(x, start_index=start_index, positions=positions)
            positions = None  # the blocks take positions for rotary angles only
        x = self.embedding_dropout(x, training=training)
        if caches is None:
            if padding_mask is None and self.padding_id is not None:
                padding_mask = self._default_padding_mask(token_ids)
            for layer in self.decoder_layers:
                x = layer(
                    x,
                    decoder_padding_mask=padding_mask,
                    segment_ids=segment_ids,
                    positions=positions,
                    training=training,
                )
        else:
            updated = []
            for layer, cache in zip(self.decoder_layers, caches):
                x, cache = layer(
                    x,
                    decoder_padding_mask=padding_mask,
                    self_attention_cache=cache,
                    self_attention_cache_update_index=start_index,
                    segment_ids=segment_ids,
                    positions=positions,
                    training=training,
                )
                updated.append(cache)
            # The structure given: a loop over steps needs it unchanged.
            caches = updated if isinstance(caches, list) else tuple(updated)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        logits = self.token_embedding(x, reverse=True)  # (B, T, V), float32
        return logits, caches

    def get_config(self):
        activation = self.activation
        if not isinstance(activation, (str, dict)):  # a registered function
            activation = keras.activations.serialize(activation)
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_heads": self.num_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_sequence_length": self.max_sequence_length,
            "position_embedding": self.position_embedding,
            "sliding_window": self.sliding_window,
            "normalize_first": self.normalize_first,
            "tie_output_embeddings": self.tie_output_embeddings,
            "activation": activation,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "padding_id": self.padding_id,
            "packed_inputs": self.packed_inputs,
        }


def _position_layer(position_embedding, max_sequence_length, dtype):
    """The `position_embedding` layer added to the tokens (None for rotary)."""
    if position_embedding == "learned":
        return PositionEmbedding(
            max_sequence_length, dtype=dtype, name="position_embedding"
        )
    if position_embedding == "sinusoidal":
        return SinusoidalPositionEmbedding(dtype=dtype, name="position_embedding")
    return None
