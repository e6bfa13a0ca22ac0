"""Train a small Vision Transformer on digits with keras_attn; save, export, serve it.

The model is built from keras_attn layers with the functional API:
PatchEmbedding -> TransformerEncoder x N -> LayerNormalization -> class token -> Dense.
It runs on whichever backend `KERAS_BACKEND` names:

    KERAS_BACKEND=jax python examples/demo.py            # full run, ~0.97+ accuracy
    KERAS_BACKEND=torch python examples/demo.py --quick  # 1 short epoch, smoke test

Steps: train with `model.fit`, report test accuracy, save `digits_vit.keras`, export a
TensorFlow SavedModel (directly on TensorFlow and JAX; on PyTorch from the `.keras`
file in a `KERAS_BACKEND=tensorflow` subprocess), then load the SavedModel in a
subprocess that imports TensorFlow only and check that it serves the same predictions.
The last line printed is `RESULT test_accuracy=... seconds=...`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

_START = time.perf_counter()
import _environment  # noqa: E402, F401  (before Keras picks its backend)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_attn import layers  # noqa: E402

SEED = 0
NUM_CLASSES = 10
MAX_SERVE_DIFF = 1e-4

# Run by a TensorFlow-backend Python: load the `.keras` file, export a SavedModel.
_EXPORT_SCRIPT = """
import sys
import keras
import keras_attn  # registers the layers for deserialization
model = keras.saving.load_model(sys.argv[1])
model.export(sys.argv[2], format="tf_saved_model", verbose=False)
"""

# Run by a Python that imports TensorFlow only: serving must not need keras_attn.
_SERVE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
path, inputs, outputs = sys.argv[1:4]
loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
served = loaded.serve(tf.constant(np.load(inputs)))
np.save(outputs, np.asarray(served))
if "keras_attn" in sys.modules:
    sys.exit("keras_attn was imported while serving")
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one short epoch (a smoke test)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=3, help="encoder blocks")
    parser.add_argument(
        "--output", default=None, help="where to write the model (default: temp dir)"
    )
    return parser.parse_args(argv)


def load_data():
    """Digits as (N, 8, 8, 1) float32 images in [0, 1]; stratified 80/20 split."""
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    return train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=SEED
    )


def build_model(num_layers):
    images = keras.Input(shape=(8, 8, 1), name="images")
    x = layers.PatchEmbedding(patch_size=2, hidden_dim=64)(images)  # (B, 1 + 16, 64)
    for _ in range(num_layers):
        x = layers.TransformerEncoder(
            intermediate_dim=128, num_heads=4, dropout=0.1, normalize_first=True
        )(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    class_token = x[:, 0]  # (B, 64)
    logits = keras.layers.Dense(NUM_CLASSES, name="head")(class_token)
    return keras.Model(images, logits, name="digits_vit")


def train(model, x_train, y_train, epochs, batch_size, steps_per_epoch=None):
    # A ViT has no convolutional prior and digits has 1,437 training images: weight
    # decay and label smoothing are what keep it from memorising them.
    steps = steps_per_epoch or -(-len(x_train) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=2e-3,
        warmup_steps=max(1, steps * epochs // 10),
        decay_steps=max(1, steps * epochs),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.05),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=0.1
        ),
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        np.eye(NUM_CLASSES, dtype="float32")[y_train],  # one-hot, for smoothing
        batch_size=batch_size,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=True,
        # A progress bar on a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )


def _run(args, backend=None):
    env = dict(os.environ)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    result = subprocess.run(
        [sys.executable, "-c", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"subprocess failed:\n{result.stdout}\n{result.stderr}")


def export_saved_model(model, keras_path, export_dir):
    """TensorFlow and JAX export directly; PyTorch goes through the `.keras` file."""
    if keras.backend.backend() in ("tensorflow", "jax"):
        model.export(export_dir, format="tf_saved_model", verbose=False)
    else:
        _run([_EXPORT_SCRIPT, keras_path, export_dir], backend="tensorflow")


def serve_diff(export_dir, x, expected, workdir):
    """Max abs difference between Keras and the SavedModel served by TensorFlow."""
    inputs = os.path.join(workdir, "serve_inputs.npy")
    outputs = os.path.join(workdir, "serve_outputs.npy")
    np.save(inputs, x)
    _run([_SERVE_SCRIPT, export_dir, inputs, outputs])
    return float(np.max(np.abs(np.load(outputs) - expected)))


def run(args, output_dir):
    keras.utils.set_random_seed(SEED)
    x_train, x_test, y_train, y_test = load_data()
    print(
        f"backend: {keras.backend.backend()}, train {len(x_train)}, test {len(x_test)}"
    )

    model = build_model(args.num_layers)
    model.summary()
    if args.quick:
        train(
            model,
            x_train,
            y_train,
            epochs=1,
            batch_size=args.batch_size,
            steps_per_epoch=5,
        )
    else:
        train(model, x_train, y_train, args.epochs, args.batch_size)

    logits = model.predict(x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_test))
    print(f"test accuracy: {accuracy:.4f}")

    keras_path = os.path.join(output_dir, "digits_vit.keras")
    model.save(keras_path)
    restored = keras.saving.load_model(keras_path)
    reload_diff = float(np.max(np.abs(restored.predict(x_test, verbose=0) - logits)))
    print(f"saved {keras_path} (reloaded, max abs diff {reload_diff:.2e})")

    export_dir = os.path.join(output_dir, "digits_vit_saved_model")
    export_saved_model(model, keras_path, export_dir)
    diff = serve_diff(export_dir, x_test, logits, output_dir)
    print(f"exported {export_dir}; TensorFlow serving max abs diff {diff:.2e}")
    if not diff < MAX_SERVE_DIFF or not reload_diff < MAX_SERVE_DIFF:
        sys.exit(f"exported model disagrees with Keras (limit {MAX_SERVE_DIFF})")
    return accuracy


def main(argv=None):
    args = parse_args(argv)
    if args.output is None:
        with tempfile.TemporaryDirectory(prefix="keras_attn_demo_") as output_dir:
            accuracy = run(args, output_dir)
    else:
        os.makedirs(args.output, exist_ok=True)
        accuracy = run(args, args.output)
    seconds = time.perf_counter() - _START
    print(f"RESULT test_accuracy={accuracy:.3f} seconds={seconds:.0f}")


if __name__ == "__main__":
    main()
