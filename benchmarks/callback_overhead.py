"""What `AttentionMapsCallback` adds to a training epoch of the digits ViT.

The model of `examples/vit_digits.py` (4 layers of width 64, 4 heads, 2x2 shifted
patches on 8x8 digits, mean pooling) trains on the 1,437 training digits of
scikit-learn's `load_digits` (batch 64, AdamW, label smoothing; plain arrays,
no augmentation), one `model.fit(..., epochs=1)` per timed epoch. Contenders,
interleaved round by round on the same model (compiled once):

- `without`: the epoch alone;
- `with callback`: the epoch with `AttentionMapsCallback` on 8 test digits,
  every epoch, all three diagnostics (distance, entropy, rollout images) written
  to TensorBoard event files in a temporary directory.

Reported: the epoch's wall time of each, the per-round overhead `with / without
- 1` in percent, and the callback's own `on_epoch_end` time (between two
timestamping callbacks around it) with its share of the epoch it ran in: on a
shared machine the epochs vary by more than the callback costs, and its own
time is the steadier figure.
"""

import importlib
import pathlib
import sys
import tempfile
import time

import keras

from benchmarks import _timing
from benchmarks._report import summary_text
from benchmarks._report import table

SEED = 0
BATCH = 64
SHOWN = 8  # test digits the callback runs on


def _example_model():
    """The model settings of `examples/vit_digits.py` (not a package: by path)."""
    examples = str(pathlib.Path(__file__).parents[1] / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)  # it imports its sibling `_environment`
    return importlib.import_module("vit_digits").MODEL


def _data(quick):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = keras.utils.to_categorical(digits.target, 10).astype("float32")
    x_train, x_test, y_train, _ = train_test_split(
        images, labels, test_size=0.2, stratify=digits.target, random_state=SEED
    )
    if quick:
        x_train, y_train = x_train[: 4 * BATCH], y_train[: 4 * BATCH]
    return x_train, y_train, x_test[:SHOWN]


def _model():
    from keras_attn.models import VisionTransformer

    keras.utils.set_random_seed(SEED)
    model = VisionTransformer(**_example_model())
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=0.1
        ),
    )
    return model


class _Stamp(keras.callbacks.Callback):
    """Records `time.perf_counter()` at each epoch end into `stamps`."""

    def __init__(self, stamps):
        super().__init__()
        self.stamps = stamps

    def on_epoch_end(self, epoch, logs=None):
        self.stamps.append(time.perf_counter())


def run(quick=False, rounds=None):
    from keras_attn.inspect.callback import AttentionMapsCallback

    rounds = rounds or (2 if quick else 9)
    x_train, y_train, shown = _data(quick)
    model = _model()
    log_dir = tempfile.TemporaryDirectory(prefix="callback_overhead_")
    attention = AttentionMapsCallback(shown, log_dir=log_dir.name)
    before, after = [], []
    with_callback = [_Stamp(before), attention, _Stamp(after)]

    def epoch(callbacks):
        def fit():
            model.fit(
                x_train,
                y_train,
                batch_size=BATCH,
                epochs=1,
                verbose=0,
                callbacks=callbacks,
            )

        return fit

    seconds = _timing.interleave(
        {"without": epoch([]), "with callback": epoch(with_callback)},
        rounds=rounds,
        warmup=1,
    )
    log_dir.cleanup()
    callback_seconds = [b - a for a, b in zip(before, after)][1:]  # after warm-up
    with_seconds = seconds["with callback"]
    overhead = [(a / b - 1) * 100 for a, b in zip(with_seconds, seconds["without"])]
    share = [100 * c / s for c, s in zip(callback_seconds, with_seconds)]
    return {
        "settings": {
            "model": _example_model(),
            "batch_size": BATCH,
            "train_images": len(x_train),
            "shown_images": SHOWN,
            "rounds": rounds,
        },
        "epoch_seconds": {name: _timing.summary(s) for name, s in seconds.items()},
        "overhead_percent": _timing.summary(overhead),
        "callback_seconds": _timing.summary(callback_seconds),
        "callback_share_percent": _timing.summary(share),
    }


def markdown(r):
    s = r["settings"]
    rows = [[name, summary_text(t, 2)] for name, t in r["epoch_seconds"].items()]
    rows.append(["callback's on_epoch_end", summary_text(r["callback_seconds"], 3)])
    return (
        [
            f"### AttentionMapsCallback: digits ViT epoch ({s['train_images']} "
            f"images, batch {s['batch_size']}), diagnostics of {s['shown_images']} "
            "images every epoch",
            "",
        ]
        + table(["", "seconds"], rows)
        + [
            f"Overhead: **{summary_text(r['overhead_percent'], 1)} %** of the "
            "epoch (with / without - 1, per round); the callback's own share of "
            f"the epoch with it: {summary_text(r['callback_share_percent'], 1)} %.",
            "",
        ]
    )


if __name__ == "__main__":
    _timing.case_main(run)
