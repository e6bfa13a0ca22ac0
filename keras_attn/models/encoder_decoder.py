"""The decoder half that every encoder–decoder model shares, and its decoding API.

`Transformer` (text → text) and `ImageCaptioner` (image → text) differ only in their
encoders. Both end in the same stack: target token embedding (scaled by √d), sinusoidal
positions, `TransformerDecoder` blocks with cross-attention, and an output projection
(tied to the token embedding by default). This base class builds that stack and gives
`keras_attn.generation` three methods to drive any such model:

- `encode(inputs)` → `(encoder_sequence, encoder_padding_mask)` (subclasses
  write `_encode`);
- `initialize_caches(encoder_sequence, max_length)` → per-layer KV caches;
- `decode(token_ids, encoder_sequence, encoder_padding_mask, caches, start_index)`
  → `(logits, caches)`, uncached when `caches is None`.

The functional graph in each subclass is built from the same two calls, so training,
cached and uncached generation all run the same code. The public `encode` and
`decode` check their inputs first (shapes, and token ids where their values are
known: `_checks.check_token_ids`); the graph is built from the unchecked `_encode`
and `_decode`, since the model cannot name itself before `keras.Model.__init__`,
and `keras_attn.generation` steps with `_decode`, whose ids its sampler chose.
"""

import math

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.models._functional import FunctionalModel
from keras_attn.models._functional import block_stack


class EncoderDecoderModel(FunctionalModel):
    """Base of the encoder–decoder models; not used directly.

    Subclasses name their source input (`SOURCE_NAME`) and check it in
    `_check_source`; the decoder's token ids are checked here.
    """

    SOURCE_NAME = None

    def _create_decoder(
        self,
        owner,
        vocabulary_size,
        num_layers,
        hidden_dim,
        scale_embeddings,
        tie_output_embeddings,
        block,
        token_embedding=None,
    ):
        """Create the decoder layers as attributes (before the graph is built).

        `block` holds the `block_stack` arguments the encoder stack shares
        (from `block_arguments`, which checked `hidden_dim`).
        """
        num_layers = _checks.check_positive_int(owner, "num_decoder_layers", num_layers)
        self._hidden_dim = hidden_dim
        self._scale_embeddings = scale_embeddings
        self.decoder_vocabulary_size = vocabulary_size
        self.decoder_token_embedding = token_embedding or token_embedding_layer(
            vocabulary_size,
            hidden_dim,
            scale_embeddings,
            tie_output_embeddings,
            name="decoder_token_embedding",
            dtype=block["dtype"],
        )
        self.decoder_position_embedding = SinusoidalPositionEmbedding(
            dtype=block["dtype"], name="decoder_position_embedding"
        )
        (
            self.decoder_embedding_dropout,
            self.decoder_layers,
            self.decoder_norm,
        ) = block_stack(
            TransformerDecoder,
            "decoder",
            num_layers,
            "decoder_embedding_dropout",
            **block,
        )

    def _check_inputs(self, inputs):
        owner = _checks.owner_name(self)
        keys = (self.SOURCE_NAME, "decoder_token_ids")
        if not isinstance(inputs, dict) or sorted(inputs) != sorted(keys):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs)
            raise ValueError(
                f"{owner}: argument `inputs` must be a dict with keys "
                f"{list(keys)}; received {received}."
            )
        self._check_source(inputs[self.SOURCE_NAME])
        self._check_decoder_token_ids(inputs["decoder_token_ids"])

    def _check_source(self, source):
        """Raise a `ValueError` naming the model for a bad source; subclasses."""

    def _check_decoder_token_ids(self, token_ids, argument="decoder_token_ids"):
        owner = _checks.owner_name(self)
        _checks.check_rank(owner, argument, tuple(token_ids.shape), 2)
        _checks.check_token_ids(
            owner, argument, token_ids, self.decoder_vocabulary_size
        )

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
        self._check_source(inputs)
        return self._encode(inputs, training=training)

    def _encode(self, inputs, training=None):
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
        self._check_decoder_token_ids(token_ids, "token_ids")
        return self._decode(
            token_ids,
            encoder_sequence,
            encoder_padding_mask,
            caches,
            start_index,
            training,
        )

    def _decode(
        self,
        token_ids,
        encoder_sequence=None,
        encoder_padding_mask=None,
        caches=None,
        start_index=0,
        training=None,
    ):
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
