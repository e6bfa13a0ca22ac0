"""Tiny models and data shared by the distribution scenarios (each runs in its own
process; see test_engines.py). Fixed data, no dropout: a step computes the same on
one device and on many, up to the order of floating-point reductions."""

import numpy as np

BATCH = 16
STEPS = 3


def vision_transformer():
    from keras_attn.models import VisionTransformer

    return VisionTransformer(
        image_size=8,
        patch_size=2,
        num_layers=2,
        num_heads=4,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=10,
        channels=1,
    )


def transformer():
    from keras_attn.models import Transformer

    return Transformer(
        vocabulary_size=24,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=4,
        dropout=0.0,
    )


def vision_data(batch=BATCH):
    rng = np.random.default_rng(0)
    images = rng.random((batch, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, 10, size=(batch,)).astype("int32")
    return images, labels


def translation_data(batch=BATCH):
    """Source (B, 6) and target (B, 5) tokens, some padded with 0."""
    rng = np.random.default_rng(1)
    source = rng.integers(3, 24, size=(batch, 6)).astype("int32")
    source[::3, 4:] = 0
    target = rng.integers(3, 24, size=(batch, 6)).astype("int32")
    target[:, 0] = 1
    inputs = {"encoder_token_ids": source, "decoder_token_ids": target[:, :-1]}
    return inputs, target[:, 1:]


def compile_model(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
