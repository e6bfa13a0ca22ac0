"""Write the `.keras` compatibility fixtures: one small model per kind and backend.

    python -m tests.compat.make_fixtures VERSION [BACKEND [KIND ...]]

runs itself once per backend in a subprocess (Keras fixes its backend at import) and
writes `fixtures/VERSION/{kind}_{backend}.keras`, with the inputs and the outputs
that version computed in `{kind}_{backend}.npz`. Fixtures are written once, by the
version they are named after, and never rewritten: `test_saved_fixtures.py` checks
that every later version loads them and computes the same outputs.

The models are tiny (a few thousand weights each) but cover every layer kind:
multi-head (grouped-query, rotary) attention, the encoder and decoder blocks, every
position embedding, and the three ready models (the image models hold the patch
embedding, shifted patches included).
"""

import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
BACKENDS = ("tensorflow", "jax", "torch")
KINDS = (
    "layers",
    "transformer",
    "vision_transformer",
    "image_captioner_vit",
    "image_captioner_cnn",
)


def make_inputs(kind):
    """Deterministic inputs of each kind; padded token rows end in the padding id 0."""
    rng = np.random.default_rng(7)
    tokens = rng.integers(1, 20, size=(2, 6)).astype("int32")
    tokens[0, 4:] = 0
    images = rng.uniform(size=(2, 8, 8, 3)).astype("float32")
    if kind == "layers":
        return {"token_ids": tokens}
    if kind == "transformer":
        target = rng.integers(1, 20, size=(2, 5)).astype("int32")
        target[1, 3:] = 0
        return {"encoder_token_ids": tokens, "decoder_token_ids": target}
    if kind == "vision_transformer":
        return {"images": images}
    return {"images": images, "decoder_token_ids": tokens[:, :5]}


def model_inputs(inputs):
    """What `predict` takes: the dict of named inputs, or a single model's one array."""
    return inputs if len(inputs) > 1 else next(iter(inputs.values()))


def build_model(kind):
    import keras

    from keras_attn import layers
    from keras_attn import models

    keras.utils.set_random_seed(1)
    if kind == "transformer":
        return models.Transformer(
            vocabulary_size=20, num_layers=1, hidden_dim=16, intermediate_dim=32,
            num_heads=2, dropout=0.0,
        )  # fmt: skip
    if kind == "vision_transformer":
        model = models.VisionTransformer(
            image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
            mlp_dim=32, num_classes=3, shifted_patches=True,
        )  # fmt: skip
        # The head starts at zero (as in the paper), which would hide the rest.
        head = model.get_layer("head")
        head.kernel.assign(keras.random.normal(head.kernel.shape, seed=2))
        return model
    if kind.startswith("image_captioner"):
        return models.ImageCaptioner(
            vocabulary_size=20, image_size=8, encoder=kind.rsplit("_", 1)[1],
            patch_size=4,
            num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16,
            intermediate_dim=32, num_heads=2, dropout=0.0,
        )  # fmt: skip
    # Every layer in one functional model, the mask from `mask_zero` included.
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(20, 16, mask_zero=True)(token_ids)
    x = keras.layers.Add()([x, layers.SinusoidalPositionEmbedding()(x)])
    x = keras.layers.Add()([x, layers.PositionEmbedding(sequence_length=8)(x)])
    x = layers.TransformerEncoder(32, 2, num_key_value_heads=1)(x)
    y = layers.TransformerDecoder(32, 2, normalize_first=True)(x)
    attention = layers.MultiHeadAttention(
        num_heads=2, key_dim=8, rotary_embedding=layers.RotaryEmbedding()
    )
    y = attention(y, y, use_causal_mask=True)
    return keras.Model(token_ids, y)


def write(version, backend, kinds=KINDS):
    import keras

    folder = HERE / "fixtures" / version
    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        model = build_model(kind)
        inputs = make_inputs(kind)
        outputs = keras.ops.convert_to_numpy(
            model.predict(model_inputs(inputs), verbose=0)
        )
        model.save(folder / f"{kind}_{backend}.keras")
        np.savez(folder / f"{kind}_{backend}.npz", outputs=outputs, **inputs)
        print(f"{folder.name}/{kind}_{backend}: outputs {outputs.shape}")


def main():
    version = sys.argv[1]
    if len(sys.argv) > 2:
        return write(version, sys.argv[2], sys.argv[3:] or KINDS)
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend)
        subprocess.run(
            [sys.executable, "-m", "tests.compat.make_fixtures", version, backend],
            check=True,
            env=env,
            cwd=HERE.parents[1],
        )


if __name__ == "__main__":
    main()
