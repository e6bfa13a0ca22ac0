"""The tiny models of tests/_tiny_models.py with large random weights, and their
inputs, shared by the export tests.

Export is slow (a trace, a subprocess on torch), so each model is built once per
session, with one layer per stack. Random weights everywhere, so that no weight is
still at its initialiser (the ViT head starts at zero) and the comparisons mean
something; large, with untied output projections, so that greedy decoding picks
different tokens per step and per source (a trained tiny model repeats one token).
"""

import pytest

from tests import _tiny_models
from tests._tiny_models import PADDING_ID
from tests._tiny_models import TRANSFORMER
from tests._tiny_models import random_images
from tests._tiny_models import randomize
from tests._tiny_models import tiny_image_captioner
from tests._tiny_models import tiny_transformer
from tests._tiny_models import tiny_vision_transformer

VOCABULARY_SIZE = TRANSFORMER["vocabulary_size"]
CHANNELS = 3  # of every image model here, as `random_images` makes them
MAX_LENGTH = 6


def random_tokens(batch, length, seed=0):
    """Real tokens of the Transformer; the last row is padded after 2 tokens."""
    tokens = _tiny_models.random_tokens(batch, length, VOCABULARY_SIZE, seed)
    if batch > 1:
        tokens[-1, 2:] = PADDING_ID
    return tokens


def serving_inputs(name, batch):
    """The `serving_default` inputs of the "vit" or the "transformer" fixture."""
    if name == "vit":
        return {"images": random_images(batch, seed=batch)}
    return {
        "encoder_token_ids": random_tokens(batch, 6, seed=batch),
        "decoder_token_ids": random_tokens(batch, 4, seed=batch + 1),
    }


def _randomize(model, seed):
    return randomize(model, scale=0.5, seed=seed)


@pytest.fixture(scope="session")
def vit():
    return _randomize(tiny_vision_transformer(channels=CHANNELS), seed=1)


@pytest.fixture(scope="session")
def transformer():
    """It serves both the `serving_default` and the `generate` comparisons."""
    model = tiny_transformer(num_layers=1, tie_output_embeddings=False)
    return _randomize(model, seed=2)


@pytest.fixture(scope="session")
def captioner():
    model = tiny_image_captioner(
        encoder="vit", num_decoder_layers=1, tie_output_embeddings=False
    )
    return _randomize(model, seed=3)


@pytest.fixture(scope="session")
def language_model():
    """A CausalLM with a windowed layer (a ring cache inside `generate`)."""
    model = _tiny_models.tiny_causal_lm(
        vocabulary_size=VOCABULARY_SIZE, sliding_window=(2, None)
    )
    return _randomize(model, seed=4)


def prompts(batch, seed=0):
    """`(batch, 4)` right-padded prompts of lengths 4, 1, 3, 4, 1, ..."""
    tokens = _tiny_models.random_tokens(batch, 4, VOCABULARY_SIZE, seed)
    for row, length in zip(tokens, [4, 1, 3] * batch):
        row[length:] = PADDING_ID
    return tokens
