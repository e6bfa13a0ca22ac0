"""Training throughput of packed rows against padded ones, in useful tokens per second.

The documents are the top-level functions and classes of CPython's standard library
as UTF-8 bytes (`examples/_stdlib_corpus.py`; test directories left out). A fixed
sample of them, drawn with a seeded permutation, is cut so that it holds exactly
`batches * batch_size * sequence_length` tokens (only its last document is cut),
and every contender trains on that same sample each round, in its own layout:

- `packed`: `CausalLM(packed_inputs=True)` on the rows of `pack_sequences` (segment
  ids and positions) batched by `PackedBatches`: full rows, no padding.
- `padded`: the same model with `packed_inputs=False`, one document per row,
  padded to `sequence_length`; a document longer than a row is split into chunks
  of `sequence_length` (no token is dropped; each chunk's positions restart at 0),
  and the last batch is filled with rows of padding. Padding has loss weight 0.
- `keras_hub`: `keras_hub.layers.TokenAndPositionEmbedding` (tied head), the same
  number of pre-LN `keras_hub.layers.TransformerDecoder` layers of the same width,
  heads and feed-forward width, and a final norm, on the `padded` batches.
- `bucketed`: the `padded` model on the same chunks sorted by length, each batch
  padded to its longest member rounded up to a multiple of 64 (at most
  `sequence_length`) and holding `batch_size * sequence_length // length` rows:
  every batch the same token budget, one compiled shape per length.

Useful tokens are the loss-bearing ones (a label that is the document's next
token): the same count for every contender, so the per-round ratios of tokens/s
are ratios of time. The `CausalLM` contenders use rotary positions (packed rows
continue a document's positions past `sequence_length`, which a learned table
cannot hold); keras-hub's embedding is a learned table. Dropout is 0 everywhere;
the optimizer (AdamW) and loss (masked sparse cross-entropy, `"mean_with_sample_
weight"`) are the same. Each contender trains with `train_on_batch`, compiled as
Keras compiles it on the backend; the untimed warm-up is one pass over its batches
(every shape compiled, and the keras_attn attention paths taken recorded), then
rounds are interleaved.
"""

import keras
import numpy as np

from benchmarks._report import summary_text
from benchmarks._report import table

SEED = 0
BYTES = 256
PADDING_ID = BYTES  # the one special token: 0..255 are the bytes
VOCABULARY = BYTES + 1
BUCKET_MULTIPLE = 64
TARGET = 1.5  # packed over padded and over keras-hub, useful tokens/s


def _settings(quick):
    if quick:
        return dict(
            sequence_length=128, batch_size=4, batches=4, num_layers=1,
            hidden_dim=32, num_heads=2, intermediate_dim=64, max_files=20, rounds=2,
        )  # fmt: skip
    return dict(
        sequence_length=1024, batch_size=4, batches=8, num_layers=2,
        hidden_dim=128, num_heads=4, intermediate_dim=512, max_files=None, rounds=5,
    )  # fmt: skip


def _documents(settings):
    """The sample: documents (int64 arrays) holding exactly the round's tokens."""
    from examples import _stdlib_corpus as corpus

    paths = corpus.stdlib_files()[: settings["max_files"]]
    documents = corpus.as_token_ids(corpus.read_documents(paths))
    order = np.random.default_rng(SEED).permutation(len(documents))
    budget = settings["batches"] * settings["batch_size"] * settings["sequence_length"]
    sample, total = [], 0
    for index in order:
        document = documents[index][: budget - total]
        sample.append(document.astype("int64"))
        total += len(document)
        if total == budget:
            return sample, len(paths), len(documents)
    raise ValueError(
        f"packed_training: the corpus holds {total} tokens, fewer than the "
        f"{budget} a round needs."
    )


def _packed_batches(documents, length, batch_size):
    from keras_attn.data import PackedBatches
    from keras_attn.data import pack_sequences

    rows = list(pack_sequences(documents, length, padding_id=PADDING_ID))
    return list(PackedBatches(rows, batch_size))


def _chunks(documents, length):
    """`(tokens, labels)` pairs of at most `length`: each document split."""
    chunks = []
    for tokens in documents:
        for start in range(0, len(tokens), length):
            chunk = tokens[start : start + length]
            # A chunk's last token is learnt when its document goes on.
            chunks.append((chunk, tokens[start + 1 : start + length + 1]))
    return chunks


def _rows(chunks, rows, length):
    """A padded batch `(x, y, sample_weight)` of `rows` rows of `length`."""
    token_ids = np.full((rows, length), PADDING_ID, "int32")
    labels = np.full((rows, length), PADDING_ID, "int32")
    weights = np.zeros((rows, length), "float32")
    for row, (tokens, targets) in enumerate(chunks):
        token_ids[row, : len(tokens)] = tokens
        labels[row, : len(targets)] = targets
        weights[row, : len(targets)] = 1.0
    x = {"token_ids": token_ids, "padding_mask": token_ids != PADDING_ID}
    return x, labels, weights


def _padded_batches(chunks, length, batch_size):
    return [
        _rows(chunks[i : i + batch_size], batch_size, length)
        for i in range(0, len(chunks), batch_size)
    ]


def _bucketed_batches(chunks, length, batch_size):
    """Batches of length-sorted chunks, each `budget // its_length` rows."""
    budget = batch_size * length
    ordered = sorted(chunks, key=lambda chunk: len(chunk[0]))  # stable
    groups, group = [], []
    for chunk in ordered:
        padded = _round_up(len(chunk[0]))
        if group and (len(group) + 1) * min(padded, length) > budget:
            groups.append(group)
            group = []
        group.append(chunk)
    groups.append(group)
    batches = []
    for group in groups:
        padded = min(_round_up(len(group[-1][0])), length)
        batches.append(_rows(group, budget // padded, padded))
    return batches


def _round_up(n):
    return -(-n // BUCKET_MULTIPLE) * BUCKET_MULTIPLE


def _causal_lm(settings, packed):
    from keras_attn.models import CausalLM

    keras.utils.set_random_seed(SEED)
    return CausalLM(
        vocabulary_size=VOCABULARY,
        num_layers=settings["num_layers"],
        hidden_dim=settings["hidden_dim"],
        intermediate_dim=settings["intermediate_dim"],
        num_heads=settings["num_heads"],
        max_sequence_length=None,
        position_embedding="rotary",
        dropout=0.0,
        padding_id=PADDING_ID,
        packed_inputs=packed,
    )


def _keras_hub_lm(settings):
    import keras_hub

    keras.utils.set_random_seed(SEED)
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    embedding = keras_hub.layers.TokenAndPositionEmbedding(
        VOCABULARY, settings["sequence_length"], settings["hidden_dim"]
    )
    x = embedding(inputs["token_ids"])
    for _ in range(settings["num_layers"]):
        x = keras_hub.layers.TransformerDecoder(
            intermediate_dim=settings["intermediate_dim"],
            num_heads=settings["num_heads"],
            dropout=0.0,
            activation="gelu",
            layer_norm_epsilon=1e-5,
            normalize_first=True,
        )(x, decoder_padding_mask=inputs["padding_mask"])
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    logits = embedding.token_embedding(x, reverse=True)  # (B, T, V)
    return keras.Model(inputs, logits)


def _compiled(model):
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
    )
    return model


def _trainer(model, batches, losses):
    """One pass of `train_on_batch` over `batches`; its last loss in `losses`."""

    def train():
        for x, y, weights in batches:
            loss = model.train_on_batch(x, y, sample_weight=weights)
        losses.append(float(loss))  # a Python float: the step has finished

    return train


def run(quick=False, rounds=None):
    from benchmarks._timing import interleave
    from benchmarks._timing import rate_summary
    from benchmarks._timing import ratio_summary
    from benchmarks._timing import summary
    from benchmarks.structured_attention import _spy_paths

    settings = _settings(quick)
    rounds = rounds or settings["rounds"]
    length, batch_size = settings["sequence_length"], settings["batch_size"]
    documents, files, corpus_documents = _documents(settings)
    chunks = _chunks(documents, length)
    padded = _padded_batches(chunks, length, batch_size)
    batches = {
        "packed": _packed_batches(documents, length, batch_size),
        "padded": padded,
        "keras_hub": padded,
        "bucketed": _bucketed_batches(chunks, length, batch_size),
    }
    models = {
        "packed": _causal_lm(settings, packed=True),
        "padded": _causal_lm(settings, packed=False),
        "keras_hub": _keras_hub_lm(settings),
        "bucketed": _causal_lm(settings, packed=False),
    }
    losses = {name: [] for name in models}
    contenders = {
        name: _trainer(_compiled(model), batches[name], losses[name])
        for name, model in models.items()
    }
    paths = {}
    for name, train in contenders.items():  # the warm-up: compiles every shape
        taken = _spy_paths()
        train()
        paths[name] = sorted(taken)
    seconds = interleave(contenders, rounds, warmup=0)

    useful = {n: int(sum(b[2].sum() for b in bs)) for n, bs in batches.items()}
    processed = {n: sum(b[2].size for b in bs) for n, bs in batches.items()}
    if len(set(useful.values())) != 1:
        raise RuntimeError(f"packed_training: useful tokens differ: {useful}")
    work = useful["packed"]
    tokens_per_s = {n: rate_summary(s, work) for n, s in seconds.items()}
    speedup = {
        f"packed vs {n}": ratio_summary(seconds[n], seconds["packed"])
        for n in ("padded", "keras_hub", "bucketed")
    }
    met = {
        name: speedup[f"packed vs {name}"]["median"] >= TARGET
        for name in ("padded", "keras_hub")
    }
    return {
        "settings": dict(settings, rounds=rounds, bucket_multiple=BUCKET_MULTIPLE),
        "vocabulary_size": VOCABULARY,
        "corpus": {
            "files": files,
            "documents": corpus_documents,
            "sampled_documents": len(documents),
            "chunks": len(chunks),
            "tokens": int(sum(len(d) for d in documents)),
        },
        "useful_tokens": work,
        "processed_tokens": processed,
        "padding_efficiency": {n: work / p for n, p in processed.items()},
        "steps": {n: len(bs) for n, bs in batches.items()},
        "bucket_shapes": sorted({tuple(b[2].shape) for b in batches["bucketed"]}),
        "parameters": {n: m.count_params() for n, m in models.items()},
        "jit_compile": {n: bool(m.jit_compile) for n, m in models.items()},
        "attention_paths": paths,  # keras_attn's; none for keras-hub
        "seconds": {n: summary(s) for n, s in seconds.items()},
        "useful_tokens_per_s": tokens_per_s,
        "speedup": speedup,
        "target": TARGET,
        "met": met,
        "last_loss": {n: values[-1] for n, values in losses.items()},
    }


def markdown(r):
    """The case's section as Markdown lines, in the style of `_report.py`."""
    s, c = r["settings"], r["corpus"]
    out = [
        f"### Packed vs padded training: rows of {s['sequence_length']:,} tokens, "
        f"batch {s['batch_size']}, {s['num_layers']} layer(s) of width "
        f"{s['hidden_dim']} ({s['num_heads']} heads, FFN {s['intermediate_dim']})",
        "",
        f"{c['sampled_documents']} documents ({c['chunks']} chunks of at most "
        f"{s['sequence_length']:,}) sampled from {c['documents']:,} of {c['files']} "
        f"stdlib files: {r['useful_tokens']:,} useful tokens per round; "
        f"{s['rounds']} interleaved rounds.",
        "",
    ]
    rows = [
        [
            name,
            summary_text(r["useful_tokens_per_s"][name], 0),
            summary_text(r["seconds"][name], 2),
            r["steps"][name],
            f"{r['padding_efficiency'][name]:.2f}",
            f"{r['parameters'][name]:,}",
            "yes" if r["jit_compile"][name] else "no",
            ", ".join(r["attention_paths"][name]) or "(keras)",
            f"{r['last_loss'][name]:.3f}",
        ]
        for name in r["seconds"]
    ]
    out += table(
        [
            "contender",
            "useful tokens/s",
            "seconds per round",
            "steps",
            "useful / processed",
            "parameters",
            "jit_compile",
            "attention path",
            "last loss",
        ],
        rows,
    )
    ratios = []
    for name, ratio in r["speedup"].items():
        other = name.split(" vs ")[1]
        target = f">= {r['target']:g}" if other in r["met"] else ""
        met = "" if other not in r["met"] else ("yes" if r["met"][other] else "**no**")
        ratios.append([name, summary_text(ratio, 2), target, met])
    out += table(["comparison", "useful tokens/s ratio", "target", "met"], ratios)
    shapes = ", ".join(f"{b}x{t}" for b, t in r["bucket_shapes"])
    return out + [f"Bucketed batch shapes: {shapes}.", ""]


if __name__ == "__main__":
    from benchmarks._timing import case_main

    case_main(run)
