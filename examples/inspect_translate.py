"""Draw the cross-attention of the number-words Transformer of `translate.py`.

Loads a `translate_transformer.keras` saved by `examples/translate.py`, runs it on
one number with teacher forcing through `keras_attn.inspect.attention_maps`, and
writes `cross_attention.png`: for every decoder step (the digit it predicts), the
attention of the last decoder layer over the source words, heads averaged.

    python examples/translate.py --output /tmp/translate      # trains, saves
    python examples/inspect_translate.py \\
        --model /tmp/translate/translate_transformer.keras --number 342605
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for _number_words

import _number_words as data  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_attn import inspect  # noqa: E402

_DOCS_IMAGES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "images", "inspect"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="translate_transformer.keras")
    parser.add_argument("--number", type=int, default=342_605)
    parser.add_argument(
        "--output",
        default=os.path.normpath(_DOCS_IMAGES),
        help="directory for cross_attention.png (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = keras.saving.load_model(args.model)
    arrays = data.encode_numbers([args.number])
    inputs = {k: arrays[k] for k in ("encoder_token_ids", "decoder_token_ids")}
    maps = inspect.attention_maps(model, inputs)
    last = [name for name in maps if name.endswith("cross_attention")][-1]

    words = data.number_to_words(args.number).split()
    labels = arrays["labels"][0]
    steps = int(np.count_nonzero(labels))  # the digits and [END]
    predicted = np.argmax(keras.ops.convert_to_numpy(model(inputs))[0], axis=-1)
    rows = [
        f"{data.TARGET_VOCABULARY.tokens[i]}"
        + ("" if i == t else f" (wrong: {data.TARGET_VOCABULARY.tokens[t]})")
        for i, t in zip(predicted[:steps], labels[:steps])
    ]
    scores = maps[last][0].mean(axis=0)[:steps, : len(words)]  # (steps, words)
    path = inspect.plot_token_attention(
        scores,
        os.path.join(args.output, "cross_attention.png"),
        query_tokens=rows,
        key_tokens=words,
        title=f"{last}, heads averaged: predicted token vs. source word",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
