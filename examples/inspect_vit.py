"""Look inside the digits ViT: the ViT paper's Figure 7 panels and attention rollout.

Trains the Vision Transformer of `examples/vit_digits.py` (or loads one it saved;
training also leaves its `vit_digits_explorer.html` page next to the model), runs
it once on the test digits with `keras_attn.inspect.attention_maps`, and writes
four PNG files:

- `patch_components.png`: principal components of the patch-embedding filters
  (Fig. 7, left);
- `position_similarity.png`: cosine similarity of the learned position embeddings
  (Fig. 7, centre);
- `attention_distance.png`: mean attention distance of every head against depth
  (Fig. 7, right);
- `rollout.png`: attention rollout of the class token over test digits.

    KERAS_BACKEND=jax python examples/inspect_vit.py             # trains first
    python examples/inspect_vit.py --model /tmp/keras_attn_vit_digits/vit_digits.keras

The last line printed is `RESULT mean_attention_distance=[...]`, the mean over
heads of each layer, first layer first, in pixels.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for vit_digits

import keras  # noqa: E402
import numpy as np  # noqa: E402
import vit_digits  # noqa: E402

from keras_attn import inspect  # noqa: E402

_DOCS_IMAGES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "images", "inspect"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a saved vit_digits.keras; trained with vit_digits if absent"
    )
    parser.add_argument(
        "--train-output",
        default=os.path.join(tempfile.gettempdir(), "keras_attn_vit_digits"),
        help="where vit_digits saves the model it trains (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="train a few steps only (a smoke test)"
    )
    parser.add_argument(
        "--output",
        default=os.path.normpath(_DOCS_IMAGES),
        help="directory for the PNG files (default: %(default)s)",
    )
    parser.add_argument(
        "--images", type=int, default=16, help="test digits in rollout.png"
    )
    return parser.parse_args(argv)


def load_or_train(args):
    if args.model:
        return keras.saving.load_model(args.model)
    vit_digits.main(["--output", args.train_output] + ["--quick"] * args.quick)
    return keras.saving.load_model(os.path.join(args.train_output, "vit_digits.keras"))


def main(argv=None):
    args = parse_args(argv)
    model = load_or_train(args)
    _, x_test, _, y_test = vit_digits.load_data()
    grid = model.image_size // model.patch_size
    # A class token (pooling="token") comes before the patches; "mean" has none.
    prefix = 1 if model.pooling == "token" else 0
    output = lambda name: os.path.join(args.output, name)  # noqa: E731

    components, ratios = inspect.patch_embedding_components(model, n=28)
    inspect.plot_patch_components(components, output("patch_components.png"), ratios)
    print("patch-embedding components, variance explained:", np.round(ratios, 3))

    similarity = inspect.position_embedding_similarity(model)
    inspect.plot_position_similarity(similarity, output("position_similarity.png"))

    maps = inspect.attention_maps(model, x_test)  # (360, H, T, T) per layer
    distances = inspect.mean_attention_distance(
        maps, grid, model.patch_size, num_prefix_tokens=prefix
    )
    inspect.plot_attention_distance(
        distances,
        output("attention_distance.png"),
        title=f"Mean attention distance, digits ViT ({len(x_test)} test images)",
    )
    for name, heads in distances.items():
        print(f"{name}: heads {np.round(heads, 2)} px, mean {heads.mean():.2f} px")

    shown = slice(0, args.images)
    rollout = inspect.attention_rollout({k: v[shown] for k, v in maps.items()})
    if prefix:
        heat = inspect.class_token_map(rollout, grid)  # (images, grid, grid)
    else:  # mean pooling: the average row is what the pooled features draw on
        heat = rollout.mean(axis=1).reshape(-1, grid, grid)
    predicted = np.argmax(model.predict(x_test[shown], verbose=0), axis=-1)
    titles = [f"{y} → {p}" for y, p in zip(y_test[shown], predicted)]
    inspect.plot_attention_on_images(
        x_test[shown], heat, output("rollout.png"), titles=titles
    )
    print(f"wrote the PNG files to {args.output}")

    means = [round(float(heads.mean()), 2) for heads in distances.values()]
    print(f"RESULT mean_attention_distance={means}")


if __name__ == "__main__":
    main()
