"""Tiny models and data shared by the distribution tests: the layout-map tests and
the scenarios (each runs in its own process; see test_engines.py). Fixed data, no
dropout: a step computes the same on one device and on many, up to the order of
floating-point reductions."""

import keras
import numpy as np

from tests._tiny_models import tiny_causal_lm
from tests._tiny_models import tiny_transformer
from tests._tiny_models import tiny_vision_transformer

BATCH = 16
STEPS = 3
HEADS = 4  # they divide over the model axis of the (2, 4) mesh
NUM_CLASSES = 10
VOCABULARY_SIZE = 24


def vision_transformer():
    """2 blocks: 15 sharded variables."""
    return tiny_vision_transformer(
        num_layers=2, num_heads=HEADS, num_classes=NUM_CLASSES
    )


def three_heads_vision_transformer():
    """3 heads of 4 features: they do not divide over a model axis of 4."""
    return tiny_vision_transformer(
        num_heads=3, hidden_dim=12, mlp_dim=24, num_classes=NUM_CLASSES
    )


def transformer(**overrides):
    """1 encoder and 1 decoder block and the shared token embedding: 17 sharded
    variables."""
    return tiny_transformer(
        **{
            "vocabulary_size": VOCABULARY_SIZE,
            "num_layers": 1,
            "num_heads": HEADS,
            "dropout": 0.0,
            **overrides,
        }
    )


def vision_data(batch=BATCH):
    rng = np.random.default_rng(0)
    images = rng.random((batch, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=(batch,)).astype("int32")
    return images, labels


def translation_data(batch=BATCH):
    """Source (B, 6) and target (B, 5) tokens, some padded with 0."""
    rng = np.random.default_rng(1)
    source = rng.integers(3, VOCABULARY_SIZE, size=(batch, 6)).astype("int32")
    source[::3, 4:] = 0
    target = rng.integers(3, VOCABULARY_SIZE, size=(batch, 6)).astype("int32")
    target[:, 0] = 1
    inputs = {"encoder_token_ids": source, "decoder_token_ids": target[:, :-1]}
    return inputs, target[:, 1:]


def fit_losses(model, data):
    """The loss of each of `STEPS` Adam steps on the whole of `data`, in order."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(*data, batch_size=BATCH, epochs=STEPS, shuffle=False, verbose=0)
    return history.history["loss"]


def causal_lm(**overrides):
    """2 blocks of 8 query and 4 key/value heads, learned positions and an output
    matrix of its own: 15 sharded variables."""
    return tiny_causal_lm(
        **{
            "vocabulary_size": VOCABULARY_SIZE,
            "num_heads": 2 * HEADS,
            "num_key_value_heads": HEADS,
            "tie_output_embeddings": False,
            **overrides,
        }
    )


def language_data(batch=BATCH):
    """Token ids (B, 6) and their next tokens, some rows ending in padding."""
    rng = np.random.default_rng(2)
    tokens = rng.integers(3, VOCABULARY_SIZE, size=(batch, 7)).astype("int32")
    tokens[::3, 5:] = 0
    return {"token_ids": tokens[:, :-1]}, tokens[:, 1:]
