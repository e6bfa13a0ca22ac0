"""The keras_attn demo: train a ViT on digits, export it, serve it with TensorFlow.

1. Train `keras_attn.models.VisionTransformer` on scikit-learn's digits with
   `model.fit` and print its test accuracy (`vit_digits.py`: the recipe, the
   `.keras` save and reload check).
2. Export a TensorFlow SavedModel with `keras_attn.export.export_saved_model`,
   from whichever backend `KERAS_BACKEND` names.
3. Serve it in a fresh Python where importing `keras` or `keras_attn` fails, as on
   a TensorFlow Serving host, and check that it predicts what Keras predicts.

    KERAS_BACKEND=jax python examples/demo.py            # full run
    KERAS_BACKEND=torch python examples/demo.py --quick  # a few steps, smoke test

Takes `vit_digits.py`'s options. The last line printed is
`RESULT test_accuracy=... serve_max_abs_diff=... seconds=...`.
"""

import os
import subprocess
import sys
import time

_START = time.perf_counter()
import _environment  # noqa: E402, F401  (before Keras picks its backend)
import numpy as np  # noqa: E402
import vit_digits  # noqa: E402

from keras_attn.export import export_saved_model  # noqa: E402

MAX_SERVE_DIFF = 1e-4

# Run by a Python that may import TensorFlow only: serving must not need Keras.
_SERVE_SCRIPT = """
import sys
for name in ("keras", "keras_attn"):
    sys.modules[name] = None  # `import keras` now fails
import numpy as np
import tensorflow as tf
path, inputs, outputs = sys.argv[1:4]
loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
serve = loaded.signatures["serving_default"]
np.save(outputs, serve(images=tf.constant(np.load(inputs)))["outputs"].numpy())
"""


def serve_max_abs_diff(export_dir, images, expected):
    """Max |SavedModel served by TensorFlow alone - Keras| over `images`."""
    inputs = os.path.join(export_dir, "..", "serve_inputs.npy")
    outputs = os.path.join(export_dir, "..", "serve_outputs.npy")
    np.save(inputs, images)
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_SCRIPT, export_dir, inputs, outputs],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"serving the SavedModel failed:\n{result.stderr}")
    return float(np.max(np.abs(np.load(outputs) - expected)))


def main(argv=None):
    args = vit_digits.parse_args(argv)
    model, keras_path, accuracy, logits = vit_digits.train_and_save(args)

    export_dir = os.path.join(args.output, "vit_digits_saved_model")
    export_saved_model(model, export_dir, platforms=("cpu",))
    _, x_test, _, _ = vit_digits.load_data()
    diff = serve_max_abs_diff(export_dir, x_test, logits)
    print(f"served {export_dir} with TensorFlow alone: max abs diff {diff:.1e}")
    if not diff < MAX_SERVE_DIFF:
        sys.exit(f"the SavedModel disagrees with Keras (limit {MAX_SERVE_DIFF})")

    seconds = time.perf_counter() - _START
    print(
        f"RESULT test_accuracy={accuracy:.3f} serve_max_abs_diff={diff:.1e} "
        f"seconds={seconds:.0f}"
    )


if __name__ == "__main__":
    main()
