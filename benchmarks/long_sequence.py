"""Target 3: long-sequence self-attention in little memory.

One training step (forward, backward, optimizer update) of a causal multi-head
self-attention layer at length 16,384 (batch 1, 8 heads, head dim 64), and a forward
pass at length 65,536. Every measurement runs in its own child process, whose peak
resident memory (VmHWM: interpreter, backend, weights and all) is the figure; a
child that passes the cap is killed and reported as over it.
"""

import json
import os
import sys
import time

HEADS, HEAD_DIM = 8, 64
WIDTH = HEADS * HEAD_DIM
CAP_GIB = 6.0


def _configurations(quick):
    train_length, forward_length = (2048, 4096) if quick else (16384, 65536)
    contenders = [("keras_attn", None)]  # the automatic choice
    if os.environ.get("KERAS_BACKEND") == "torch" and not quick:
        # Elsewhere the automatic choice at this length is the chunked path already.
        contenders.append(("keras_attn", "chunked"))
    if not quick:
        contenders.append(("keras", None))  # keras.layers.MultiHeadAttention
    configs = [
        dict(layer=layer, implementation=impl, mode="train", length=train_length)
        for layer, impl in contenders
    ]
    configs.append(
        dict(
            layer="keras_attn",
            implementation=None,
            mode="forward",
            length=forward_length,
            steps=1,  # memory only: a second 65k pass would double the wait
        )
    )
    return configs


def run(quick=False, rounds=None):
    from benchmarks import _memory

    measurements = []
    for config in _configurations(quick):
        # 65k causal forward is ~4.4 TFLOP: minutes on two loaded cores.
        timeout = 120 if quick else 600
        report = _memory.run_child(
            "benchmarks.long_sequence",
            config,
            cap_bytes=CAP_GIB * _memory.GIB,
            timeout=timeout,
            env=dict(os.environ),
        )
        report["config"] = config
        measurements.append(report)
        print(json.dumps(_brief(report)), file=sys.stderr, flush=True)
    return {"case": "long_sequence", "cap_gib": CAP_GIB, "measurements": measurements}


def _brief(report):
    result = report.get("result") or {}
    return {
        **report["config"],
        "status": report["status"],
        "peak_rss_gib": report["peak_rss_gib"],
        "step_seconds": result.get("step_seconds"),
        "step_cpu_seconds": result.get("step_cpu_seconds"),
    }


def _one(config):
    """Child: build the layer, run the step twice, report times and memory."""
    import keras
    import numpy as np

    from benchmarks import _memory

    length, mode = config["length"], config["mode"]
    inputs = keras.Input((length, WIDTH), batch_size=1)
    if config["layer"] == "keras":
        layer = keras.layers.MultiHeadAttention(HEADS, HEAD_DIM)
    else:
        from keras_attn.layers import MultiHeadAttention

        layer = MultiHeadAttention(
            HEADS, HEAD_DIM, implementation=config["implementation"]
        )
    outputs = layer(inputs, inputs, use_causal_mask=True)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(1, length, WIDTH)).astype("float32")
    baseline = _memory.own_rss_gib()
    if mode == "train":
        model.compile(optimizer="sgd", loss="mse")

    def step():
        if mode == "train":
            # Reading the loss waits for the step: JAX dispatches asynchronously,
            # and an allocation failure only surfaces when the value is read.
            float(np.asarray(model.train_on_batch(x, x)))
        else:
            keras.ops.convert_to_numpy(model.predict_on_batch(x))

    # The first step includes tracing and compilation, the second is the step
    # alone. CPU seconds are reported beside wall seconds since a shared
    # machine's load inflates the latter.
    times = []
    for _ in range(config.get("steps", 2)):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        "first_step_seconds": times[0][0],
        "first_step_cpu_seconds": times[0][1],
        "step_seconds": times[-1][0],
        "step_cpu_seconds": times[-1][1],
        "rss_before_step_gib": baseline,
        "peak_rss_gib": _memory.own_peak_gib(),
        "loadavg": list(os.getloadavg()),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(_one(json.loads(sys.argv[2]))), flush=True)
    else:
        from benchmarks._timing import case_main

        case_main(run)
