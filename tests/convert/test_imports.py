"""`import keras_attn` stays light: the converters' libraries load on use only."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_import_loads_no_converter_library():
    # JAX: the one backend that imports neither torch nor TensorFlow itself.
    code = (
        "import sys, keras_attn; "
        "print(sorted(m for m in ('torch', 'transformers', 'safetensors') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": "jax"},
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
