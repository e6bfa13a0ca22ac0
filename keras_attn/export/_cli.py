"""`keras-attn export MODEL.keras OUTDIR`: a `.keras` file to a SavedModel or ONNX.

`cli.py` calls `add_parser` to register the subcommand and `run` to execute it,
so the command's options live next to the exporters they drive. Keras fixes its
backend when it is imported, which starting the command already did, so
`--backend` runs the command again in a subprocess with `KERAS_BACKEND` set.

An expected failure (a missing package, a file that cannot be loaded, a model
that cannot be exported) prints one line and exits with status 1, and OUTDIR is
left as it was. The packages the format needs are checked before anything else.
"""

import os
import subprocess
import sys

import keras

from keras_attn.export import _keras_file
from keras_attn.export import _onnx
from keras_attn.export import _saved_model

_BACKENDS = ("tensorflow", "jax", "torch")
_FORMATS = ("saved_model", "onnx")
_ONNX_FILE = "model.onnx"


def add_parser(subparsers):
    """Adds the `export` subcommand to the `keras-attn` subparsers."""
    parser = subparsers.add_parser(
        "export",
        help="export a .keras model for serving (SavedModel or ONNX)",
        description=(
            "Export a .keras model as a TensorFlow SavedModel directory (OUTDIR) "
            f"or an ONNX file (OUTDIR/{_ONNX_FILE}), from any backend."
        ),
    )
    parser.add_argument("model", metavar="MODEL.keras", help="the model to export")
    parser.add_argument("outdir", metavar="OUTDIR", help="where to write the export")
    parser.add_argument("--format", choices=_FORMATS, default="saved_model")
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
        help="Keras backend to load the model with (default: KERAS_BACKEND)",
    )
    parser.add_argument(
        "--start-token-id",
        type=int,
        help="SavedModel: add a `generate` signature starting with this token",
    )
    parser.add_argument("--end-token-id", type=int, help="generation: end token")
    parser.add_argument(
        "--max-length", type=int, default=32, help="generation: output length"
    )
    parser.add_argument(
        "--platforms",
        default="cpu,cuda",
        help="JAX SavedModel: comma-separated platforms (default: cpu,cuda)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def run(args, argv):
    """Runs `keras-attn export` (`args` parsed from `argv`); returns the exit status."""
    if args.format == "onnx" and args.start_token_id is not None:
        return _fail(
            "--start-token-id is for --format saved_model (ONNX has no generate)"
        )
    try:
        if args.format == "onnx":
            _onnx.check_packages(verify=True)
        else:
            _saved_model.check_packages()
    except ImportError as error:
        return _fail(str(error))
    if args.backend and args.backend != keras.backend.backend():
        return _run_on(args.backend, argv)
    verbose = not args.quiet
    if verbose:
        print(f"keras-attn export: loading {args.model} ({keras.backend.backend()})")
    try:
        model = _keras_file.load_model(args.model)
    except ValueError as error:
        return _fail(str(error))
    try:
        if args.format == "onnx":
            path = os.path.join(args.outdir, _ONNX_FILE)
            _onnx.export_onnx(model, path, verbose=verbose)
        else:
            _saved_model.export_saved_model(
                model,
                args.outdir,
                platforms=tuple(args.platforms.split(",")),
                start_token_id=args.start_token_id,
                end_token_id=args.end_token_id,
                max_length=args.max_length,
                verbose=verbose,
            )
    except (ValueError, ImportError) as error:
        return _fail(f"cannot export {args.model}: {_one_line(error)}")
    except RuntimeError as error:  # a failed step; its message says which
        return _fail(f"cannot export {args.model}: {error}")
    return 0


def _run_on(backend, argv):
    environment = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", "keras_attn.cli", *argv]
    return subprocess.run(command, env=environment).returncode


def _one_line(error):
    return " ".join(str(error).split())


def _fail(message):
    print(f"keras-attn export: error: {message}", file=sys.stderr)
    return 1
