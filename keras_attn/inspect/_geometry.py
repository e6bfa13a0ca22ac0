"""Where a model's image tokens come from: patch grid, patch size, prefix tokens."""

import collections

from keras_attn.inspect._walk import sublayers
from keras_attn.layers.patch_embedding import PatchEmbedding
from keras_attn.layers.transformer_decoder import TransformerDecoder
from keras_attn.models.image_captioner import ImageCaptioner

ImageTokens = collections.namedtuple(
    "ImageTokens", ["grid_shape", "patch_size", "num_prefix_tokens"]
)


def image_tokens(model, image_shape):
    """The `ImageTokens` of `(B, height, width, channels)` images, or `None`.

    A `PatchEmbedding` (the first found) gives its patch size and class token; an
    `ImageCaptioner` with the convolutional stem has one token per
    `patch_size × patch_size` cell and no prefix. `None` for a model whose
    tokens are not image patches.
    """
    height, width = image_shape[1:3]
    layer = patch_embedding(model)
    if layer is not None:
        patch_size = tuple(layer.patch_size)
        prefix = layer.num_prefix_tokens
    elif isinstance(model, ImageCaptioner):
        patch_size, prefix = (model.patch_size, model.patch_size), 0
    else:
        return None
    grid = (height // patch_size[0], width // patch_size[1])
    return ImageTokens(grid, patch_size, prefix)


def patch_embedding(model):
    """`model` if it is a `PatchEmbedding`, else the first one below it, or None."""
    if isinstance(model, PatchEmbedding):
        return model
    for _, layer in sublayers(model):
        if isinstance(layer, PatchEmbedding):
            return layer
    return None


def image_input(inputs):
    """The first `(B, height, width, channels)` array of `inputs`, or None."""
    if isinstance(inputs, dict):
        candidates = list(inputs.values())
    elif isinstance(inputs, (list, tuple)):
        candidates = list(inputs)
    else:
        candidates = [inputs]
    for candidate in candidates:
        if len(getattr(candidate, "shape", ())) == 4:
            return candidate
    return None


def token_count(geometry):
    rows, columns = geometry.grid_shape
    return geometry.num_prefix_tokens + rows * columns


def image_self_attention(model, maps, geometry):
    """The maps of `maps` that are self-attention over the image tokens.

    Square maps over `token_count(geometry)` tokens, outside any
    `TransformerDecoder` (a decoder attends over words, even when a caption
    has as many tokens as the image has patches); first layer first.
    """
    tokens = token_count(geometry)
    decoders = [
        path + "/"
        for path, layer in sublayers(model)
        if isinstance(layer, TransformerDecoder)
    ]
    return {
        name: scores
        for name, scores in maps.items()
        if scores.shape[-2:] == (tokens, tokens)
        and not any(name.startswith(decoder) for decoder in decoders)
    }
