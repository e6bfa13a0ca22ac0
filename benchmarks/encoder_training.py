"""Targets 1, 2 and 5: Transformer encoder training throughput and inference latency.

The same work for every contender: one post-LN encoder block (width 256, 8 heads,
feed-forward 1024, ReLU, no dropout) on float inputs of batch 8 x length 256, with
Adam and a mean-squared error, trained with `model.fit` (tokens/s) and run for
inference (latency of one batch). Contenders, interleaved round by round:

- `keras_attn`: `keras_attn.layers.TransformerEncoder`.
- `keras MHA block`: the same block written with `keras.layers.MultiHeadAttention`.
- `keras_hub`: `keras_hub.layers.TransformerEncoder`.
- torch only: `torch loop`, `torch.nn.TransformerEncoderLayer` in a plain training
  loop; and `keras_attn jit`, our model compiled with `jit_compile=True`
  (`torch.compile`), where Keras offers it.
- `BLAS peak`: a float32 matrix product (NumPy; torch's own on torch), the
  roofline of this run.
- `step GEMMs`: the matrix products of one training step alone
  (`benchmarks/_gemms.py`), the profile that says how much of a step is GEMM time.

On TensorFlow and JAX every Keras model is compiled with `jit_compile=True` (XLA).
"""

import keras
import numpy as np

from benchmarks import _gemms
from benchmarks import _timing

BATCH, LENGTH, WIDTH, HEADS, INTERMEDIATE = 8, 256, 256, 8, 1024
GEMM_SIZE = 1024


def step_products():
    return _gemms.step_products(BATCH, LENGTH, WIDTH, HEADS, INTERMEDIATE)


def step_flops():
    """Floating-point operations of one training step (forward + 2x backward)."""
    return _gemms.flops(step_products())


def _keras_attn_block(inputs):
    from keras_attn.layers import TransformerEncoder

    return TransformerEncoder(
        intermediate_dim=INTERMEDIATE, num_heads=HEADS, dropout=0.0, activation="relu"
    )(inputs)


def _keras_hub_block(inputs):
    from keras_hub.layers import TransformerEncoder

    return TransformerEncoder(
        intermediate_dim=INTERMEDIATE, num_heads=HEADS, dropout=0.0, activation="relu"
    )(inputs)


def _keras_mha_block(inputs):
    layers = keras.layers
    attended = layers.MultiHeadAttention(HEADS, WIDTH // HEADS)(inputs, inputs)
    x = layers.LayerNormalization(epsilon=1e-5)(inputs + attended)
    hidden = layers.Dense(INTERMEDIATE, activation="relu")(x)
    return layers.LayerNormalization(epsilon=1e-5)(x + layers.Dense(WIDTH)(hidden))


BLOCKS = {
    "keras_attn": _keras_attn_block,
    "keras MHA block": _keras_mha_block,
    "keras_hub": _keras_hub_block,
}


def _keras_model(block, jit_compile):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((LENGTH, WIDTH))
    model = keras.Model(inputs, block(inputs))
    model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
    return model


def _fit(model, x, y):
    def run():
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)

    return run


def _predict(model, x):
    def run():
        keras.ops.convert_to_numpy(model.predict_on_batch(x))

    return run


def _torch_contenders(x, y):
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        WIDTH, HEADS, INTERMEDIATE, dropout=0.0, batch_first=True
    )
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    xs = torch.from_numpy(x).split(BATCH)
    ys = torch.from_numpy(y).split(BATCH)

    def train():
        layer.train()
        for xb, yb in zip(xs, ys):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(layer(xb), yb)
            loss.backward()
            optimizer.step()

    def infer():
        layer.eval()
        with torch.inference_mode():
            layer(xs[0])

    return train, infer


def _gemm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(GEMM_SIZE, GEMM_SIZE)).astype("float32")
    b = rng.normal(size=(GEMM_SIZE, GEMM_SIZE)).astype("float32")
    if keras.backend.backend() == "torch":
        # NumPy's OpenBLAS beside torch's OpenMP pool measured 65 GFLOP/s here,
        # a third of what it reaches alone: use the BLAS torch itself calls.
        import torch

        a, b = torch.from_numpy(a), torch.from_numpy(b)

    def run():
        for _ in range(8):
            a @ b

    return run, 8 * 2 * GEMM_SIZE**3


def run(quick=False, rounds=None):
    backend = keras.backend.backend()
    rounds = rounds or (2 if quick else 5)
    steps = 3 if quick else 12
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, LENGTH, WIDTH)).astype("float32")
    y = rng.normal(size=(steps * BATCH, LENGTH, WIDTH)).astype("float32")

    jit = backend != "torch"
    models = {name: _keras_model(block, jit) for name, block in BLOCKS.items()}
    if backend == "torch" and not quick:
        models["keras_attn jit"] = _keras_model(_keras_attn_block, True)
    train = {name: _fit(model, x, y) for name, model in models.items()}
    infer = {name: _predict(model, x[:BATCH]) for name, model in models.items()}
    if backend == "torch":
        train["torch loop"], infer["torch loop"] = _torch_contenders(x, y)
    gemm, gemm_flops = _gemm()
    train["BLAS peak"] = gemm
    train["step GEMMs"] = _gemms.runner(step_products(), steps)

    train_times = _timing.interleave(train, rounds)
    gemm_times = train_times.pop("BLAS peak")
    step_gemm_times = train_times.pop("step GEMMs")
    infer_times = _timing.interleave(infer, rounds, warmup=2)

    tokens = steps * BATCH * LENGTH
    flops = steps * step_flops()
    anchors = [n for n in ("keras MHA block", "keras_hub") if n in train_times]
    result = {
        "case": "encoder_training",
        "shape": dict(
            batch=BATCH,
            length=LENGTH,
            width=WIDTH,
            heads=HEADS,
            intermediate=INTERMEDIATE,
            steps_per_round=steps,
        ),
        "step_gflop": step_flops() / 1e9,
        "tokens_per_second": {
            n: _timing.rate_summary(t, tokens) for n, t in train_times.items()
        },
        "blas_gflops": _timing.rate_summary(gemm_times, gemm_flops / 1e9),
        "fraction_of_blas_peak": {
            n: _timing.summary(
                [(flops / s) / (gemm_flops / g) for s, g in zip(t, gemm_times)]
            )
            for n, t in train_times.items()
        },
        "train_speedup_vs_faster_anchor": _vs_faster(train_times, anchors),
        "inference_ms": {
            n: _timing.summary([1e3 * s for s in t]) for n, t in infer_times.items()
        },
        "inference_speedup_vs_faster_anchor": _vs_faster(infer_times, anchors),
        "step_gemm_ms": _timing.summary([1e3 * t / steps for t in step_gemm_times]),
        "step_gemm_share": {
            n: _timing.ratio_summary(step_gemm_times, t) for n, t in train_times.items()
        },
    }
    if "torch loop" in train_times:
        result["train_speedup_vs_torch_loop"] = {
            n: _timing.ratio_summary(train_times["torch loop"], t)
            for n, t in train_times.items()
            if n.startswith("keras_attn")
        }
    return result


def _vs_faster(times, anchors):
    """Per round: the faster anchor's time over ours (> 1: we are faster)."""
    fastest = [min(times[a][r] for a in anchors) for r in range(len(times[anchors[0]]))]
    return {
        n: _timing.ratio_summary(fastest, t)
        for n, t in times.items()
        if n.startswith("keras_attn")
    }


if __name__ == "__main__":
    _timing.case_main(run)
