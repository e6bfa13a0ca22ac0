"""A `.keras` file saved on one backend loads on another with identical outputs.

Each backend's run saves the file and loads it on the next backend of the cycle
TensorFlow -> JAX -> torch -> TensorFlow (a subprocess each), so the three runs
together save on every backend and load on every backend; the fixtures of
`tests/compat/` saved by earlier versions load on all three.
"""

import os
import subprocess
import sys

import keras
import numpy as np

from keras_attn import layers

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _every_layer_model():
    """A small functional model that exercises every keras_attn layer."""
    images = keras.Input((8, 8, 1), name="images")
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")

    patches = layers.PatchEmbedding(patch_size=4, hidden_dim=16)(images)
    patches = layers.TransformerEncoder(32, 4, normalize_first=True)(patches)

    embed = keras.layers.Embedding(50, 16, mask_zero=True)
    x = embed(source)
    x = keras.layers.Add()([x, layers.SinusoidalPositionEmbedding()(x)])
    x = layers.TransformerEncoder(32, 4)(x)
    encoded = keras.layers.Concatenate(axis=1)([patches, x])

    y = embed(target)
    y = keras.layers.Add()([y, layers.PositionEmbedding(sequence_length=16)(y)])
    y = layers.TransformerDecoder(32, 4, num_key_value_heads=2)(y, encoded)
    rotary = layers.RotaryEmbedding()
    y = layers.MultiHeadAttention(4, 4, rotary_embedding=rotary)(
        y, y, use_causal_mask=True
    )
    logits = keras.layers.Dense(50, name="logits")(y)
    return keras.Model([images, source, target], logits)


def _inputs():
    rng = np.random.default_rng(0)
    source = rng.integers(1, 50, size=(3, 6)).astype("int32")
    source[1, 4:] = 0
    target = rng.integers(1, 50, size=(3, 5)).astype("int32")
    target[2, 3:] = 0
    images = rng.random((3, 8, 8, 1)).astype("float32")
    return {"images": images, "source": source, "target": target}


def test_keras_file_loads_on_the_next_backend_with_same_outputs(tmp_path):
    other = BACKENDS[(BACKENDS.index(keras.backend.backend()) + 1) % len(BACKENDS)]
    model = _every_layer_model()
    inputs = _inputs()
    expected = keras.ops.convert_to_numpy(model.predict(inputs, verbose=0))
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "inputs.npz", **inputs)

    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.cross_backend_predict",
            str(tmp_path / "model.keras"),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    actual = np.load(tmp_path / "outputs.npz")["output"]
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)
