"""`keras-attn convert SRC OUT.keras`: a foreign checkpoint to a `.keras` file.

`cli.py` calls `add_parser` to register the subcommand and `run` to execute it,
so the command's options live next to the converters they drive. A Hugging Face
checkpoint is a ViT or, when its `config.json` says `"model_type": "gpt2"`, a
GPT-2 (a `CausalLM`).
"""

import json
import os
import sys

from keras_attn.convert.huggingface_gpt2 import causal_lm_from_huggingface
from keras_attn.convert.huggingface_vit import vit_from_huggingface
from keras_attn.convert.original_vit import vit_from_npz

_FORMATS = ("auto", "huggingface", "npz")


def add_parser(subparsers):
    """Adds the `convert` subcommand to the `keras-attn` subparsers."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a ViT (Hugging Face or original .npz) or Hugging Face "
        "GPT-2 checkpoint to .keras",
        description=(
            "Convert a Hugging Face ViT or GPT-2 checkpoint (a directory with "
            "config.json and model.safetensors, or a .safetensors file beside its "
            "config.json) or an original ViT .npz file to a keras_attn "
            "VisionTransformer or CausalLM saved as OUT.keras. Every tensor's name "
            "and shape is checked; pickle files are refused."
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
        help="image size to build a ViT for (position table resampled)",
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
    fmt = _format(args)
    gpt2 = fmt == "huggingface" and _model_type(args.source) == "gpt2"
    if gpt2 and args.image_size is not None:
        return _fail("--image-size applies to ViT checkpoints, not to GPT-2")
    try:
        if gpt2:
            model = causal_lm_from_huggingface(args.source)
        else:
            converter = {"huggingface": vit_from_huggingface, "npz": vit_from_npz}
            model = converter[fmt](args.source, image_size=args.image_size)
    except ValueError as error:
        return _fail(str(error))
    model.save(args.output)
    shape = (
        f"vocabulary {model.vocabulary_size}, context {model.max_sequence_length}"
        if gpt2
        else f"image size {model.image_size}"
    )
    print(
        f"keras-attn convert: wrote {args.output} ({model.count_params():,} "
        f"parameters, {shape})"
    )
    return 0


def _model_type(source):
    """The `model_type` of the `config.json` in or beside `source`, if any."""
    directory = source if os.path.isdir(source) else os.path.dirname(source)
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):  # the converter reports the missing config
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _fail(message):
    print(f"keras-attn convert: error: {message}", file=sys.stderr)
    return 1
