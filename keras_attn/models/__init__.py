"""Functional-API models from the literature, built from `keras_attn.layers`."""

from keras_attn.models.causal_lm import CausalLM
from keras_attn.models.causal_lm_presets import causal_lm_preset
from keras_attn.models.causal_lm_presets import gelu_approximate
from keras_attn.models.encoder_decoder import EncoderDecoderModel
from keras_attn.models.image_captioner import ImageCaptioner
from keras_attn.models.transformer import Transformer
from keras_attn.models.transformer import transformer_preset
from keras_attn.models.vision_transformer import VisionTransformer
from keras_attn.models.vision_transformer import vision_transformer_preset

__all__ = [
    "CausalLM",
    "EncoderDecoderModel",
    "ImageCaptioner",
    "Transformer",
    "VisionTransformer",
    "causal_lm_preset",
    "gelu_approximate",
    "transformer_preset",
    "vision_transformer_preset",
]
