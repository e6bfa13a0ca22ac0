"""Tiny models and their inputs, shared by the model and generation tests.

`tiny_transformer`, `tiny_vision_transformer` and `tiny_image_captioner` build a
model of the tiny configuration below with some arguments replaced. `shared(...)`
returns one model per configuration for the whole test session, built with a fixed
seed (so its weights do not depend on which test asked first): use it only in tests
that do not train, reassign or otherwise change the model. JAX compiles every
eager op once per shape, so the inputs below keep to a few shapes.
"""

import functools

import keras
import numpy as np

from keras_attn.models import CausalLM
from keras_attn.models import ImageCaptioner
from keras_attn.models import Transformer
from keras_attn.models import VisionTransformer
from tests._keras_private import global_state

PADDING_ID, START_ID, END_ID = 0, 1, 2
FIRST_REAL_TOKEN = 3  # ids below are padding, start and end

TRANSFORMER = {
    "vocabulary_size": 11,
    "num_layers": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "num_heads": 2,
}
# 8x8 single-channel images in 2x2 patches: a 4x4 grid, 17 tokens with the class token.
VISION_TRANSFORMER = {
    "image_size": 8,
    "patch_size": 2,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "mlp_dim": 32,
    "num_classes": 5,
    "channels": 1,
}
# 8x8 RGB images in 2x2 patches: 16 image tokens.
IMAGE_CAPTIONER = {
    "vocabulary_size": 13,
    "image_size": 8,
    "patch_size": 2,
    "num_encoder_layers": 1,
    "num_decoder_layers": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "num_heads": 2,
    "dropout": 0.0,
}
_CONFIGS = {
    Transformer: TRANSFORMER,
    VisionTransformer: VISION_TRANSFORMER,
    ImageCaptioner: IMAGE_CAPTIONER,
}


def tiny_transformer(**overrides):
    return Transformer(**{**TRANSFORMER, **overrides})


def tiny_vision_transformer(**overrides):
    return VisionTransformer(**{**VISION_TRANSFORMER, **overrides})


def tiny_image_captioner(**overrides):
    return ImageCaptioner(**{**IMAGE_CAPTIONER, **overrides})


def shared(model_class, randomized=False, **overrides):
    """One `model_class` of the tiny configuration with `overrides`, per session.

    `randomized`: weights replaced by `randomize(model)` (non-zero everywhere).
    Do not change the model it returns: other tests share it.
    """
    return _shared(model_class, randomized, tuple(sorted(overrides.items())))


@functools.cache
def _shared(model_class, randomized, overrides):
    keras.utils.set_random_seed(1234)
    model = model_class(**{**_CONFIGS[model_class], **dict(overrides)})
    return randomize(model) if randomized else model


def randomize(model, scale=0.3, seed=1):
    """Random normal weights everywhere (the ViT head and class token start at
    zero), large enough that greedy and beam choices differ between inputs."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(scale * rng.normal(size=weight.shape).astype("float32"))
    return model


def random_tokens(batch, length, vocabulary_size, seed=0):
    """Real tokens only (ids from `FIRST_REAL_TOKEN`), int32 `(batch, length)`."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(FIRST_REAL_TOKEN, vocabulary_size, size=(batch, length))
    return tokens.astype("int32")


def random_images(batch, size=8, channels=3, seed=0):
    """Uniform pixels in [0, 1), float32 `(batch, size, size, channels)`."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch, size, size, channels)).astype("float32")


def build_without_allocating(make_model):
    """A model whose variables are never materialised (shapes and config only).

    Variables created in a `StatelessScope` keep only their shape; with
    `initialize_variables=False` they are never initialised, and restoring Keras'
    list of pending variables keeps a later scope exit from doing so (the big
    presets would otherwise allocate gigabytes and take minutes to initialise).
    """
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return make_model()
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


# GQA (4 query, 2 key/value heads of 4 features) and 8 learned positions.
CAUSAL_LM = {
    "vocabulary_size": 11,
    "num_layers": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "num_heads": 4,
    "num_key_value_heads": 2,
    "max_sequence_length": 8,
    "dropout": 0.0,
}
_CONFIGS[CausalLM] = CAUSAL_LM


def tiny_causal_lm(**overrides):
    return CausalLM(**{**CAUSAL_LM, **overrides})
