"""The Vision Transformer of "An Image is Worth 16x16 Words", and its presets."""

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.models._functional import FunctionalModel
from keras_attn.models._functional import block_arguments
from keras_attn.models._functional import dtype_policy_or_none

_POOLINGS = ("token", "mean")

# (num_layers, hidden_dim, num_heads, mlp_dim, patch_size), Table 1 of the paper;
# Ti and S from "How to train your ViT" (Steiner et al., 2021).
_PRESETS = {
    "vit_tiny_16": (12, 192, 3, 768, 16),
    "vit_small_16": (12, 384, 6, 1536, 16),
    "vit_base_16": (12, 768, 12, 3072, 16),
    "vit_base_32": (12, 768, 12, 3072, 32),
    "vit_large_16": (24, 1024, 16, 4096, 16),
    "vit_large_32": (24, 1024, 16, 4096, 32),
    "vit_huge_14": (32, 1280, 16, 5120, 14),
}
# Paper-style names, matched case-insensitively (`_normalize_preset_name`).
_ALIASES = {
    "ViT-Ti/16": "vit_tiny_16",
    "ViT-S/16": "vit_small_16",
    "ViT-B/16": "vit_base_16",
    "ViT-B/32": "vit_base_32",
    "ViT-L/16": "vit_large_16",
    "ViT-L/32": "vit_large_32",
    "ViT-H/14": "vit_huge_14",
}


@keras.saving.register_keras_serializable(package="keras_attn")
class VisionTransformer(FunctionalModel):
    """The Vision Transformer (ViT) image classifier.

    Images are cut into `patch_size` squares and embedded
    (`keras_attn.layers.PatchEmbedding`, with a class token and learned positions),
    passed through `num_layers` pre-LN `keras_attn.layers.TransformerEncoder`
    blocks and a final layer normalisation; the class token (or, with
    `pooling="mean"`, the mean of the patch tokens) goes to a dense head that
    returns logits. A functional `keras.Model`: its layers have stable names
    (`patch_embedding`, `encoder_layer_{i}`, `encoder_norm`, `pre_logits`,
    `head`) that checkpoint converters and layout maps rely on, and
    `model.get_layer("encoder_norm").output` gives the token features.

    The model is built for `image_size` pixels, which sizes the position table,
    but accepts images of any height and width divisible by `patch_size`: the
    position grid is then resized bicubically
    (`keras_attn.ops.resample_position_grid`), as for fine-tuning at a higher
    resolution.

    Args:
        image_size: int. Height and width of the images the position table is
            made for; a multiple of `patch_size`.
        patch_size: int. Height and width of each patch.
        num_layers: int. Number of Transformer encoder blocks.
        num_heads: int. Attention heads per block; must divide `hidden_dim`.
        hidden_dim: int. Size of each token.
        mlp_dim: int. Hidden size of each block's feed-forward network.
        num_classes: int. Number of logits of the head. May be `None` when
            `include_top=False`.
        channels: int. Channels of the images. Defaults to `3`.
        pooling: `"token"` (the class token, as in the paper) or `"mean"` (the
            mean of the patch tokens; no class token is made). Defaults to
            `"token"`.
        dropout: float in [0, 1). Dropout after the patch embedding and on each
            block's residual branches. Defaults to `0.0`.
        attention_dropout: float in [0, 1). Dropout on the attention weights.
            Defaults to `0.0`.
        layer_norm_epsilon: float. Epsilon of every layer normalisation.
            Defaults to `1e-6`.
        representation_size: int or `None`. If set, a `tanh` dense layer of this
            size (`pre_logits`) before the head, as in the paper's pre-training
            on ImageNet-21k. Defaults to `None`.
        include_top: bool. Whether to add the `head`; without it the model
            returns the pooled features. Defaults to `True`.
        shifted_patches: bool. Shifted patch tokenization for small datasets
            (`keras_attn.layers.PatchEmbedding`; Lee et al., 2021). Defaults to
            `False`.
        dtype: dtype policy of the layers (e.g. `"mixed_bfloat16"`). Defaults
            to the global policy.
        name: string. Name of the model.
        **kwargs: other arguments of `keras.Model` (`trainable`).

    Call arguments:
        images: float tensor `(batch, height, width, channels)`, height and width
            multiples of `patch_size`.
        training: bool. Whether dropout is active.

    Returns:
        Logits `(batch, num_classes)` (no softmax); with `include_top=False`,
        features `(batch, representation_size or hidden_dim)`.

    Example:

    ```python
    model = VisionTransformer(
        image_size=32, patch_size=4, num_layers=4, num_heads=4,
        hidden_dim=64, mlp_dim=128, num_classes=10,
    )
    logits = model(np.zeros((2, 32, 32, 3), "float32"))  # (2, 10)
    logits = model(np.zeros((2, 48, 48, 3), "float32"))  # other sizes work too
    ```

    References:
     - [Dosovitskiy et al., 2021](https://arxiv.org/abs/2010.11929)
     - [Steiner et al., 2022](https://arxiv.org/abs/2106.10270)
    """

    def __init__(
        self,
        image_size,
        patch_size,
        num_layers,
        num_heads,
        hidden_dim,
        mlp_dim,
        num_classes,
        channels=3,
        pooling="token",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-6,
        representation_size=None,
        include_top=True,
        shifted_patches=False,
        dtype=None,
        name=None,
        **kwargs,
    ):
        owner = self._constructor_owner(name)
        patch_size = _checks.check_positive_int(owner, "patch_size", patch_size)
        image_size, _ = _checks.check_image_size(
            owner, image_size, patch_size, allow_pair=False
        )
        num_layers = _checks.check_positive_int(owner, "num_layers", num_layers)
        # Named here: the blocks call it `intermediate_dim`.
        mlp_dim = _checks.check_positive_int(owner, "mlp_dim", mlp_dim)
        include_top = _checks.check_bool(owner, "include_top", include_top)
        num_classes, representation_size, channels = _check_head_and_channels(
            owner, num_classes, representation_size, include_top, channels
        )
        _checks.check_choice(owner, "pooling", pooling, _POOLINGS)
        dtype = dtype_policy_or_none(dtype)

        # === Layers ===
        block = block_arguments(
            owner,
            hidden_dim=hidden_dim,
            intermediate_dim=mlp_dim,
            num_heads=num_heads,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation="gelu",
            normalize_first=True,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=dtype,
        )
        self.patch_embedding = PatchEmbedding(
            patch_size=patch_size,
            hidden_dim=hidden_dim,
            use_class_token=pooling == "token",
            shifted_patches=shifted_patches,
            dtype=dtype,
            name="patch_embedding",
        )
        # Built for the static size: it sizes the position table. The model
        # input below has a dynamic height and width.
        self.patch_embedding.build((None, image_size, image_size, channels))
        self._create_encoder_stack(num_layers, block, "embedding_dropout")

        # === Functional model ===
        images = keras.Input((None, None, channels), name="images")
        x = self._run_encoder_stack(self.patch_embedding(images))  # (B, [1 +] N, D)
        x = x[:, 0] if pooling == "token" else ops.mean(x, axis=1)  # (B, D)
        num_outputs = num_classes if include_top else None
        outputs = _head(x, representation_size, num_outputs, dtype)
        super().__init__(
            inputs=images, outputs=outputs, dtype=dtype, name=name, **kwargs
        )

        # === Config ===
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.num_heads = block["num_heads"]
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.num_classes = num_classes
        self.channels = channels
        self.pooling = pooling
        self.dropout = block["dropout"]
        self.attention_dropout = block["attention_dropout"]
        self.layer_norm_epsilon = block["layer_norm_epsilon"]
        self.representation_size = representation_size
        self.include_top = include_top
        self.shifted_patches = shifted_patches

    def _check_inputs(self, images):
        _checks.check_images(
            _checks.owner_name(self),
            images.shape,
            self.channels,
            patch_size=self.patch_size,
        )

    def get_config(self):
        # Not the functional graph: the constructor rebuilds it from these.
        return {
            **self._base_config(),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "mlp_dim": self.mlp_dim,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "representation_size": self.representation_size,
            "include_top": self.include_top,
            "shifted_patches": self.shifted_patches,
        }


def _check_head_and_channels(
    owner, num_classes, representation_size, include_top, channels
):
    """`(num_classes, representation_size, channels)`; no classes without a top."""
    return (
        _checks.check_positive_int(
            owner, "num_classes", num_classes, allow_none=not include_top
        ),
        _checks.check_positive_int(
            owner, "representation_size", representation_size, allow_none=True
        ),
        _checks.check_positive_int(owner, "channels", channels),
    )


def _head(x, representation_size, num_classes, dtype):
    """The optional tanh `pre_logits` layer, then the `head` (if `num_classes`)."""
    if representation_size is not None:
        x = keras.layers.Dense(
            representation_size, activation="tanh", dtype=dtype, name="pre_logits"
        )(x)
    if num_classes is not None:
        # Zero-initialised, as in the reference implementation.
        x = keras.layers.Dense(
            num_classes, kernel_initializer="zeros", dtype=dtype, name="head"
        )(x)
    return x


def _normalize_preset_name(name):
    return name.lower().replace("-", "_").replace("/", "_")


def vision_transformer_preset(name, /, **overrides):
    """A `VisionTransformer` with the configuration of a named ViT variant.

    | preset           | alias       | layers | hidden | heads | MLP  | patch | params |
    |------------------|-------------|--------|--------|-------|------|-------|--------|
    | `"vit_tiny_16"`  | `ViT-Ti/16` | 12     | 192    | 3     | 768  | 16    | 5.7M   |
    | `"vit_small_16"` | `ViT-S/16`  | 12     | 384    | 6     | 1536 | 16    | 22.1M  |
    | `"vit_base_16"`  | `ViT-B/16`  | 12     | 768    | 12    | 3072 | 16    | 86.6M  |
    | `"vit_base_32"`  | `ViT-B/32`  | 12     | 768    | 12    | 3072 | 32    | 88.2M  |
    | `"vit_large_16"` | `ViT-L/16`  | 24     | 1024   | 16    | 4096 | 16    | 304.3M |
    | `"vit_large_32"` | `ViT-L/32`  | 24     | 1024   | 16    | 4096 | 32    | 306.5M |
    | `"vit_huge_14"`  | `ViT-H/14`  | 32     | 1280   | 16    | 5120 | 14    | 632.0M |

    Parameter counts are at 224 pixels with 1,000 classes (the paper rounds
    them: 86M, 307M, 632M). The model is made
    with random weights: this function downloads nothing.

    Args:
        name: string. A preset name or its paper-style alias (`"ViT-B/16"`),
            case-insensitive. Positional only, so that `name=` among the
            overrides names the model.
        **overrides: `VisionTransformer` arguments that replace the preset's or
            the defaults `image_size=224`, `num_classes=1000`, `channels=3`,
            `name=<preset name>`.

    Returns:
        A `VisionTransformer`.

    Example:

    ```python
    model = vision_transformer_preset("ViT-B/16", num_classes=10, image_size=384)
    ```

    References:
     - [Dosovitskiy et al., 2021](https://arxiv.org/abs/2010.11929), Table 1.
     - [Steiner et al., 2022](https://arxiv.org/abs/2106.10270), Table 1.
    """
    names = {_normalize_preset_name(n): n for n in _PRESETS}
    names.update({_normalize_preset_name(a): n for a, n in _ALIASES.items()})
    key = names.get(_normalize_preset_name(name)) if isinstance(name, str) else None
    if key is None:
        _checks.fail(
            "vision_transformer_preset",
            "name",
            name,
            "one of "
            + ", ".join(map(repr, [*_PRESETS, *_ALIASES]))
            + " (case-insensitive)",
        )
    num_layers, hidden_dim, num_heads, mlp_dim, patch_size = _PRESETS[key]
    config = {
        "image_size": 224,
        "patch_size": patch_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "hidden_dim": hidden_dim,
        "mlp_dim": mlp_dim,
        "num_classes": 1000,
        "channels": 3,
        "name": key,
    }
    config.update(overrides)
    return VisionTransformer(**config)
