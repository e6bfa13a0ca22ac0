"""The `keras-attn` command.

`keras-attn export MODEL.keras OUTDIR --format saved_model|onnx [--backend B]`
exports a `.keras` file for serving (`keras_attn.export`).

`keras-attn convert SRC OUT.keras` converts a ViT or GPT-2 checkpoint
(`keras_attn.convert`).

Each subcommand's options and code live next to the package it drives
(`keras_attn/export/_cli.py`, `keras_attn/convert/_cli.py`); this module puts them
together.
"""

import argparse
import sys

from keras_attn._version import __version__
from keras_attn.convert import _cli as convert_cli
from keras_attn.export import _cli as export_cli


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-attn",
        description="Attention layers and Transformers for Keras 3.",
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-attn {__version__}"
    )
    commands = parser.add_subparsers(dest="command")
    export_cli.add_parser(commands)
    convert_cli.add_parser(commands)
    return parser


def main(argv=None):
    """Entry point of the `keras-attn` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        return export_cli.run(args, argv)
    if args.command == "convert":
        return convert_cli.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
