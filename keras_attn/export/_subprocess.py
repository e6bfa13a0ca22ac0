"""Run an export on another Keras backend, in a subprocess.

The model travels as a `.keras` file; the subprocess (`_worker`) loads it with the
other backend and writes the export. Used where this backend has no route of its
own: a torch model's SavedModel (Keras' route needs torch_xla) is written by
TensorFlow, and a TensorFlow or JAX model's ONNX file by torch. The route that
calls this has checked that the other backend is installed.
"""

import json
import os
import subprocess
import sys
import tempfile

from keras_attn.export import _staging

# The worker's exit status when it refuses the model (a `ValueError`, whose
# message is its last line on stderr); any other failure exits with 1.
REFUSED = 2
# The folder that holds the `keras_attn` package.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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

    Raises:
        ValueError: the worker refused the model (its one-line reason).
        RuntimeError: the worker failed otherwise; the message ends with the
            last lines it wrote on stderr.
    """
    with tempfile.TemporaryDirectory(prefix="keras_attn_export-") as scratch:
        model_path = os.path.join(scratch, "model.keras")
        _staging.report(verbose, f"saving the model to {model_path}")
        model.save(model_path)
        options_path = os.path.join(scratch, "options.json")
        with open(options_path, "w") as file:
            json.dump(options, file)
        _staging.report(verbose, f"exporting on the {backend} backend (subprocess)")
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
        _staging.report(verbose, f"[{backend}] {line}")
    if result.returncode == REFUSED:
        reason = result.stderr.strip().splitlines()[-1]
        raise ValueError(
            f"{owner}: the {backend}-backend export refused the model: {reason}"
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"{owner}: the {backend}-backend export subprocess failed "
            f"(exit status {result.returncode}):\n{_tail(result.stderr)}"
        )


def _environment(backend):
    # The package root first, so the worker imports this keras_attn even when
    # it runs from a source checkout that is not installed.
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": _ROOT if not path else _ROOT + os.pathsep + path,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }


def _tail(text, lines=30):
    return "\n".join(text.strip().splitlines()[-lines:])
