"""Run an export on another Keras backend, in a subprocess.

The model travels as a `.keras` file; the subprocess (`_worker`) loads it with the
other backend and writes the export. Used where this backend has no route of its
own: a torch model's SavedModel (Keras' route needs torch_xla) is written by
TensorFlow, and a TensorFlow or JAX model's ONNX file by torch.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import keras_attn
from keras_attn.export import _progress

# The package the backend's export needs, and the `pip install` that gives it.
_REQUIREMENTS = {
    "tensorflow": ("tensorflow", "tensorflow"),
    "torch": ("torch", "torch"),
}


def export_in_backend(backend, task, model, target, options, owner, verbose):
    """Write `model` as `.keras`, then export it to `target` on `backend`.

    Args:
        backend: `"tensorflow"` or `"torch"`.
        task: `"saved_model"` or `"onnx"` (see `_worker`).
        model: the model, on any backend.
        target: the directory or file the worker writes.
        options: JSON-serializable options of the task.
        owner: the function named in error messages.
        verbose: whether to print progress.
    """
    module, package = _REQUIREMENTS[backend]
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(
            f"{owner}: exporting a {keras_backend_name()}-backend model this way "
            f"runs Keras on the {backend} backend in a subprocess, but {module} "
            f"is not installed. Install it (`pip install {package}`)."
        )
    with tempfile.TemporaryDirectory(prefix="keras_attn_export-") as scratch:
        model_path = os.path.join(scratch, "model.keras")
        _progress.report(verbose, f"saving the model to {model_path}")
        model.save(model_path)
        options_path = os.path.join(scratch, "options.json")
        with open(options_path, "w") as file:
            json.dump(options, file)
        _progress.report(verbose, f"exporting on the {backend} backend (subprocess)")
        command = [
            sys.executable,
            "-m",
            "keras_attn.export._worker",
            task,
            model_path,
            os.fspath(target),
            options_path,
        ]
        result = subprocess.run(
            command, env=_environment(backend), capture_output=True, text=True
        )
    for line in result.stdout.splitlines():
        _progress.report(verbose, f"[{backend}] {line}")
    if result.returncode != 0:
        raise RuntimeError(
            f"{owner}: the {backend}-backend export subprocess failed "
            f"(exit status {result.returncode}):\n{_tail(result.stderr)}"
        )


def keras_backend_name():
    import keras

    return keras.backend.backend()


def _environment(backend):
    # The package root first, so the worker imports this keras_attn even when
    # it runs from a source checkout that is not installed.
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_attn.__file__)))
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": root if not path else root + os.pathsep + path,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }


def _tail(text, lines=30):
    return "\n".join(text.strip().splitlines()[-lines:])
