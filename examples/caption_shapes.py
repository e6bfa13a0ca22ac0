"""Caption synthetic images of two shapes with keras_attn's ImageCaptioner.

The data is drawn with NumPy (`_shapes_data.py`, nothing is downloaded): 32×32
images of a large and a small coloured shape, captioned like "a red circle to the
left of a blue square". Two captioners are trained with `model.fit` and teacher
forcing, one per image encoder:

- `cnn`: a small convolutional stem, then Transformer encoder blocks;
- `vit`: patch embedding and Transformer encoder blocks only.

Each then writes captions for held-out images with cached greedy decoding
(`keras_attn.generation.generate`, from `[START]` until `[END]`), is scored by
exact caption match, and is saved as a `.keras` file (reloaded and checked).
Next to it goes `shapes_captioner_<encoder>_explorer.html`, the attention
explorer (`keras_attn.inspect.explore`) of 6 held-out images read with the
captions the model wrote; it opens on the last decoder layer's
cross-attention, each word of the caption over the image.

    KERAS_BACKEND=jax python examples/caption_shapes.py              # both, full
    KERAS_BACKEND=torch python examples/caption_shapes.py --quick    # smoke test
    KERAS_BACKEND=tensorflow python examples/caption_shapes.py --encoder vit

The last line printed is
`RESULT cnn_exact_match=... vit_exact_match=... seconds=...`.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _shapes_data as data  # noqa: E402

from keras_attn.generation import generate  # noqa: E402
from keras_attn.inspect import explore  # noqa: E402
from keras_attn.models.image_captioner import ImageCaptioner  # noqa: E402
from keras_attn.training import MaskedAccuracy  # noqa: E402
from keras_attn.training import MaskedSparseCategoricalCrossentropy  # noqa: E402

SEED = 0
ENCODERS = ("cnn", "vit")
# The patch-linear ViT encoder needs twice the epochs of the convolutional stem.
EPOCHS = {"cnn": 6, "vit": 12}
EXPLORED = 6  # held-out images on the explorer page


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few training steps (a smoke test)"
    )
    parser.add_argument(
        "--encoder", choices=(*ENCODERS, "both"), default="both", help="image encoder"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs (default: {EPOCHS})",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--train-size", type=int, default=16000, help="train images")
    parser.add_argument("--test-size", type=int, default=500, help="test images")
    parser.add_argument(
        "--output",
        default=None,
        help="where to write the models and explorer pages (default: a temporary "
        "directory, removed at exit)",
    )
    return parser.parse_args(argv)


def build_model(encoder, dropout=0.0):
    return ImageCaptioner(
        vocabulary_size=len(data.VOCABULARY),
        image_size=data.IMAGE_SIZE,
        encoder=encoder,
        patch_size=4,  # an 8×8 grid: 64 image tokens
        num_encoder_layers=2,
        num_decoder_layers=2,
        hidden_dim=64,
        intermediate_dim=128,
        num_heads=4,
        dropout=dropout,
        padding_id=data.PADDING_ID,
        name=f"shapes_captioner_{encoder}",
    )


def teacher_forcing(images, token_ids):
    """Inputs see the caption up to each position; labels are the next tokens."""
    inputs = {"images": images, "decoder_token_ids": token_ids[:, :-1]}
    return inputs, token_ids[:, 1:]


def train(model, inputs, labels, epochs, batch_size, steps_per_epoch=None):
    steps = steps_per_epoch or -(-len(labels) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=2e-3,
        warmup_steps=max(1, steps * epochs // 10),
        decay_steps=max(1, steps * epochs),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.01),
        loss=MaskedSparseCategoricalCrossentropy(ignore_class=data.PADDING_ID),
        metrics=[MaskedAccuracy(ignore_class=data.PADDING_ID)],
    )
    model.fit(
        inputs,
        labels,
        batch_size=batch_size,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=True,
        # A progress bar on a terminal, one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
    )


def caption_images(model, images, batch_size=250):
    """Greedy cached decoding from `[START]` to `[END]`: `(N, MAX_LENGTH)` ids."""
    batches = []
    for i in range(0, len(images), batch_size):
        tokens = generate(
            model,
            images[i : i + batch_size],
            start_token_id=data.START_ID,
            end_token_id=data.END_ID,
            max_length=data.MAX_LENGTH,
        )
        batches.append(keras.ops.convert_to_numpy(tokens))
    return np.concatenate(batches)


def write_explorer(model, images, captions, output_dir):
    """The attention explorer of `images` read with their generated `captions`.

    The decoder reads each caption the model wrote (`[START]` to `[END]`, with
    teacher forcing), so the page shows the attention behind the caption it
    generated, a wrong one included. Returns the page's path.
    """
    token_ids = captions[:EXPLORED, :-1]  # (EXPLORED, MAX_LENGTH - 1)
    words = [
        [data.VOCABULARY[t] for t in row if t != data.PADDING_ID] for row in token_ids
    ]
    page = explore(
        model,
        {"images": images[:EXPLORED], "decoder_token_ids": token_ids},
        tokens={"decoder": words},
        layer="decoder_layer_1/cross_attention",
        title=f"{model.name}: held-out images and the captions it wrote",
        path=os.path.join(output_dir, f"{model.name}_explorer.html"),
    )
    return page.path


def run_encoder(encoder, args, train_set, test_set, output_dir):
    keras.utils.set_random_seed(SEED)
    model = build_model(encoder, args.dropout)
    print(f"\n=== {encoder}: {model.count_params():,} parameters ===")
    inputs, labels = teacher_forcing(*train_set)
    start = time.perf_counter()
    if args.quick:
        train(model, inputs, labels, 1, args.batch_size, steps_per_epoch=5)
    else:
        train(model, inputs, labels, args.epochs or EPOCHS[encoder], args.batch_size)
    train_seconds = time.perf_counter() - start

    test_images, test_ids = test_set
    predicted = caption_images(model, test_images)
    exact = float(np.mean(np.all(predicted == test_ids, axis=1)))
    truth, texts = data.detokenize(test_ids), data.detokenize(predicted)
    for want, got in list(zip(truth, texts))[:4]:
        print(f"  {'ok  ' if want == got else 'MISS'} {got!r} (true: {want!r})")

    path = os.path.join(output_dir, f"shapes_captioner_{encoder}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    if not np.array_equal(caption_images(restored, test_images[:50]), predicted[:50]):
        sys.exit(f"{path}: the reloaded model writes other captions")
    print(
        f"{encoder}: exact match {exact:.3f} on {len(test_ids)} held-out images, "
        f"trained in {train_seconds:.0f} s; saved {path}"
    )
    page = write_explorer(model, test_images, predicted, output_dir)
    print(f"wrote the attention explorer {page}")
    return exact


def run(args, output_dir):
    num_train = 512 if args.quick else args.train_size
    num_test = 100 if args.quick else args.test_size
    train_images, train_captions = data.make_dataset(num_train, seed=SEED)
    test_images, test_captions = data.make_dataset(num_test, seed=SEED + 1)
    print(
        f"backend: {keras.backend.backend()}, train {num_train} images, "
        f"test {num_test} held-out images, vocabulary {len(data.VOCABULARY)} words"
    )
    train_set = (train_images, data.tokenize(train_captions))
    test_set = (test_images, data.tokenize(test_captions))
    encoders = ENCODERS if args.encoder == "both" else (args.encoder,)
    return {
        encoder: run_encoder(encoder, args, train_set, test_set, output_dir)
        for encoder in encoders
    }


def main(argv=None):
    args = parse_args(argv)
    if args.output is None:
        with tempfile.TemporaryDirectory(prefix="keras_attn_captions_") as output:
            scores = run(args, output)
        print(f"removed {output} (pass --output DIR to keep the files)")
    else:
        os.makedirs(args.output, exist_ok=True)
        scores = run(args, args.output)
    seconds = time.perf_counter() - _START
    fields = " ".join(
        f"{name}_exact_match={value:.3f}" for name, value in scores.items()
    )
    print(f"RESULT {fields} seconds={seconds:.0f}")


if __name__ == "__main__":
    main()
