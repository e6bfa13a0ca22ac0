"""An image captioner: an image encoder and the shared Transformer decoder."""

import math

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.models._functional import block_arguments
from keras_attn.models.encoder_decoder import EncoderDecoderModel

_ENCODERS = ("cnn", "vit")


@keras.saving.register_keras_serializable(package="keras_attn")
class ImageCaptioner(EncoderDecoderModel):
    """Image-to-text Transformer ("Show, Attend and Tell" with Transformers).

    The image becomes a sequence of tokens, one per `patch_size` × `patch_size`
    square of pixels, in one of two ways:

    - `encoder="cnn"`: a small convolutional stem of `log2(patch_size)` blocks
      (3×3 `Conv2D` → `GroupNormalization` → ReLU → 2×2 max-pooling, filters
      doubling up to `hidden_dim`), a `Dense` projection of each feature-map
      cell to `hidden_dim` and learned positions over the flattened grid;
    - `encoder="vit"`: a `keras_attn.layers.PatchEmbedding` (a linear map of each
      patch, learned positions, no class token), as in the Vision Transformer.

    `num_encoder_layers` `TransformerEncoder` blocks then contextualise the image
    tokens, and the decoder shared with `Transformer` (token embedding × √d,
    sinusoidal positions, `TransformerDecoder` blocks with causal self-attention
    and cross-attention over the image tokens, output projection tied to the
    token embedding) predicts the caption. Train it with teacher forcing (the
    caption without its last token as `decoder_token_ids`, without its first as
    the labels); write captions with `keras_attn.generation.generate(model,
    images, ...)`. No image token is padding, so `encode` returns no mask.

    Layers have stable names: `image_conv_{i}`, `image_norm_{i}`,
    `image_projection`, `image_position_embedding` (cnn) or `patch_embedding`
    (vit), then `encoder_embedding_dropout`, `encoder_layer_{i}`, `encoder_norm`
    and the decoder's `decoder_token_embedding`, `decoder_layer_{i}`,
    `decoder_norm`.

    Args:
        vocabulary_size: int. Size of the caption vocabulary.
        image_size: int or pair `(height, width)`. Size of the images; a
            multiple of `patch_size`.
        channels: int. Channels of the images. Defaults to `3`.
        encoder: `"cnn"` or `"vit"`; see above. Defaults to `"cnn"`.
        patch_size: int. Side in pixels of the square each image token covers;
            a power of two for `"cnn"`. Defaults to `16`.
        num_encoder_layers: int. Number of `TransformerEncoder` blocks over the
            image tokens. Defaults to `4`.
        num_decoder_layers: int. Number of `TransformerDecoder` blocks.
            Defaults to `4`.
        hidden_dim: int. Model width d. Defaults to `256`.
        intermediate_dim: int. Feed-forward width. Defaults to `1024`.
        num_heads: int. Attention heads; must divide `hidden_dim`. Defaults to
            `8`.
        dropout: float in [0, 1). Dropout on embeddings, sub-block outputs and
            attention weights. Defaults to `0.1`.
        activation: feed-forward activation of the Transformer blocks. Defaults
            to `"gelu"`.
        normalize_first: bool. Pre-LN blocks and a final norm after each stack
            (as in ViT) if True; post-LN blocks if False. Defaults to `True`.
        tie_output_embeddings: bool. The output projection is the transposed
            token embedding. Defaults to `True`.
        scale_embeddings: bool. Multiply token embeddings by √d. Defaults to
            `True`.
        padding_id: int. Token id of caption padding, masked in the decoder.
            Defaults to `0`.
        layer_norm_epsilon: float. Epsilon of the layer normalisations.
            Defaults to `1e-6`.
        **kwargs: `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: dict with `"images"`, float `(batch, height, width, channels)`,
            and `"decoder_token_ids"`, integer `(batch, length)`.
        training: bool. Whether dropout is active.

    Returns:
        Logits `(batch, length, vocabulary_size)`, float32.

    Example:

    ```python
    model = keras_attn.models.ImageCaptioner(
        vocabulary_size=20, image_size=32, encoder="vit", patch_size=4,
        num_encoder_layers=2, num_decoder_layers=2, hidden_dim=64,
        intermediate_dim=128, num_heads=4,
    )
    logits = model({"images": images, "decoder_token_ids": captions[:, :-1]})
    tokens = keras_attn.generation.generate(
        model, images, start_token_id=1, end_token_id=2, max_length=12
    )
    ```

    References:
     - [Xu et al., 2015](https://arxiv.org/abs/1502.03044), "Show, Attend and
       Tell".
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
     - [Dosovitskiy et al., 2021](https://arxiv.org/abs/2010.11929)
    """

    SOURCE_NAME = "images"

    def __init__(
        self,
        vocabulary_size,
        image_size,
        channels=3,
        encoder="cnn",
        patch_size=16,
        num_encoder_layers=4,
        num_decoder_layers=4,
        hidden_dim=256,
        intermediate_dim=1024,
        num_heads=8,
        dropout=0.1,
        activation="gelu",
        normalize_first=True,
        tie_output_embeddings=True,
        scale_embeddings=True,
        padding_id=0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        owner = self._constructor_owner(kwargs.get("name"))
        vocabulary_size = _checks.check_positive_int(
            owner, "vocabulary_size", vocabulary_size
        )
        self.padding_id = _checks.check_token_id(
            owner, "padding_id", padding_id, vocabulary_size
        )
        encoder, patch_size, self._image_shape = _check_image_encoder(
            owner, encoder, patch_size, image_size, channels
        )
        num_encoder_layers = _checks.check_positive_int(
            owner, "num_encoder_layers", num_encoder_layers
        )
        self.encoder = encoder
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
            dtype=dtype,
        )
        self._create_decoder(
            owner,
            vocabulary_size,
            num_decoder_layers,
            hidden_dim,
            scale_embeddings,
            tie_output_embeddings,
            block,
        )
        self._create_image_embedding(patch_size, hidden_dim, dtype)
        self._create_encoder_stack(num_encoder_layers, block)

        # === Functional model ===
        inputs = {
            self.SOURCE_NAME: keras.Input(self._image_shape, name=self.SOURCE_NAME),
            "decoder_token_ids": keras.Input(
                (None,), dtype="int32", name="decoder_token_ids"
            ),
        }
        encoded, _ = self._encode(inputs[self.SOURCE_NAME])
        logits, _ = self._decode(inputs["decoder_token_ids"], encoded)
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        # A pair as a tuple, so a config read back from JSON compares equal.
        square = _checks.is_integer(image_size)
        self.image_size = int(image_size) if square else self._image_shape[:2]
        self.channels = self._image_shape[-1]
        self.patch_size = patch_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation = activation
        self.normalize_first = normalize_first
        self.tie_output_embeddings = tie_output_embeddings
        self.scale_embeddings = scale_embeddings
        self.layer_norm_epsilon = layer_norm_epsilon

    def _create_image_embedding(self, patch_size, hidden_dim, dtype):
        """The convolutional stem or the `patch_embedding` of the image tokens."""
        if self.encoder == "cnn":
            height, width, _ = self._image_shape
            self._create_cnn_stem(patch_size, hidden_dim, height, width, dtype)
        else:
            self.patch_embedding = PatchEmbedding(
                patch_size=patch_size,
                hidden_dim=hidden_dim,
                use_class_token=False,
                dtype=dtype,
                name="patch_embedding",
            )

    def _create_cnn_stem(self, patch_size, hidden_dim, height, width, dtype):
        """Conv blocks that each halve the resolution, then a projection."""
        num_blocks = patch_size.bit_length() - 1  # log2(patch_size)
        self.image_convs, self.image_norms, self.image_pools = [], [], []
        for i in range(num_blocks):
            filters = max(hidden_dim >> (num_blocks - 1 - i), 8)
            self.image_convs.append(
                keras.layers.Conv2D(
                    filters, 3, padding="same", dtype=dtype, name=f"image_conv_{i}"
                )
            )
            # GroupNorm, not BatchNorm: training and inference compute the same.
            self.image_norms.append(
                keras.layers.GroupNormalization(
                    groups=math.gcd(filters, 8), dtype=dtype, name=f"image_norm_{i}"
                )
            )
            self.image_pools.append(
                keras.layers.MaxPooling2D(dtype=dtype, name=f"image_pool_{i}")
            )
        self.image_projection = keras.layers.Dense(
            hidden_dim, dtype=dtype, name="image_projection"
        )
        # A layer, not `ops.reshape`: the functional graph would freeze the batch.
        self.image_flatten = keras.layers.Reshape(
            (-1, hidden_dim), dtype=dtype, name="image_flatten"
        )
        self.image_position_embedding = PositionEmbedding(
            (height // patch_size) * (width // patch_size),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=dtype,
            name="image_position_embedding",
        )

    def _embed_images(self, images):
        """Image tokens `(B, h·w, D)`, one per patch, rows first."""
        if self.encoder == "vit":
            return self.patch_embedding(images)
        x = images
        for conv, norm, pool in zip(
            self.image_convs, self.image_norms, self.image_pools
        ):
            x = pool(ops.relu(norm(conv(x))))  # (B, H / 2^(i+1), W / 2^(i+1), F_i)
        x = self.image_projection(x)  # (B, h, w, D)
        x = self.image_flatten(x)  # (B, h·w, D)
        return x + self.image_position_embedding(x)

    def _encode(self, images, training=None):
        """`(image tokens (B, h·w, hidden_dim), None)`: no image token is padding."""
        if not _is_float(images.dtype):
            images = ops.cast(images, "float32")
        x = self._embed_images(images)  # (B, S, D)
        return self._run_encoder_stack(x, training=training), None

    def _check_source(self, images):
        height, width, channels = self._image_shape
        _checks.check_images(
            _checks.owner_name(self), images.shape, channels, size=(height, width)
        )

    def get_config(self):
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "image_size": self.image_size,
            "channels": self.channels,
            "encoder": self.encoder,
            "patch_size": self.patch_size,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalize_first": self.normalize_first,
            "tie_output_embeddings": self.tie_output_embeddings,
            "scale_embeddings": self.scale_embeddings,
            "padding_id": self.padding_id,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


def _check_image_encoder(owner, encoder, patch_size, image_size, channels):
    """`(encoder, patch_size, image shape (height, width, channels))`, checked."""
    _checks.check_choice(owner, "encoder", encoder, _ENCODERS)
    patch_size = _checks.check_positive_int(owner, "patch_size", patch_size)
    if encoder == "cnn" and patch_size & (patch_size - 1):
        _checks.fail(
            owner, "patch_size", patch_size, 'a power of two with encoder="cnn"'
        )
    height, width = _checks.check_image_size(owner, image_size, patch_size)
    channels = _checks.check_positive_int(owner, "channels", channels)
    return encoder, patch_size, (height, width, channels)


def _is_float(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)
