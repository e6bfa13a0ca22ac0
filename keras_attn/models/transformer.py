"""The encoder–decoder Transformer of "Attention Is All You Need"."""

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from keras_attn.models._functional import block_arguments
from keras_attn.models.encoder_decoder import EncoderDecoderModel
from keras_attn.models.encoder_decoder import token_embedding_layer


@keras.saving.register_keras_serializable(package="keras_attn")
class Transformer(EncoderDecoderModel):
    """Sequence-to-sequence Transformer (Vaswani et al., 2017), a functional model.

    Source tokens are embedded (× √d), summed with sinusoidal positions and
    encoded by `num_layers` `TransformerEncoder` blocks; target tokens go through
    the same embedding recipe and `num_decoder_layers` `TransformerDecoder` blocks
    (causal self-attention, cross-attention over the encoder output); the output
    projection is the transpose of the target embedding (tied). Padding tokens
    (`padding_id`) are masked in every attention. Generate translations with
    `keras_attn.generation.generate`.

    Args:
        vocabulary_size: source vocabulary size (and target's, by default).
        target_vocabulary_size: target vocabulary size; defaults to
            `vocabulary_size`.
        num_layers: number of encoder blocks.
        num_decoder_layers: number of decoder blocks; defaults to `num_layers`.
        hidden_dim: model width d.
        intermediate_dim: feed-forward width.
        num_heads: attention heads; must divide `hidden_dim`.
        dropout: dropout on embeddings, sub-block outputs and attention weights.
        activation: feed-forward activation.
        normalize_first: pre-LN blocks (and a final norm) if True; post-LN, as in
            the paper, if False.
        share_embeddings: one embedding for source and target tokens (needs
            equal vocabulary sizes), as in the paper's shared BPE vocabulary.
        tie_output_embeddings: the output projection is the transposed target
            embedding.
        scale_embeddings: multiply embeddings by √d.
        padding_id: token id of padding, masked everywhere.
        layer_norm_epsilon: epsilon of the layer normalisations.
        final_norm: end the encoder and decoder stacks with a layer
            normalisation (`encoder_norm`, `decoder_norm`). Defaults to
            `normalize_first`; `torch.nn.Transformer` has them in post-LN too.
        **kwargs: `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: dict with `"encoder_token_ids"` `(B, S)` and
            `"decoder_token_ids"` `(B, T)` (integers).

    Returns:
        Logits `(B, T, target_vocabulary_size)`, float32.

    Example:
    ```python
    model = keras_attn.models.Transformer(
        vocabulary_size=100, num_layers=2, hidden_dim=64, intermediate_dim=128,
        num_heads=4,
    )
    logits = model({"encoder_token_ids": source, "decoder_token_ids": target})
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
    """

    SOURCE_NAME = "encoder_token_ids"

    def __init__(
        self,
        vocabulary_size,
        target_vocabulary_size=None,
        num_layers=6,
        num_decoder_layers=None,
        hidden_dim=512,
        intermediate_dim=2048,
        num_heads=8,
        dropout=0.1,
        activation="relu",
        normalize_first=False,
        share_embeddings=True,
        tie_output_embeddings=True,
        scale_embeddings=True,
        padding_id=0,
        layer_norm_epsilon=1e-6,
        final_norm=None,
        **kwargs,
    ):
        owner = self._constructor_owner(kwargs.get("name"))
        vocabulary_size, target_vocabulary_size = _check_vocabularies(
            owner, vocabulary_size, target_vocabulary_size, share_embeddings
        )
        self.padding_id = _checks.check_token_id(
            owner,
            "padding_id",
            padding_id,
            min(vocabulary_size, target_vocabulary_size),
        )
        num_layers = _checks.check_positive_int(owner, "num_layers", num_layers)
        num_decoder_layers = num_decoder_layers or num_layers
        dtype = self._pop_dtype_policy(kwargs)

        # === Layers ===
        block = block_arguments(
            owner,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            dropout=dropout,
            activation=activation,
            normalize_first=normalize_first,
            layer_norm_epsilon=layer_norm_epsilon,
            final_norm=final_norm,
            dtype=dtype,
        )
        self._create_decoder(
            owner,
            target_vocabulary_size,
            num_decoder_layers,
            hidden_dim,
            scale_embeddings,
            tie_output_embeddings,
            block,
        )
        self._create_source_embedding(
            vocabulary_size, hidden_dim, scale_embeddings, share_embeddings, dtype
        )
        self._create_encoder_stack(num_layers, block)

        # === Functional model ===
        inputs = {
            name: keras.Input((None,), dtype="int32", name=name)
            for name in (self.SOURCE_NAME, "decoder_token_ids")
        }
        encoded, encoder_padding_mask = self._encode(inputs[self.SOURCE_NAME])
        logits, _ = self._decode(
            inputs["decoder_token_ids"], encoded, encoder_padding_mask
        )
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.num_layers = num_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation = activation
        self.normalize_first = normalize_first
        self.share_embeddings = share_embeddings
        self.tie_output_embeddings = tie_output_embeddings
        self.scale_embeddings = scale_embeddings
        self.layer_norm_epsilon = layer_norm_epsilon
        self.final_norm = final_norm

    def _create_source_embedding(
        self, vocabulary_size, hidden_dim, scale_embeddings, share_embeddings, dtype
    ):
        """`encoder_token_embedding` (the decoder's when shared) and positions."""
        self.encoder_token_embedding = (
            self.decoder_token_embedding
            if share_embeddings
            else token_embedding_layer(
                vocabulary_size,
                hidden_dim,
                scale_embeddings,
                True,
                name="encoder_token_embedding",
                dtype=dtype,
            )
        )
        self.encoder_position_embedding = SinusoidalPositionEmbedding(
            dtype=dtype, name="encoder_position_embedding"
        )

    def _check_source(self, encoder_token_ids):
        owner = _checks.owner_name(self)
        _checks.check_rank(owner, self.SOURCE_NAME, tuple(encoder_token_ids.shape), 2)
        _checks.check_token_ids(
            owner, self.SOURCE_NAME, encoder_token_ids, self.vocabulary_size
        )

    def _encode(self, encoder_token_ids, training=None):
        padding_mask = ops.not_equal(encoder_token_ids, self.padding_id)  # (B, S)
        x = self.embed_tokens(
            self.encoder_token_embedding,
            self.encoder_position_embedding,
            encoder_token_ids,
        )
        return self._run_encoder_stack(x, padding_mask, training), padding_mask

    def get_config(self):
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "num_layers": self.num_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalize_first": self.normalize_first,
            "share_embeddings": self.share_embeddings,
            "tie_output_embeddings": self.tie_output_embeddings,
            "scale_embeddings": self.scale_embeddings,
            "padding_id": self.padding_id,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "final_norm": self.final_norm,
        }


def _check_vocabularies(owner, vocabulary_size, target_vocabulary_size, shared):
    """`(vocabulary_size, target_vocabulary_size)`; the target's defaults to the
    source's, and a shared embedding needs them equal."""
    vocabulary_size = _checks.check_positive_int(
        owner, "vocabulary_size", vocabulary_size
    )
    target_vocabulary_size = _checks.check_positive_int(
        owner, "target_vocabulary_size", target_vocabulary_size or vocabulary_size
    )
    if shared and target_vocabulary_size != vocabulary_size:
        raise ValueError(
            f"{owner}: argument `target_vocabulary_size` must equal "
            f"`vocabulary_size` ({vocabulary_size}) when share_embeddings=True; "
            f"received {target_vocabulary_size}."
        )
    return vocabulary_size, target_vocabulary_size


_PRESETS = {
    # Table 3 of the paper.
    "base": dict(
        num_layers=6, hidden_dim=512, intermediate_dim=2048, num_heads=8, dropout=0.1
    ),
    "big": dict(
        num_layers=6, hidden_dim=1024, intermediate_dim=4096, num_heads=16, dropout=0.3
    ),
}


def transformer_preset(name, vocabulary_size=37000, **overrides):
    """The paper's "base" or "big" Transformer.

    Args:
        name: `"base"` or `"big"`.
        vocabulary_size: shared source/target vocabulary (the paper's English–
            German BPE vocabulary has about 37,000 tokens).
        **overrides: any other `Transformer` argument.

    Returns:
        A `Transformer`.

    Example:
    ```python
    model = keras_attn.models.transformer_preset("base")
    model.count_params()  # about 63 million (the paper reports 65 million)
    ```
    """
    if name not in _PRESETS:
        raise ValueError(
            f"transformer_preset: argument `name` must be one of "
            f"{sorted(_PRESETS)}; received {name!r}."
        )
    return Transformer(vocabulary_size, **{**_PRESETS[name], **overrides})
