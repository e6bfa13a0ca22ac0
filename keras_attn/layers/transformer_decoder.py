"""The Transformer decoder block: causal self-, cross-attention, feed-forward."""

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers._transformer_block import TransformerBlock
from keras_attn.layers._transformer_block import keras_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.masks import padding_mask_to_attention_mask


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerDecoder(TransformerBlock):
    """One decoder block of "Attention Is All You Need".

    Masked (causal) self-attention over the decoder sequence, then, when an
    `encoder_sequence` is given, cross-attention whose queries come from the
    decoder and whose keys and values come from the encoder, then a position-wise
    feed-forward network; each sub-block has a residual connection and layer
    normalisation (post-LN by default, pre-LN with `normalize_first=True`).
    Without an encoder sequence it is a decoder-only (GPT-style) block.

    For fast autoregressive decoding, pass `self_attention_cache` (from
    `initialize_cache`) with `self_attention_cache_update_index`, and a
    `cross_attention_cache` (from `precompute_cross_attention_cache`) that is
    computed once per source. Arguments and sublayer names follow
    `keras_hub.layers.TransformerDecoder`.

    Args:
        intermediate_dim: hidden size of the feed-forward network.
        num_heads: number of attention heads; must divide the input features.
        dropout: dropout rate on each sub-block's output (and on the attention
            weights unless `attention_dropout` is given).
        attention_dropout: dropout rate on the attention weights; defaults to
            `dropout`.
        activation: activation of the feed-forward network.
        layer_norm_epsilon: epsilon of the layer normalisations.
        normalize_first: pre-LN if True, post-LN if False.
        num_key_value_heads: key/value heads for grouped-query attention.
        kernel_initializer: initializer of the dense kernels.
        bias_initializer: initializer of the dense biases.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        decoder_sequence: `(B, T, hidden_dim)`.
        encoder_sequence: optional `(B, S, encoder_dim)`; the layer must be
            built with it (first call) to have cross-attention.
        decoder_padding_mask: optional `(B, T)` (with a cache: `(B, T_max)`),
            True for real tokens; defaults to the Keras mask of
            `decoder_sequence`.
        decoder_attention_mask: optional boolean mask broadcastable to
            `(B, T, T)` (with a cache: `(B, T, T_max)`).
        encoder_padding_mask: optional `(B, S)`; defaults to the Keras mask of
            `encoder_sequence`.
        encoder_attention_mask: optional boolean mask broadcastable to
            `(B, T, S)`.
        self_attention_cache: optional cache `(B, 2, T_max, kv_heads, head_dim)`.
        self_attention_cache_update_index: position of this call's first token
            in the cache.
        cross_attention_cache: optional precomputed encoder keys and values
            `(B, 2, S, kv_heads, head_dim)`; replaces `encoder_sequence`.
        use_causal_mask: whether self-attention is causal (default True).
        return_attention_scores: also return the self-attention weights
            `(B, num_heads, T, T)` and, with cross-attention, the cross-attention
            weights `(B, num_heads, T, S)`.
        training: whether dropout is active.

    Returns:
        `outputs`; with `return_attention_scores`, `(outputs, self_scores[,
        cross_scores])`; with `self_attention_cache`, the updated
        `(self_attention_cache, cross_attention_cache)` are appended.

    Example:
    ```python
    source = keras.Input((None, 64))
    target = keras.Input((None, 64))
    decoder = keras_attn.layers.TransformerDecoder(intermediate_dim=128, num_heads=4)
    outputs = decoder(target, source)
    model = keras.Model([source, target], outputs)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
    """

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        self._check_hidden_dim(decoder_sequence_shape, "decoder_sequence")
        self.self_attention = self._build_attention(
            "self_attention", decoder_sequence_shape, decoder_sequence_shape
        )
        self.self_attention_layer_norm = self._build_norm(
            "self_attention_layer_norm", decoder_sequence_shape
        )
        self.has_cross_attention = encoder_sequence_shape is not None
        if self.has_cross_attention:
            _checks.check_rank(
                _checks.owner_name(self), "encoder_sequence", encoder_sequence_shape, 3
            )
            self.cross_attention = self._build_attention(
                "cross_attention", decoder_sequence_shape, encoder_sequence_shape
            )
            self.cross_attention_layer_norm = self._build_norm(
                "cross_attention_layer_norm", decoder_sequence_shape
            )
        self._build_feedforward(decoder_sequence_shape)

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
    ):
        uses_encoder = encoder_sequence is not None or cross_attention_cache is not None
        if uses_encoder and not self.has_cross_attention:
            raise ValueError(
                f"{_checks.owner_name(self)}: argument `encoder_sequence` was given "
                "but the layer was built without one; call it with an "
                "`encoder_sequence` the first time to create its cross-attention."
            )
        if self.has_cross_attention and not uses_encoder:
            raise ValueError(
                f"{_checks.owner_name(self)}: argument `encoder_sequence` (or "
                "`cross_attention_cache`) is required, since the layer was built "
                "with cross-attention; received None."
            )
        if decoder_padding_mask is None and self_attention_cache is None:
            decoder_padding_mask = keras_mask(decoder_sequence)
        if encoder_padding_mask is None and encoder_sequence is not None:
            encoder_padding_mask = keras_mask(encoder_sequence)

        def self_attend(x):
            return self.self_attention(
                x,
                x,
                attention_mask=_merge(decoder_padding_mask, decoder_attention_mask),
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
            )

        x, *self_extras = self._residual(
            decoder_sequence, self.self_attention_layer_norm, self_attend, training
        )
        scores, caches = [], []
        if return_attention_scores:
            scores.append(self_extras.pop(0))
        if self_attention_cache is not None:
            caches.append(self_extras.pop(0))

        if uses_encoder:
            if cross_attention_cache is None and self_attention_cache is not None:
                cross_attention_cache = self.precompute_cross_attention_cache(
                    encoder_sequence
                )

            def cross_attend(x):
                return self.cross_attention(
                    x,
                    encoder_sequence if encoder_sequence is not None else x,
                    attention_mask=_merge(encoder_padding_mask, encoder_attention_mask),
                    return_attention_scores=return_attention_scores,
                    training=training,
                    cache=cross_attention_cache,
                )

            x, *cross_extras = self._residual(
                x, self.cross_attention_layer_norm, cross_attend, training
            )
            if return_attention_scores:
                scores.append(cross_extras.pop(0))
        if self_attention_cache is not None:
            caches.append(cross_attention_cache)

        x = self._feedforward(x, training)
        outputs = (x, *scores, *caches)
        return outputs[0] if len(outputs) == 1 else outputs

    def initialize_cache(self, batch_size, max_length, dtype=None):
        """An empty self-attention cache for `max_length` decoder positions."""
        return self.self_attention.initialize_cache(batch_size, max_length, dtype)

    def precompute_cross_attention_cache(self, encoder_sequence):
        """The encoder's keys and values, projected once for every decoding step."""
        return self.cross_attention.precompute_cache(encoder_sequence)

    def compute_output_spec(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
    ):
        batch, length = decoder_sequence.shape[0], decoder_sequence.shape[1]
        outputs = (keras.KerasTensor(decoder_sequence.shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            key_length = (
                self_attention_cache.shape[2]
                if self_attention_cache is not None
                else length
            )
            outputs += (self._scores_spec(batch, length, key_length),)
            if cross_attention_cache is not None:
                outputs += (
                    self._scores_spec(batch, length, cross_attention_cache.shape[2]),
                )
            elif encoder_sequence is not None:
                outputs += (
                    self._scores_spec(batch, length, encoder_sequence.shape[1]),
                )
        if self_attention_cache is not None:
            outputs += (
                keras.KerasTensor(
                    self_attention_cache.shape, self_attention_cache.dtype
                ),
            )
            if cross_attention_cache is not None:
                outputs += (
                    keras.KerasTensor(
                        cross_attention_cache.shape, cross_attention_cache.dtype
                    ),
                )
        return outputs[0] if len(outputs) == 1 else outputs

    def _scores_spec(self, batch, query_length, key_length):
        return keras.KerasTensor(
            (batch, self.num_heads, query_length, key_length), dtype=self.compute_dtype
        )


def _merge(padding_mask, attention_mask):
    """A key padding mask `(B, S)` and an attention mask as one attention mask."""
    if padding_mask is not None:
        padding_mask = padding_mask_to_attention_mask(ops.cast(padding_mask, "bool"))
    return combine_masks(padding_mask, attention_mask)
