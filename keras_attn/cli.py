"""The `keras-attn` command."""

import argparse

from keras_attn import __version__


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-attn",
        description="Attention layers and Transformers for Keras 3.",
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-attn {__version__}"
    )
    return parser


def main(argv=None):
    """Entry point of the `keras-attn` console script; returns the exit status."""
    parser = _parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
