"""Every layer and model returns, called on `keras.Input`s, what its eager call returns.

The blocks and `MultiHeadAttention`, whose outputs change with caches, scores and masks,
have their own table in `tests/layers/test_transformer_blocks.py`; this one covers the
position embeddings, the patch embedding and the ready models (whose `decode` with and
without caches is the decoder's call, covered there). Structure, shapes and dtypes must
agree; a symbolic size is either unknown (`None`) or the eager one.
"""

import keras
import numpy as np
import pytest

from keras_attn import layers
from keras_attn import models

B, T, D = 2, 6, 8
RNG = np.random.default_rng(0)
SEQUENCE = RNG.normal(size=(B, T, D)).astype("float32")
HEADS = RNG.normal(size=(B, T, 2, D)).astype("float32")  # (B, T, H, Dh)
IMAGES = RNG.uniform(size=(B, 8, 8, 3)).astype("float32")
TOKENS = RNG.integers(1, 20, size=(B, T)).astype("int32")


def tiny_transformer():
    return models.Transformer(
        vocabulary_size=20, num_layers=1, hidden_dim=D, intermediate_dim=16, num_heads=2
    )


def tiny_vision_transformer(**kwargs):
    return models.VisionTransformer(
        image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=D,
        mlp_dim=16, num_classes=3, **kwargs,
    )  # fmt: skip


def tiny_image_captioner(encoder):
    return models.ImageCaptioner(
        vocabulary_size=20, image_size=8, encoder=encoder, patch_size=4,
        num_encoder_layers=1, num_decoder_layers=1, hidden_dim=D, intermediate_dim=16,
        num_heads=2,
    )  # fmt: skip


# name: (make the layer or model, positional inputs, keyword arguments)
CALLS = {
    "sinusoidal": (layers.SinusoidalPositionEmbedding, (SEQUENCE,), {}),
    "sinusoidal_start": (
        layers.SinusoidalPositionEmbedding,
        (SEQUENCE,),
        {"start_index": 3},
    ),
    "learned": (lambda: layers.PositionEmbedding(sequence_length=T), (SEQUENCE,), {}),
    "rotary": (layers.RotaryEmbedding, (HEADS,), {}),
    "rotary_start": (layers.RotaryEmbedding, (HEADS,), {"start_index": 2}),
    "patches_class_token": (
        lambda: layers.PatchEmbedding(patch_size=4, hidden_dim=D),
        (IMAGES,),
        {},
    ),
    "patches_shifted_no_class_token": (
        lambda: layers.PatchEmbedding(
            patch_size=4, hidden_dim=D, use_class_token=False, shifted_patches=True
        ),
        (IMAGES,),
        {},
    ),
    "vision_transformer": (tiny_vision_transformer, (IMAGES,), {}),
    "vision_transformer_features": (
        lambda: tiny_vision_transformer(include_top=False, pooling="mean"),
        (IMAGES,),
        {},
    ),
    "transformer": (
        tiny_transformer,
        ({"encoder_token_ids": TOKENS, "decoder_token_ids": TOKENS[:, :4]},),
        {},
    ),
    "image_captioner_vit": (
        lambda: tiny_image_captioner("vit"),
        ({"images": IMAGES, "decoder_token_ids": TOKENS},),
        {},
    ),
    "image_captioner_cnn": (
        lambda: tiny_image_captioner("cnn"),
        ({"images": IMAGES, "decoder_token_ids": TOKENS},),
        {},
    ),
}


def symbolic(value):
    return keras.Input(value.shape[1:], batch_size=value.shape[0], dtype=value.dtype)


def shape_and_dtype(tensor):
    return tuple(tensor.shape), keras.backend.standardize_dtype(tensor.dtype)


def assert_same_structure(symbolic_outputs, eager_outputs):
    keras.tree.assert_same_structure(symbolic_outputs, eager_outputs)
    pairs = zip(keras.tree.flatten(symbolic_outputs), keras.tree.flatten(eager_outputs))
    for symbolic_tensor, eager_tensor in pairs:
        (symbolic_shape, symbolic_dtype) = shape_and_dtype(symbolic_tensor)
        (eager_shape, eager_dtype) = shape_and_dtype(eager_tensor)
        assert symbolic_dtype == eager_dtype
        assert len(symbolic_shape) == len(eager_shape), (symbolic_shape, eager_shape)
        for got, want in zip(symbolic_shape, eager_shape):
            assert got in (None, want), (symbolic_shape, eager_shape)


@pytest.mark.parametrize("case", sorted(CALLS))
def test_symbolic_call_returns_the_eager_structure(case):
    make, inputs, arguments = CALLS[case]
    layer = make()
    eager = layer(*inputs, **arguments)
    symbolic_inputs = keras.tree.map_structure(symbolic, inputs)
    assert_same_structure(layer(*symbolic_inputs, **arguments), eager)
