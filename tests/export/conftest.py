"""Tiny models trained for a few steps, shared by the export tests.

Export is slow (a trace, a subprocess on torch), so each model is built and
trained once per session. Trained, so that no weight is still at its
initialiser (the ViT head starts at zero) and the comparisons mean something.
"""

import keras
import numpy as np
import pytest

from keras_attn.models import ImageCaptioner
from keras_attn.models import Transformer
from keras_attn.models import VisionTransformer

VOCABULARY_SIZE = 20
PADDING_ID, START_ID, END_ID = 0, 1, 2
IMAGE_SIZE, CHANNELS, NUM_CLASSES = 8, 3, 5
MAX_LENGTH = 6
TINY = {"num_heads": 2, "hidden_dim": 16}


def random_images(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype("float32")


def random_tokens(batch, length, seed=0):
    """Real tokens (ids 3 and up); the last row is padded after 2 tokens."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCABULARY_SIZE, size=(batch, length)).astype("int32")
    if batch > 1:
        tokens[-1, 2:] = PADDING_ID
    return tokens


def _train(model, inputs, labels):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(inputs, labels, batch_size=4, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="session")
def vit():
    keras.utils.set_random_seed(1)
    model = VisionTransformer(
        image_size=IMAGE_SIZE,
        patch_size=4,
        num_layers=1,
        mlp_dim=32,
        num_classes=NUM_CLASSES,
        channels=CHANNELS,
        **TINY,
    )
    labels = np.arange(12) % NUM_CLASSES
    return _train(model, random_images(12), labels)


@pytest.fixture(scope="session")
def transformer():
    keras.utils.set_random_seed(2)
    model = Transformer(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=1,
        intermediate_dim=32,
        dropout=0.0,
        tie_output_embeddings=False,
        **TINY,
    )
    return _randomize(model, seed=3)
    source, target = random_tokens(12, 7), random_tokens(12, 5, seed=1)
    inputs = {"encoder_token_ids": source, "decoder_token_ids": target[:, :-1]}
    return _train(model, inputs, target[:, 1:])


def _randomize(model, seed):
    """Large random weights and an untied output projection: greedy decoding
    then picks different tokens per step and per source (a trained tiny model
    repeats one token)."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(0.5 * rng.normal(size=weight.shape).astype("float32"))
    return model


@pytest.fixture(scope="session")
def translator():
    """Untrained: it serves the `generate` comparison."""
    keras.utils.set_random_seed(4)
    model = Transformer(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=1,
        intermediate_dim=32,
        dropout=0.0,
        tie_output_embeddings=False,
        **TINY,
    )
    return _randomize(model, seed=4)


@pytest.fixture(scope="session")
def captioner():
    """Untrained: it serves the `generate` comparison."""
    keras.utils.set_random_seed(3)
    model = ImageCaptioner(
        vocabulary_size=VOCABULARY_SIZE,
        image_size=IMAGE_SIZE,
        channels=CHANNELS,
        encoder="vit",
        patch_size=4,
        num_encoder_layers=1,
        num_decoder_layers=1,
        intermediate_dim=32,
        dropout=0.0,
        tie_output_embeddings=False,
        **TINY,
    )
    return _randomize(model, seed=3)
