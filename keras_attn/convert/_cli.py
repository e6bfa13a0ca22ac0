"""`keras-attn convert SRC OUT.keras`: a foreign checkpoint to a `.keras` file.

`cli.py` calls `add_parser` to register the subcommand and `run` to execute it,
so the command's options live next to the converters they drive.
"""

import os
import sys

from keras_attn.convert.huggingface_vit import vit_from_huggingface
from keras_attn.convert.original_vit import vit_from_npz

_FORMATS = ("auto", "huggingface", "npz")


def add_parser(subparsers):
    """Adds the `convert` subcommand to the `keras-attn` subparsers."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a ViT checkpoint (Hugging Face or original .npz) to .keras",
        description=(
            "Convert a Hugging Face ViT checkpoint (a directory with config.json "
            "and model.safetensors, or a .safetensors file beside its config.json) "
            "or an original ViT .npz file to a keras_attn VisionTransformer saved "
            "as OUT.keras. Every tensor's name and shape is checked; pickle files "
            "are refused."
        ),
    )
    parser.add_argument("source", metavar="SRC", help="checkpoint file or directory")
    parser.add_argument("output", metavar="OUT.keras", help="the .keras file to write")
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        default="auto",
        help="checkpoint format (default: auto, .npz is original ViT)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="image size to build the model for (position table resampled)",
    )
    return parser


def _format(args):
    if args.format != "auto":
        return args.format
    return "npz" if args.source.lower().endswith(".npz") else "huggingface"


def run(args):
    """Runs `keras-attn convert`; returns the exit status."""
    if not args.output.endswith(".keras"):
        return _fail(f"OUT.keras must end with .keras; received {args.output!r}")
    if not os.path.exists(args.source):
        return _fail(f"no such file or directory: {args.source!r}")
    converter = {
        "huggingface": vit_from_huggingface,
        "npz": vit_from_npz,
    }[_format(args)]
    try:
        model = converter(args.source, image_size=args.image_size)
    except ValueError as error:
        return _fail(str(error))
    model.save(args.output)
    print(
        f"keras-attn convert: wrote {args.output} ({model.count_params():,} "
        f"parameters, image size {model.image_size})"
    )
    return 0


def _fail(message):
    print(f"keras-attn convert: error: {message}", file=sys.stderr)
    return 1
