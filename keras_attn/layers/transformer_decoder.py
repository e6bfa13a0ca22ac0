"""The Transformer decoder block: causal self-, cross-attention, feed-forward."""

import keras

from keras_attn import _checks
from keras_attn.layers import _kv_cache
from keras_attn.layers._transformer_block import TransformerBlock


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
        sliding_window: optional int `W >= 1`: a token attends only the last
            `W` tokens (itself included); cached decoding then keeps a ring
            buffer of `min(W, max_length)` slots (`initialize_cache`).
        logit_soft_cap: optional float `c > 0`: self-attention logits become
            `c * tanh(x / c)`.
        use_attention_sinks: learn a sink logit per head in the self-attention
            softmax (`self_attention/attention_sinks`).
        rotary_embedding: optional `keras_attn.layers.RotaryEmbedding` of the
            self-attention's queries and keys. The cross-attention takes none
            of these four.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        decoder_sequence: `(B, T, hidden_dim)`.
        encoder_sequence: optional `(B, S, encoder_dim)`; the layer must be
            built with it (first call) to have cross-attention.
        decoder_padding_mask: optional `(B, T)` (with a cache: `(B, T_max)`),
            True for real tokens; defaults to the Keras mask of
            `decoder_sequence` (without a cache).
        decoder_attention_mask: optional mask broadcastable to `(B, T, T)`
            (with a cache: `(B, T, T_max)`), True where a token may attend.
        encoder_padding_mask: optional `(B, S)`; defaults to the Keras mask of
            `encoder_sequence`.
        encoder_attention_mask: optional mask broadcastable to `(B, T, S)`.
            Masks are boolean or 0/1 integers; a float (additive) mask raises
            a `ValueError`.
        self_attention_cache: optional cache `(B, 2, T_max, kv_heads, head_dim)`
            (with a sliding window, a ring of `min(W, T_max)` slots, which
            takes no decoder padding or attention mask).
        self_attention_cache_update_index: position of this call's first token
            in the cache.
        cross_attention_cache: optional precomputed encoder keys and values
            `(B, 2, S, kv_heads, head_dim)`; replaces `encoder_sequence`. With a
            `self_attention_cache` and no `cross_attention_cache`, it is
            precomputed from `encoder_sequence` and returned.
        use_causal_mask: whether self-attention is causal (default True).
        return_attention_scores: also return the self-attention weights
            `(B, num_heads, T, T)` and, with cross-attention, the cross-attention
            weights `(B, num_heads, T, S)`.
        training: whether dropout is active.
        segment_ids: optional integer `(B, T)`: a token attends only tokens of
            its own segment (packed documents); not with a cache.
        attention_bias: optional float tensor broadcastable to
            `(B, num_heads, T, T)` (with a plain cache `(..., T, T_max)`),
            added to the self-attention logits.
        positions: optional `(T,)` or `(B, T)` rotary positions (needs a
            `rotary_embedding`), e.g. restarting at 0 in each packed document.

    Returns:
        `outputs` `(B, T, hidden_dim)`, then the scores if requested
        (`self_scores`, and `cross_scores` with cross-attention), then the
        caches if `self_attention_cache` was given (the updated
        `self_attention_cache`, and `cross_attention_cache` with
        cross-attention). So a decoder-only block returns `(outputs,
        self_attention_cache)` when cached, as keras-hub's does, and one with
        cross-attention `(outputs, self_attention_cache, cross_attention_cache)`.

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
        self.self_attention = self._build_self_attention(decoder_sequence_shape)
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
        segment_ids=None,
        attention_bias=None,
        positions=None,
    ):
        self._check_encoder_arguments(encoder_sequence, cross_attention_cache)
        cached = self_attention_cache is not None
        # A cached step's own mask covers its tokens, not the cache's keys.
        mask = self._attention_mask(
            decoder_padding_mask,
            decoder_attention_mask,
            keys=None if cached else decoder_sequence,
            prefix="decoder_",
        )
        residual = decoder_sequence
        x = self._pre_norm(self.self_attention_layer_norm, decoder_sequence)
        attended, self_scores, self_attention_cache = _split_attention_outputs(
            self.self_attention(
                x,
                x,
                attention_mask=mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                segment_ids=segment_ids,
                attention_bias=attention_bias,
                positions=positions,
            ),
            return_attention_scores,
            cached,
        )
        x = self._residual_add(
            self.self_attention_layer_norm, attended, residual, training
        )
        scores, caches = [self_scores], [self_attention_cache]
        if self.has_cross_attention:
            if cross_attention_cache is None and cached:
                cross_attention_cache = self.precompute_cross_attention_cache(
                    encoder_sequence
                )
            x, cross_scores = self._cross_attend(
                x,
                encoder_sequence,
                encoder_padding_mask,
                encoder_attention_mask,
                cross_attention_cache,
                return_attention_scores,
                training,
            )
            scores.append(cross_scores)
            caches.append(cross_attention_cache)
        x = self._feedforward(x, training)
        return _outputs(x, scores, caches, return_attention_scores, cached)

    def _cross_attend(
        self,
        x,
        encoder_sequence,
        encoder_padding_mask,
        encoder_attention_mask,
        cross_attention_cache,
        return_attention_scores,
        training,
    ):
        """The cross-attention sub-block: new `x`, and the scores (or None)."""
        mask = self._attention_mask(
            encoder_padding_mask,
            encoder_attention_mask,
            keys=encoder_sequence,
            prefix="encoder_",
        )
        residual = x
        x = self._pre_norm(self.cross_attention_layer_norm, x)
        attended, scores, _ = _split_attention_outputs(
            self.cross_attention(
                x,
                # Precomputed keys and values replace the encoder sequence.
                encoder_sequence if cross_attention_cache is None else None,
                attention_mask=mask,
                return_attention_scores=return_attention_scores,
                training=training,
                cache=cross_attention_cache,
            ),
            return_attention_scores,
            cross_attention_cache is not None,
        )
        x = self._residual_add(
            self.cross_attention_layer_norm, attended, residual, training
        )
        return x, scores

    def _check_encoder_arguments(self, encoder_sequence, cross_attention_cache):
        owner = _checks.owner_name(self)
        uses_encoder = encoder_sequence is not None or cross_attention_cache is not None
        if uses_encoder and not self.has_cross_attention:
            raise ValueError(
                f"{owner}: argument `encoder_sequence` was given but the layer was "
                "built without one; call it with an `encoder_sequence` the first "
                "time to create its cross-attention."
            )
        if self.has_cross_attention and not uses_encoder:
            raise ValueError(
                f"{owner}: argument `encoder_sequence` (or `cross_attention_cache`) "
                "is required, since the layer was built with cross-attention; "
                "received None."
            )

    def initialize_cache(self, batch_size, max_length, dtype=None):
        """An empty self-attention cache for `max_length` decoder positions (with
        a sliding window `W`, a ring buffer of `min(W, max_length)` slots)."""
        return self.self_attention.initialize_cache(batch_size, max_length, dtype)

    def precompute_cross_attention_cache(self, encoder_sequence):
        """The encoder's keys and values, projected once for every decoding step."""
        return self.cross_attention.precompute_cache(encoder_sequence)

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return tuple(decoder_sequence_shape)

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
        segment_ids=None,
        attention_bias=None,
        positions=None,
    ):
        self._check_encoder_arguments(encoder_sequence, cross_attention_cache)
        cached = self_attention_cache is not None
        output_shape = self.compute_output_shape(decoder_sequence.shape)
        x = keras.KerasTensor(output_shape, dtype=self.compute_dtype)
        length = decoder_sequence.shape[1]
        key_length = length
        if cached:  # a ring also attends the step's own keys
            key_length = _kv_cache.attended_length(
                self_attention_cache.shape[2], length, self.sliding_window is not None
            )
        scores = [self._scores_spec(decoder_sequence, key_length)]
        caches = [_spec_like(self_attention_cache)]
        if self.has_cross_attention:
            if cross_attention_cache is None:
                batch, length = encoder_sequence.shape[0], encoder_sequence.shape[1]
                attention = self.cross_attention
                shape = (batch, 2, length, attention.kv_heads, attention.key_dim)
                cross_attention_cache = keras.KerasTensor(shape, self.compute_dtype)
            key_length = cross_attention_cache.shape[2]
            scores.append(self._scores_spec(decoder_sequence, key_length))
            caches.append(_spec_like(cross_attention_cache))
        return _outputs(x, scores, caches, return_attention_scores, cached)


def _split_attention_outputs(outputs, with_scores, with_cache):
    """`(output, scores, cache)` of a `MultiHeadAttention` call, None if absent.

    The layer returns its output, then the scores if asked, then the cache if
    given (alone, the output is not in a tuple).
    """
    if not (with_scores or with_cache):
        return outputs, None, None
    scores = outputs[1] if with_scores else None
    cache = outputs[-1] if with_cache else None
    return outputs[0], scores, cache


def _outputs(x, scores, caches, return_attention_scores, cached):
    """What the decoder returns: `x`, then the scores if asked, then the caches."""
    outputs = (
        x,
        *(scores if return_attention_scores else ()),
        *(caches if cached else ()),
    )
    return outputs[0] if len(outputs) == 1 else outputs


def _spec_like(tensor):
    return None if tensor is None else keras.KerasTensor(tensor.shape, tensor.dtype)
