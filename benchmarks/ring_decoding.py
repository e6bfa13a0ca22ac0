"""Sliding-window decoding with a ring-buffer KV cache: constant memory and time.

A decoder-only stack (token embedding, `TransformerDecoder` layers with
`sliding_window=W`, a vocabulary head) generates `TOKENS` tokens greedily, one per
step, from caches of `initialize_cache(1, TOKENS)`: rings of `W` slots. Reported:

- the cache's bytes after steps `W`, `2W` and the last (constant by design);
- the per-step time of steps `W..2W` and of the last `W` steps (median [min, max]
  of each step's wall time) and their ratio: a ring's step attends `W + 1` keys
  whatever the position, so the ratio should stay near 1 (target <= 1.2);
- whether the tokens equal the uncached reference: the same stack run once on the
  whole generated sequence (the windowed chunked path), whose greedy choice at
  every position must be the next generated token.

The step is compiled where the backend compiles (`jax.jit`, `tf.function`) and
eager on torch under `torch.no_grad()`, as `generate` runs it; its shapes never
change, so it compiles once.
"""

import statistics
import time

import keras
import numpy as np
from keras import ops

VOCABULARY = 512


def _settings(quick):
    if quick:
        return dict(tokens=512, window=64, num_layers=2, width=128, heads=4)
    return dict(tokens=4096, window=256, num_layers=2, width=256, heads=4)


class WindowedStack:
    def __init__(self, tokens, window, num_layers, width, heads):
        from keras_attn.layers import TransformerDecoder

        keras.utils.set_random_seed(0)
        self.embedding = keras.layers.Embedding(VOCABULARY, width)
        self.decoders = [
            TransformerDecoder(
                intermediate_dim=2 * width,
                num_heads=heads,
                sliding_window=window,
                normalize_first=True,
            )
            for _ in range(num_layers)
        ]
        self.head = keras.layers.Dense(VOCABULARY)
        self.tokens = tokens
        self.full(ops.zeros((1, 8), "int32"))  # builds every layer

    def full(self, token_ids):
        """Uncached logits `(1, T, V)` of a whole sequence."""
        x = self.embedding(token_ids)
        for decoder in self.decoders:
            x = decoder(x)
        return self.head(x)

    def caches(self):
        return [d.initialize_cache(1, self.tokens) for d in self.decoders]

    def step(self, token, caches, index):
        """Next token `(1, 1)` and the caches after feeding `token` at `index`."""
        x = self.embedding(token)
        new_caches = []
        for decoder, cache in zip(self.decoders, caches):
            x, cache = decoder(
                x, self_attention_cache=cache, self_attention_cache_update_index=index
            )
            new_caches.append(cache)
        logits = self.head(x)[:, -1]
        return ops.cast(ops.argmax(logits, axis=-1), "int32")[:, None], new_caches


def _bytes(tensor):
    itemsize = np.dtype(keras.backend.standardize_dtype(tensor.dtype)).itemsize
    return int(np.prod(tensor.shape)) * itemsize


def _compiled(step):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(step)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(step, reduce_retracing=True)
    import torch

    # Eager torch records gradients: each step's caches would keep the graph of
    # every step before (per-token time grew 1.7x over 4,096 tokens).
    return torch.no_grad()(step)


def run(quick=False, rounds=None):
    from benchmarks._timing import summary

    settings = _settings(quick)
    tokens, window = settings["tokens"], settings["window"]
    stack = WindowedStack(**settings)
    step = _compiled(stack.step)
    caches = stack.caches()
    token = ops.zeros((1, 1), "int32")
    generated, seconds, cache_bytes = [0], [], {}
    started = time.perf_counter()
    for index in range(tokens - 1):
        t0 = time.perf_counter()
        token, caches = step(token, caches, ops.convert_to_tensor(index, "int32"))
        generated.append(int(ops.convert_to_numpy(token)[0, 0]))  # waits for it
        seconds.append(time.perf_counter() - t0)
        if index + 1 in (window, 2 * window, tokens - 1):
            cache_bytes[index + 1] = sum(_bytes(c) for c in caches)
    total = time.perf_counter() - started

    logits = stack.full(ops.convert_to_tensor([generated], "int32"))
    reference = ops.convert_to_numpy(ops.argmax(logits, axis=-1))[0, :-1]
    agree = int(np.sum(reference == np.asarray(generated[1:])))
    early = seconds[window : 2 * window]
    late = seconds[-window:]
    return {
        "settings": settings,
        "cache_shape": [list(c.shape) for c in caches],
        "cache_bytes_after_step": cache_bytes,
        "first_step_s": seconds[0],
        "steps_window_to_2window_s": summary(early),
        "last_window_steps_s": summary(late),
        "late_over_early": statistics.median(late) / statistics.median(early),
        # After the first (compiling) step.
        "tokens_per_s": (len(seconds) - 1) / sum(seconds[1:]),
        "wall_s": total,
        "tokens_equal_uncached": agree == tokens - 1,
        "positions_agreeing": agree,
        "positions": tokens - 1,
    }


if __name__ == "__main__":
    from benchmarks._timing import case_main

    case_main(run)
