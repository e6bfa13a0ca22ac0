"""Train a small `keras_attn.models.VisionTransformer` on scikit-learn's digits.

The 1,797 8x8 grey digits of `sklearn.datasets.load_digits` (no download) are
split 80/20, stratified, with a fixed seed. A ViT with 2x2 shifted patches (16
patch tokens that each also see the pixels around their patch, mean-pooled: no
class token) is trained with `model.fit`: AdamW, a linear warmup into a cosine
decay, label smoothing, and random shifts of +-1 pixel as augmentation.
It runs on the backend that `KERAS_BACKEND` names:

    KERAS_BACKEND=jax python examples/vit_digits.py             # full run
    KERAS_BACKEND=torch python examples/vit_digits.py --quick   # a few steps
    KERAS_BACKEND=tensorflow python examples/vit_digits.py --epochs 30 --output out

The model is saved as `vit_digits.keras` in `--output`, reloaded and checked, and
`vit_digits_explorer.html` is written next to it: the attention explorer
(`keras_attn.inspect.explore`) on the first 8 test digits; open it in a browser.
The last line printed is `RESULT test_accuracy=0.xxx seconds=NN`, the wall time
of the whole run, imports included.
"""

import argparse
import os
import sys
import tempfile
import time

_START = time.perf_counter()
import _environment  # noqa: E402, F401  (before Keras picks its backend)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_attn.inspect import explore  # noqa: E402
from keras_attn.models.vision_transformer import VisionTransformer  # noqa: E402

SEED = 0
NUM_CLASSES = 10
# Small enough for 2 CPU cores; 0.978-0.992 test accuracy (docs/examples/vit_digits.md).
MODEL = {
    "image_size": 8,
    "patch_size": 2,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 64,
    "mlp_dim": 128,
    "num_classes": NUM_CLASSES,
    "channels": 1,
    "dropout": 0.1,
    "pooling": "mean",
    "shifted_patches": True,
}
EXPLORED = 8  # test digits on the explorer page


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="train a few steps only (a smoke test)"
    )
    parser.add_argument("--epochs", type=int, default=100, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=6e-3)
    parser.add_argument(
        "--output",
        default=os.path.join(tempfile.gettempdir(), "keras_attn_vit_digits"),
        help="directory for vit_digits.keras and the explorer page "
        "(default: %(default)s)",
    )
    return parser.parse_args(argv)


def load_data():
    """(N, 8, 8, 1) float32 images in [0, 1] and int labels; stratified 80/20."""
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    return train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=SEED
    )


def random_shifts(images, rng):
    """Moves each image by -1, 0 or +1 pixels on each axis; zeros fill the edge."""
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))  # (N, H + 2, W + 2, 1)
    rows = rng.integers(0, 3, size=(count, 1)) + np.arange(height)  # (N, H)
    cols = rng.integers(0, 3, size=(count, 1)) + np.arange(width)  # (N, W)
    return padded[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


class ShiftedDigits(keras.utils.PyDataset):
    """Shuffled, randomly shifted batches of one-hot labelled digits, every epoch."""

    def __init__(self, images, labels, batch_size, seed):
        super().__init__()
        self.images = images
        self.targets = keras.utils.to_categorical(labels, NUM_CLASSES)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        batch = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return random_shifts(self.images[batch], self.rng), self.targets[batch]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.images))


def compile_model(model, total_steps, learning_rate):
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=learning_rate,
        warmup_steps=max(1, total_steps // 10),
        decay_steps=max(1, total_steps - total_steps // 10),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.05),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=0.1
        ),
        metrics=["accuracy"],
    )


def accuracy(model, images, labels):
    logits = model.predict(images, batch_size=len(images), verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels)), logits


def train_and_save(args):
    """Train, evaluate, save and reload-check; `(model, path, accuracy, logits)`."""
    keras.utils.set_random_seed(SEED)
    x_train, x_test, y_train, y_test = load_data()
    print(
        f"backend: {keras.backend.backend()}, "
        f"train {len(x_train)}, test {len(x_test)} images"
    )

    model = VisionTransformer(**MODEL, name="vit_digits")
    model.summary()
    batches = ShiftedDigits(x_train, y_train, args.batch_size, seed=SEED)
    epochs, steps = (1, 5) if args.quick else (args.epochs, len(batches))
    compile_model(model, epochs * steps, args.learning_rate)
    model.fit(batches, epochs=epochs, steps_per_epoch=steps)

    test_accuracy, logits = accuracy(model, x_test, y_test)
    print(f"test accuracy: {test_accuracy:.4f}")

    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "vit_digits.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    difference = np.max(np.abs(accuracy(restored, x_test, y_test)[1] - logits))
    print(f"saved {path}; reloaded, max abs logit difference {difference:.1e}")
    if not difference < 1e-4:
        sys.exit("the reloaded model disagrees with the trained one")
    return model, path, test_accuracy, logits


def write_explorer(model, images, labels, logits, output):
    """The attention explorer of the first `EXPLORED` test digits; its path."""
    predicted = np.argmax(logits[:EXPLORED], axis=-1)
    shown = ", ".join(
        f"{i}: {y}→{p}" for i, (y, p) in enumerate(zip(labels, predicted))
    )
    page = explore(
        model,
        images[:EXPLORED],
        path=os.path.join(output, "vit_digits_explorer.html"),
        title=f"digits ViT on test digits (example: label→prediction) {shown}",
    )
    return page.path


def main(argv=None):
    args = parse_args(argv)
    model, _, test_accuracy, logits = train_and_save(args)
    _, x_test, _, y_test = load_data()
    page = write_explorer(model, x_test, y_test, logits, args.output)
    print(f"wrote the attention explorer {page}")
    seconds = time.perf_counter() - _START
    print(f"RESULT test_accuracy={test_accuracy:.3f} seconds={seconds:.0f}")


if __name__ == "__main__":
    main()
