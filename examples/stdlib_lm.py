"""A byte-level language model of CPython's standard library, against an LSTM and xz.

The documents are the top-level functions and classes of the standard library's
`*.py` files (test directories left out; `examples/_stdlib_corpus.py`), as UTF-8
bytes: a vocabulary of 256. About 5% of the files, chosen by a SHA-1 hash of their
path, are held out. `keras_attn.data.pack_sequences` packs the documents into rows
(segment ids keep attention inside each document; positions restart at 0 at each
document and continue across rows), and a pre-LN rotary `CausalLM` and an LSTM of
about the same parameter count each train with `model.fit` for the same
wall-clock budget (a callback sets the learning rate from the time spent and
stops at the end). Both are scored in bits per byte on the held-out files, beside
`xz -9e` on the same bytes; the script then prints a greedy completion, saves the
transformer as `.keras` and exports it as a SavedModel.

    KERAS_BACKEND=jax python examples/stdlib_lm.py                 # 4 + 4 minutes
    KERAS_BACKEND=torch python examples/stdlib_lm.py --quick       # seconds (CI)
    KERAS_BACKEND=tensorflow python examples/stdlib_lm.py --minutes 2 --no-lstm

The last line printed is `RESULT transformer_bpb=... lstm_bpb=... xz_bpb=...
seconds=...`, the wall time of the whole run, imports included.
"""

import argparse
import math
import os
import platform
import sys
import tempfile
import time

_START = time.perf_counter()
import _environment  # noqa: E402, F401  (before Keras picks its backend)
import _stdlib_corpus as corpus  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_attn.data import PackedBatches  # noqa: E402
from keras_attn.data import pack_sequences  # noqa: E402
from keras_attn.models.causal_lm import CausalLM  # noqa: E402

SEED = 0
LN2 = math.log(2.0)
PROMPT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
HEAD_DIM = 32  # heads = hidden_dim / 32; the feed-forward width is 4 * hidden_dim


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny models, few files (a smoke test)")
    add("--minutes", type=float, default=4.0, help="training time of each model")
    add("--max-steps", type=int, default=None, help="stop each model after N steps")
    add("--num-layers", type=int, default=4, help="transformer blocks")
    add("--hidden-dim", type=int, default=128, help="transformer width")
    add("--sequence-length", type=int, default=128, help="tokens per packed row")
    add("--batch-size", type=int, default=8)
    add("--learning-rate", type=float, default=3e-3, help="peak learning rate")
    add("--warmup-steps", type=int, default=20)
    add("--max-files", type=int, default=None, help="use the first N files only")
    add("--no-lstm", action="store_true", help="train the transformer only")
    add("--no-export", action="store_true", help="save .keras, no SavedModel")
    add("--prompt", default=PROMPT)
    add("--completion-bytes", type=int, default=160)
    add(
        "--output",
        default=os.path.join(tempfile.gettempdir(), "keras_attn_stdlib_lm"),
        help="directory for stdlib_lm.keras and the SavedModel (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.max_steps = args.max_steps or 3
        args.max_files = args.max_files or 6
        args.num_layers, args.hidden_dim = 1, 32
        args.sequence_length = min(args.sequence_length, 128)
        args.batch_size = min(args.batch_size, 4)
        args.warmup_steps = 1
        args.completion_bytes = min(args.completion_bytes, 8)
    return args


def cpu_model():
    """The processor's name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_corpus(max_files=None):
    """`(train_documents, validation_documents)` as bytes, and the file counts."""
    paths = corpus.stdlib_files()
    if max_files is not None:
        # Every other file up to 2 * max_files: both sides of the split get some.
        paths = paths[: 2 * max_files : 2]
    train_paths, validation_paths = corpus.split_files(paths)
    if not validation_paths:  # a tiny selection may miss the 5% held out
        train_paths, validation_paths = train_paths[:-1], train_paths[-1:]
    train = corpus.read_documents(train_paths)
    validation = corpus.read_documents(validation_paths)
    return train, validation, (len(train_paths), len(validation_paths))


def pack_rows(documents, sequence_length, shuffle_seed=None):
    """The packed rows of `documents` (bytes), in a seeded random order if asked."""
    rows = list(pack_sequences(corpus.as_token_ids(documents), sequence_length))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(rows))
        rows = [rows[i] for i in order]
    return rows


def build_transformer(num_layers, hidden_dim):
    """A pre-LN rotary `CausalLM` over bytes that reads packed rows."""
    return CausalLM(
        vocabulary_size=corpus.VOCABULARY_SIZE,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim,
        num_heads=max(1, hidden_dim // HEAD_DIM),
        max_sequence_length=None,
        position_embedding="rotary",
        normalize_first=True,
        dropout=0.0,  # too few steps to overfit
        padding_id=None,  # segment ids and the loss mask keep padding out
        packed_inputs=True,
        name="stdlib_transformer",
    )


def lstm_units_for(parameters, embedding_dim):
    """The LSTM width whose model (`build_lstm`) has about `parameters` weights."""
    vocabulary = corpus.VOCABULARY_SIZE
    # 4 * h * ((e + 1) + h + 1) in the LSTM (its input: the embedding and the
    # start flag), h * V + V in the head, V * e in the embedding.
    a, b = 4.0, 4.0 * (embedding_dim + 2) + vocabulary
    c = vocabulary * embedding_dim + vocabulary - parameters
    return max(8, int(round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))))


def build_lstm(units, embedding_dim):
    """An LSTM language model that reads the same packed batches.

    The LSTM runs across the documents of a row; a 0/1 feature marks each
    document's first byte, so it knows where a new one starts.
    """
    inputs = {
        key: keras.Input((None,), dtype="int32", name=key)
        for key in ("token_ids", "segment_ids", "positions")
    }
    x = keras.layers.Embedding(corpus.VOCABULARY_SIZE, embedding_dim)(
        inputs["token_ids"]
    )  # (B, T, E)
    starts = keras.ops.logical_and(
        keras.ops.equal(inputs["positions"], 0),
        keras.ops.greater(inputs["segment_ids"], 0),
    )
    starts = keras.ops.expand_dims(keras.ops.cast(starts, x.dtype), -1)  # (B, T, 1)
    x = keras.layers.Concatenate()([x, starts])
    x = keras.layers.LSTM(units, return_sequences=True)(x)  # (B, T, units)
    logits = keras.layers.Dense(corpus.VOCABULARY_SIZE)(x)  # (B, T, V)
    return keras.Model(inputs, logits, name="stdlib_lstm")


class TimeBudget(keras.callbacks.Callback):
    """Trains for `seconds` of wall-clock time (or `max_steps`), then stops.

    The learning rate warms up linearly over `warmup_steps`, then follows a
    cosine from `peak` to `peak / 10` over the time budget, so a run of any
    length ends with a decayed rate. It is set every `every` steps; on JAX the
    fit loop keeps the optimizer state outside its variables, so it is synced
    back first (`jax_state_sync`) and read again at the next step.
    """

    def __init__(self, seconds, peak, warmup_steps, max_steps=None, every=10):
        super().__init__()
        self.seconds, self.peak = seconds, peak
        self.warmup_steps, self.max_steps, self.every = warmup_steps, max_steps, every
        self.steps, self.start, self.elapsed = 0, None, 0.0

    def learning_rate(self):
        warmup = min(1.0, (self.steps + 1) / max(1, self.warmup_steps))
        progress = min(1.0, self.elapsed / self.seconds)
        if self.max_steps:
            progress = max(progress, self.steps / self.max_steps)
        return self.peak * warmup * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps % self.every and self.steps > self.warmup_steps:
            return
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        self.model.optimizer.learning_rate = self.learning_rate()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.elapsed = time.perf_counter() - self.start
        if self.elapsed >= self.seconds or self.steps == self.max_steps:
            self.model.stop_training = True


def train(model, rows, args):
    """Fits `model` on `rows` within the budget; `(steps, seconds)`."""
    keras.utils.set_random_seed(SEED)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=args.learning_rate, weight_decay=0.01, clipnorm=1.0
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
    )
    budget = TimeBudget(
        60.0 * args.minutes, args.learning_rate, args.warmup_steps, args.max_steps
    )
    batches = PackedBatches(rows, args.batch_size, drop_remainder=True)
    # Far more epochs (passes over the rows, each in a new order) than the
    # budget allows: the callback ends the training.
    model.fit(batches, epochs=1_000, callbacks=[budget])
    return budget.steps, budget.elapsed


def bits_per_byte(model, rows, batch_size):
    """Masked cross-entropy of the predicted bytes of `rows`, in bits per byte."""
    total, count = 0.0, 0.0
    for x, labels, weights in PackedBatches(rows, batch_size):
        logits = np.asarray(model.predict_on_batch(x), "float64")  # (B, T, V)
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]  # (B, T)
        picked = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
        total += float(np.sum((log_z - picked) * weights))
        count += float(np.sum(weights))
    return total / count / LN2


def greedy_completion(model, prompt, num_bytes, length=256):
    """`prompt` continued by `num_bytes` greedy bytes (uncached, one shape)."""
    tokens = list(prompt.encode("utf-8"))[-(length - num_bytes) :]
    buffer = np.zeros((1, length), "int32")  # right padding: causal, so unseen
    x = {
        "token_ids": buffer,
        "segment_ids": np.ones((1, length), "int32"),
        "positions": np.arange(length, dtype="int32")[None],
    }
    for _ in range(num_bytes):
        buffer[0, : len(tokens)] = tokens
        logits = model.predict_on_batch(x)  # (1, length, V)
        tokens.append(int(np.argmax(logits[0, len(tokens) - 1])))
    return bytes(tokens).decode("utf-8", errors="replace")


def save_and_export(model, rows, output, export):
    """Saves `.keras`, checks the reloaded logits, exports a SavedModel if asked."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, "stdlib_lm.keras")
    model.save(path)
    x = PackedBatches(rows[:1], 1)[0][0]
    difference = np.max(
        np.abs(
            keras.saving.load_model(path).predict_on_batch(x)
            - model.predict_on_batch(x)
        )
    )
    print(f"saved {path}; reloaded, max abs logit difference {difference:.1e}")
    if not difference < 1e-4:
        sys.exit("the reloaded model disagrees with the trained one")
    if export:
        from keras_attn.export import export_saved_model

        # A fixed row length: on JAX each dynamic length would be its own
        # symbol, and the model checks that its inputs have one shape.
        length = x["token_ids"].shape[1]
        signature = {name: ((None, length), "int32") for name in model.input}
        signature["padding_mask"] = ((None, length), "bool")
        saved_model = os.path.join(output, "stdlib_lm_saved_model")
        export_saved_model(model, saved_model, input_signature=signature, verbose=False)
        print(f"exported the SavedModel {saved_model} (rows of {length} bytes)")
    return path


def run(args):
    """The whole example; returns a dict of the figures it prints."""
    backend, cores = keras.backend.backend(), os.cpu_count()
    print(f"backend: {backend}, CPU: {cpu_model()}, {cores} cores")
    started = time.perf_counter()
    train_documents, validation_documents, (train_files, validation_files) = (
        load_corpus(args.max_files)
    )
    train_rows = pack_rows(train_documents, args.sequence_length, shuffle_seed=SEED)
    validation_rows = pack_rows(validation_documents, args.sequence_length)
    print(
        f"corpus: {train_files} train files, {len(train_documents)} documents, "
        f"{sum(map(len, train_documents)):,} bytes, {len(train_rows)} rows of "
        f"{args.sequence_length}; {validation_files} held-out files, "
        f"{len(validation_documents)} documents, "
        f"{sum(map(len, validation_documents)):,} bytes "
        f"({time.perf_counter() - started:.1f} s)"
    )
    results = {"xz": corpus.xz_bits_per_byte(validation_documents)}

    keras.utils.set_random_seed(SEED)
    transformer = build_transformer(args.num_layers, args.hidden_dim)
    models = [("transformer", transformer)]
    parameters = transformer.count_params()
    if not args.no_lstm:
        embedding_dim = transformer.hidden_dim
        units = lstm_units_for(parameters, embedding_dim)
        models.append(("lstm", build_lstm(units, embedding_dim)))
    for name, model in models:
        print(f"\n{name}: {model.count_params():,} parameters")
        steps, seconds = train(model, train_rows, args)
        tokens = steps * args.batch_size * args.sequence_length
        started = time.perf_counter()
        results[name] = bits_per_byte(model, validation_rows, args.batch_size)
        print(
            f"{name}: {steps} steps, {tokens:,} tokens in {seconds:.0f} s "
            f"({tokens / max(seconds, 1e-9):,.0f} tokens/s, compilation included); "
            f"held-out {results[name]:.3f} bits per byte "
            f"(evaluated in {time.perf_counter() - started:.0f} s)"
        )

    print("\nheld-out bits per byte (lower is better):")
    for name in ("transformer", "lstm", "xz"):
        if name in results:
            print(f"  {name:<12} {results[name]:.3f}")
    for name, model in models:
        completion = greedy_completion(model, args.prompt, args.completion_bytes)
        print(f"\ngreedy completion by the {name}:\n{completion}")
    save_and_export(transformer, validation_rows, args.output, not args.no_export)
    return results


def main(argv=None):
    results = run(parse_args(argv))
    seconds = time.perf_counter() - _START
    figures = " ".join(
        f"{name}_bpb={results[name]:.3f}" if name in results else f"{name}_bpb=-"
        for name in ("transformer", "lstm", "xz")
    )
    print(f"RESULT {figures} seconds={seconds:.0f}")


if __name__ == "__main__":
    main()
