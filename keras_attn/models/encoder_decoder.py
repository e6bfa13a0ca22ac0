"""The decoder half that every encoder–decoder model shares, and its decoding API.

`Transformer` (text → text) and `ImageCaptioner` (image → text) differ only in their
encoders. Both end in the same stack: target token embedding (scaled by √d), sinusoidal
positions, `TransformerDecoder` blocks with cross-attention, and an output projection
(tied to the token embedding by default). This base class builds that stack and gives
`keras_attn.generation` three methods to drive any such model:

- `encode(inputs)` → `(encoder_sequence, encoder_padding_mask)` (subclasses);
- `initialize_caches(encoder_sequence, max_length)` → per-layer KV caches;
- `decode(token_ids, encoder_sequence, encoder_padding_mask, caches, start_index)`
  → `(logits, caches)`, uncached when `caches is None`.

The functional graph in each subclass is built from the same two calls, so training,
cached and uncached generation all run the same code.
"""

import math

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer_encoder import TransformerEncoder
from keras_attn.models._functional import FunctionalModel


class EncoderDecoderModel(FunctionalModel):
    """Base of the encoder–decoder models; not used directly."""

    def _create_decoder(
        self,
        vocabulary_size,
        num_layers,
        hidden_dim,
        scale_embeddings,
        tie_output_embeddings,
        block,
        token_embedding=None,
    ):
        """Create the decoder layers as attributes (before the graph is built).

        `block` holds the `_block_stack` arguments the encoder stack shares.
        """
        owner = type(self).__name__
        vocabulary_size = _checks.check_positive_int(
            owner, "vocabulary_size", vocabulary_size
        )
        _checks.check_positive_int(owner, "num_layers", num_layers)
        _checks.check_positive_int(owner, "hidden_dim", hidden_dim)
        _checks.check_divisible(
            owner, "hidden_dim", hidden_dim, block["num_heads"], "num_heads"
        )
        dtype = block.get("dtype")
        self._hidden_dim = hidden_dim
        self._scale_embeddings = scale_embeddings
        self.decoder_vocabulary_size = vocabulary_size
        self.decoder_token_embedding = token_embedding or token_embedding_layer(
            vocabulary_size,
            hidden_dim,
            scale_embeddings,
            tie_output_embeddings,
            name="decoder_token_embedding",
            dtype=dtype,
        )
        self.decoder_position_embedding = SinusoidalPositionEmbedding(
            dtype=dtype, name="decoder_position_embedding"
        )
        (
            self.decoder_embedding_dropout,
            self.decoder_layers,
            self.decoder_norm,
        ) = _block_stack(TransformerDecoder, "decoder", num_layers, **block)

    def _create_encoder_stack(self, num_layers, block):
        """Create `encoder_embedding_dropout`, `encoder_layer_{i}`, `encoder_norm`."""
        (
            self.encoder_embedding_dropout,
            self.encoder_layers,
            self.encoder_norm,
        ) = _block_stack(TransformerEncoder, "encoder", num_layers, **block)

    def _run_encoder_stack(self, x, padding_mask=None, training=None):
        """Embedded inputs `(B, S, D)` through dropout, the blocks and the norm."""
        x = self.encoder_embedding_dropout(x, training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x

    def embed_tokens(
        self,
        embedding,
        position_embedding,
        token_ids,
        start_index=0,
    ):
        """Token embedding (× √d when scaled) + sinusoidal positions."""
        x = embedding(token_ids)  # (B, T, D)
        if self._scale_embeddings:
            x = x * ops.cast(math.sqrt(self._hidden_dim), x.dtype)
        return x + position_embedding(x, start_index=start_index)

    def encode(self, inputs, training=None):
        """`(encoder_sequence (B, S, D), encoder_padding_mask (B, S) or None)`."""
        raise NotImplementedError

    def decode(
        self,
        token_ids,
        encoder_sequence,
        encoder_padding_mask=None,
        caches=None,
        start_index=0,
        training=None,
    ):
        """Logits `(B, T, vocabulary_size)` for `token_ids` `(B, T)`.

        Args:
            token_ids: decoder input tokens, the start token first.
            encoder_sequence: `(B, S, D)` from `encode`.
            encoder_padding_mask: `(B, S)` from `encode`, or None.
            caches: None for a full (teacher-forced, causal) pass, or the
                caches from `initialize_caches`; then `token_ids` are the tokens
                at positions `start_index, start_index + 1, ...`.
            start_index: position of the first of `token_ids`.
            training: whether dropout is active.

        Returns:
            `(logits, caches)`; `caches` updated (None when not given).
        """
        x = self.embed_tokens(
            self.decoder_token_embedding,
            self.decoder_position_embedding,
            token_ids,
            start_index,
        )
        x = self.decoder_embedding_dropout(x, training=training)
        if caches is None:
            padding_mask = ops.not_equal(token_ids, self.padding_id)
            for layer in self.decoder_layers:
                x = layer(
                    x,
                    encoder_sequence,
                    decoder_padding_mask=padding_mask,
                    encoder_padding_mask=encoder_padding_mask,
                    training=training,
                )
        else:
            self_caches, cross_caches, encoder_padding_mask = caches
            new_self_caches = []
            for layer, self_cache, cross_cache in zip(
                self.decoder_layers, self_caches, cross_caches
            ):
                x, self_cache, _ = layer(
                    x,
                    encoder_padding_mask=encoder_padding_mask,
                    self_attention_cache=self_cache,
                    self_attention_cache_update_index=start_index,
                    cross_attention_cache=cross_cache,
                    training=training,
                )
                new_self_caches.append(self_cache)
            caches = (tuple(new_self_caches), cross_caches, encoder_padding_mask)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        logits = self.decoder_token_embedding(x, reverse=True)  # (B, T, V)
        return logits, caches

    def initialize_caches(self, encoder_sequence, encoder_padding_mask, max_length):
        """Empty self-attention caches and the projected encoder keys/values.

        Returns a tuple `(self_caches, cross_caches, encoder_padding_mask)` whose
        tensors all have the batch first, so samplers can expand it into beams.
        """
        batch_size = ops.shape(encoder_sequence)[0]
        self_caches = tuple(
            layer.initialize_cache(batch_size, max_length, dtype=encoder_sequence.dtype)
            for layer in self.decoder_layers
        )
        cross_caches = tuple(
            layer.precompute_cross_attention_cache(encoder_sequence)
            for layer in self.decoder_layers
        )
        if encoder_padding_mask is None:
            encoder_padding_mask = ops.ones(ops.shape(encoder_sequence)[:2], "bool")
        return self_caches, cross_caches, encoder_padding_mask


def _block_stack(
    block_class,
    prefix,
    num_layers,
    *,
    intermediate_dim,
    num_heads,
    dropout,
    activation,
    normalize_first,
    layer_norm_epsilon,
    dtype=None,
    final_norm=None,
):
    """`(embedding dropout, blocks, final norm or None)` named `{prefix}_...`.

    `dtype` (a `DTypePolicy` or None) is given to every layer: a functional
    model's own policy does not reach layers created before its `__init__`.

    Pre-LN stacks end with a norm; post-LN blocks already end normalised, unless
    `final_norm` asks for one (as `torch.nn.Transformer` has).
    """
    embedding_dropout = keras.layers.Dropout(
        dropout, dtype=dtype, name=f"{prefix}_embedding_dropout"
    )
    blocks = [
        block_class(
            intermediate_dim,
            num_heads,
            dropout=dropout,
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


def token_embedding_layer(
    vocabulary_size, hidden_dim, scale_embeddings, tie, name, dtype=None
):
    """An embedding that can also project back to logits (`reverse=True`).

    When the embedding is scaled by √d, it is initialised with standard deviation
    d^-0.5, so the scaled vectors start with unit variance (as in fairseq).
    """
    initializer = (
        keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        if scale_embeddings
        else "uniform"
    )
    return keras.layers.ReversibleEmbedding(
        vocabulary_size,
        hidden_dim,
        tie_weights=tie,
        embeddings_initializer=initializer,
        reverse_dtype="float32",
        dtype=dtype,
        name=name,
    )
