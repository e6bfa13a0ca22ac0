"""Functional-API models from the literature, built from `keras_attn.layers`."""

from keras_attn.models.encoder_decoder import EncoderDecoderModel
from keras_attn.models.transformer import Transformer
from keras_attn.models.transformer import transformer_preset

__all__ = ["EncoderDecoderModel", "Transformer", "transformer_preset"]
