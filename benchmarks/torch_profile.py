"""Per-op profile of the encoder training step on torch (`torch.profiler`).

    KERAS_BACKEND=torch python -m benchmarks.torch_profile "keras_attn"
    KERAS_BACKEND=torch python -m benchmarks.torch_profile "keras MHA block"

Trains the contender of `benchmarks/encoder_training.py` for one epoch of four
steps (after one untimed epoch) under the profiler and prints the operators by
self CPU time, grouped by input shape: where a step's time goes.
"""

import sys

import numpy as np

from benchmarks import encoder_training


def main(name, steps=4, rows=30):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    shape = (steps * encoder_training.BATCH, encoder_training.LENGTH)
    x = np.random.default_rng(0).normal(size=shape + (encoder_training.WIDTH,))
    x = x.astype("float32")
    model = encoder_training._keras_model(encoder_training.BLOCKS[name], False)

    def fit():
        model.fit(x, x, batch_size=encoder_training.BATCH, epochs=1, verbose=0)

    fit()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fit()
    print(f"{name}: {steps} training steps")
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows
    )
    print(table)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "keras_attn")
