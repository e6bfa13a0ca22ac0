"""The `keras-attn` command.

`keras-attn export MODEL.keras OUTDIR --format saved_model|onnx [--backend B]`
loads a `.keras` file and exports it with `keras_attn.export`. Keras fixes its
backend when it is imported, which importing this module already did, so
`--backend` runs the command again in a subprocess with `KERAS_BACKEND` set.

`keras-attn convert SRC OUT.keras` converts a ViT checkpoint (`keras_attn.convert`).
"""

import argparse
import os
import subprocess
import sys

from keras_attn import __version__
from keras_attn.convert import _cli as convert_cli

_BACKENDS = ("tensorflow", "jax", "torch")
_FORMATS = ("saved_model", "onnx")
_ONNX_FILE = "model.onnx"


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-attn",
        description="Attention layers and Transformers for Keras 3.",
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-attn {__version__}"
    )
    commands = parser.add_subparsers(dest="command")
    export = commands.add_parser(
        "export",
        help="export a .keras model for serving (SavedModel or ONNX)",
        description=(
            "Export a .keras model as a TensorFlow SavedModel directory (OUTDIR) "
            f"or an ONNX file (OUTDIR/{_ONNX_FILE}), from any backend."
        ),
    )
    export.add_argument("model", metavar="MODEL.keras", help="the model to export")
    export.add_argument("outdir", metavar="OUTDIR", help="where to write the export")
    export.add_argument("--format", choices=_FORMATS, default="saved_model")
    export.add_argument(
        "--backend",
        choices=_BACKENDS,
        help="Keras backend to load the model with (default: KERAS_BACKEND)",
    )
    export.add_argument(
        "--start-token-id",
        type=int,
        help="SavedModel: add a `generate` signature starting with this token",
    )
    export.add_argument("--end-token-id", type=int, help="generation: end token")
    export.add_argument(
        "--max-length", type=int, default=32, help="generation: output length"
    )
    export.add_argument(
        "--platforms",
        default="cpu,cuda",
        help="JAX SavedModel: comma-separated platforms (default: cpu,cuda)",
    )
    export.add_argument("--quiet", action="store_true", help="no progress lines")
    convert_cli.add_parser(commands)
    return parser


def main(argv=None):
    """Entry point of the `keras-attn` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        return _export(args, argv)
    if args.command == "convert":
        return convert_cli.run(args)
    parser.print_help()
    return 0


def _export(args, argv):
    import keras

    if args.backend and args.backend != keras.backend.backend():
        environment = {**os.environ, "KERAS_BACKEND": args.backend}
        command = [sys.executable, "-m", "keras_attn.cli", *argv]
        return subprocess.run(command, env=environment).returncode
    if args.format == "onnx" and args.start_token_id is not None:
        return _fail(
            "--start-token-id is for --format saved_model (ONNX has no generate)"
        )
    from keras_attn import export
    from keras_attn.export import _keras_file

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
            export.export_onnx(model, path, verbose=verbose)
        else:
            export.export_saved_model(
                model,
                args.outdir,
                platforms=tuple(args.platforms.split(",")),
                start_token_id=args.start_token_id,
                end_token_id=args.end_token_id,
                max_length=args.max_length,
                verbose=verbose,
            )
    except Exception as error:
        return _fail(f"cannot export {args.model}: {error}")
    return 0


def _fail(message):
    print(f"keras-attn export: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
