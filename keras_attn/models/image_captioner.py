"""An image captioner: an image encoder and the shared Transformer decoder."""

import math
import numbers

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.position_embedding import PositionEmbedding
from keras_attn.models.encoder_decoder import EncoderDecoderModel

_ENCODERS = ("cnn", "vit")
_INPUT_KEYS = ("images", "decoder_token_ids")


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
        owner = type(self).__name__
        positive = _checks.check_positive_int
        vocabulary_size = positive(owner, "vocabulary_size", vocabulary_size)
        height, width = _check_image_size(owner, image_size)
        channels = positive(owner, "channels", channels)
        _checks.check_choice(owner, "encoder", encoder, _ENCODERS)
        patch_size = positive(owner, "patch_size", patch_size)
        if encoder == "cnn" and patch_size & (patch_size - 1):
            _checks.fail(
                owner, "patch_size", patch_size, 'a power of two with encoder="cnn"'
            )
        for argument, size in (("image_size", height), ("image_size", width)):
            _checks.check_divisible(owner, argument, size, patch_size, "patch_size")
        num_encoder_layers = positive(owner, "num_encoder_layers", num_encoder_layers)
        intermediate_dim = positive(owner, "intermediate_dim", intermediate_dim)
        dropout = _checks.check_rate(owner, "dropout", dropout)
        if (
            isinstance(padding_id, bool)
            or not isinstance(padding_id, numbers.Integral)
            or not 0 <= padding_id < vocabulary_size
        ):
            _checks.fail(
                owner, "padding_id", padding_id, "a token id of the vocabulary"
            )
        self.padding_id = int(padding_id)
        self._image_shape = (height, width, channels)
        dtype = self._pop_dtype_policy(kwargs)

        # === Layers ===
        block = dict(
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            dropout=dropout,
            activation=activation,
            normalize_first=normalize_first,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=dtype,
        )
        self._create_decoder(
            vocabulary_size,
            num_decoder_layers,
            hidden_dim,
            scale_embeddings,
            tie_output_embeddings,
            block,
        )
        if encoder == "cnn":
            self._create_cnn_stem(patch_size, hidden_dim, height, width, dtype)
        else:
            self.patch_embedding = PatchEmbedding(
                patch_size=patch_size,
                hidden_dim=hidden_dim,
                use_class_token=False,
                dtype=dtype,
                name="patch_embedding",
            )
        self._create_encoder_stack(num_encoder_layers, block)

        # === Functional model ===
        self.encoder = encoder
        inputs = {
            "images": keras.Input(self._image_shape, name="images"),
            "decoder_token_ids": keras.Input(
                (None,), dtype="int32", name="decoder_token_ids"
            ),
        }
        encoded, _ = self.encode(inputs["images"])
        logits, _ = self.decode(inputs["decoder_token_ids"], encoded)
        super().__init__(inputs=inputs, outputs=logits, dtype=dtype, **kwargs)
        # `call` checks the images and names the argument; the functional input
        # spec would reject them first with a generic message.
        self.input_spec = None

        # === Config ===
        self.vocabulary_size = vocabulary_size
        # A pair as a tuple, so a config read back from JSON compares equal.
        square = isinstance(image_size, numbers.Integral)
        self.image_size = height if square else (height, width)
        self.channels = channels
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

    def encode(self, images, training=None):
        """`(image tokens (B, h·w, hidden_dim), None)`: no image token is padding."""
        self._check_images(images)
        if not _is_float(images.dtype):
            images = ops.cast(images, "float32")
        x = self._embed_images(images)  # (B, S, D)
        return self._run_encoder_stack(x, training=training), None

    def _check_images(self, images):
        # Called from `__init__` too, before `keras.Model` has named the model.
        initialized = hasattr(self, "_initialized")
        owner = _checks.owner_name(self) if initialized else type(self).__name__
        shape = tuple(images.shape)
        _checks.check_rank(owner, "images", shape, 4)
        expected = self._image_shape
        height, width, channels = expected
        if shape[-1] is not None and shape[-1] != channels:
            raise ValueError(
                f"{owner}: argument `images` must have {channels} channels "
                f"(`channels`={channels}), shape (batch, {height}, {width}, "
                f"{channels}); received a tensor of shape {shape}."
            )
        if any(
            got is not None and got != want for got, want in zip(shape[1:3], expected)
        ):
            raise ValueError(
                f"{owner}: argument `images` must be {height}x{width} pixels "
                f"(`image_size`), shape (batch, {height}, {width}, {channels}); "
                f"received a tensor of shape {shape}."
            )

    def _check_inputs(self, inputs):
        owner = _checks.owner_name(self)
        if not isinstance(inputs, dict) or sorted(inputs) != sorted(_INPUT_KEYS):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs)
            raise ValueError(
                f"{owner}: argument `inputs` must be a dict with keys "
                f"{list(_INPUT_KEYS)}; received {received}."
            )
        self._check_images(inputs["images"])
        shape = tuple(inputs["decoder_token_ids"].shape)
        _checks.check_rank(owner, "decoder_token_ids", shape, 2)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_inputs(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        self._check_inputs(inputs)
        return super().compute_output_spec(inputs, training=training, mask=mask)

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


def _check_image_size(owner, image_size):
    """`(height, width)` from an int or a pair of positive ints."""
    pair = (
        (image_size, image_size)
        if isinstance(image_size, numbers.Integral)
        else image_size
    )
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in pair)
        or min(pair) <= 0
    ):
        _checks.fail(
            owner,
            "image_size",
            image_size,
            "a positive integer or a pair (height, width) of positive integers",
        )
    return int(pair[0]), int(pair[1])


def _is_float(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)
