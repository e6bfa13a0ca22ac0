"""Functional-API models from the literature, built from `keras_attn.layers`."""

from keras_attn.models.encoder_decoder import EncoderDecoderModel
from keras_attn.models.image_captioner import ImageCaptioner
from keras_attn.models.transformer import Transformer
from keras_attn.models.transformer import transformer_preset
from keras_attn.models.vision_transformer import VisionTransformer
from keras_attn.models.vision_transformer import vision_transformer_preset

__all__ = [
    "EncoderDecoderModel",
    "ImageCaptioner",
    "Transformer",
    "VisionTransformer",
    "transformer_preset",
    "vision_transformer_preset",
]
