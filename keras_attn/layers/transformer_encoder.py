"""The Transformer encoder block: self-attention then a feed-forward network."""

import keras

from keras_attn.layers._transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerEncoder(TransformerBlock):
    """One encoder block of "Attention Is All You Need".

    Self-attention and a position-wise feed-forward network, each wrapped in a
    residual connection with layer normalisation, after (post-LN, as in the
    paper) or before (pre-LN, `normalize_first=True`, as in ViT) the sub-block.
    Arguments and sublayer names follow `keras_hub.layers.TransformerEncoder`.

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
        sliding_window: optional int `W >= 1`: a token attends only tokens
            fewer than `W` positions away.
        logit_soft_cap: optional float `c > 0`: self-attention logits become
            `c * tanh(x / c)`.
        use_attention_sinks: learn a sink logit per head in the self-attention
            softmax (`self_attention/attention_sinks`).
        rotary_embedding: optional `keras_attn.layers.RotaryEmbedding` of the
            self-attention's queries and keys.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(B, T, hidden_dim)`.
        padding_mask: optional boolean (or 0/1) `(B, T)`, True for real tokens;
            defaults to the Keras mask of `inputs`.
        attention_mask: optional boolean (or 0/1) mask broadcastable to
            `(B, T, T)`, True where a token may attend another. Float (additive)
            masks are refused with a `ValueError`.
        return_attention_scores: also return the weights `(B, num_heads, T, T)`.
        training: whether dropout is active.
        segment_ids: optional integer `(B, T)`: a token attends only tokens of
            its own segment (packed documents).
        attention_bias: optional float tensor broadcastable to
            `(B, num_heads, T, T)`, added to the self-attention logits.
        positions: optional `(T,)` or `(B, T)` rotary positions (needs a
            `rotary_embedding`), e.g. restarting at 0 in each packed document.

    Returns:
        `outputs` `(B, T, hidden_dim)`; with `return_attention_scores`,
        `(outputs, scores)`.

    Example:
    ```python
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    x = keras_attn.layers.TransformerEncoder(intermediate_dim=128, num_heads=4)(x)
    model = keras.Model(tokens, x)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Xiong et al., "On Layer Normalization in the Transformer
          Architecture", 2020.
    """

    def build(self, inputs_shape):
        self._check_hidden_dim(inputs_shape, "inputs")
        self.self_attention = self._build_self_attention(inputs_shape)
        self.self_attention_layer_norm = self._build_norm(
            "self_attention_layer_norm", inputs_shape
        )
        self._build_feedforward(inputs_shape)

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
        attention_bias=None,
        positions=None,
    ):
        mask = self._attention_mask(padding_mask, attention_mask, keys=inputs)
        residual = inputs
        x = self._pre_norm(self.self_attention_layer_norm, inputs)
        attended = self.self_attention(
            x,
            x,
            attention_mask=mask,
            return_attention_scores=return_attention_scores,
            training=training,
            segment_ids=segment_ids,
            attention_bias=attention_bias,
            positions=positions,
        )
        if return_attention_scores:
            attended, scores = attended
        x = self._residual_add(
            self.self_attention_layer_norm, attended, residual, training
        )
        x = self._feedforward(x, training)
        return (x, scores) if return_attention_scores else x

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        segment_ids=None,
        attention_bias=None,
        positions=None,
    ):
        output_shape = self.compute_output_shape(inputs.shape)
        outputs = keras.KerasTensor(output_shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return outputs
        return outputs, self._scores_spec(inputs, inputs.shape[1])
