"""Target 4: cached decoding against recomputing the prefix, and against keras-hub.

A decoder-only stack (token embedding, N `TransformerDecoder` layers without
cross-attention, a vocabulary projection) generates `max_length` tokens greedily
from one start token. Every contender is driven by the same loop, keras-hub's
`GreedySampler` (`keras.ops.while_loop`: one compiled loop on JAX, eager on
TensorFlow and torch, or compiled with XLA on TensorFlow in the `jit` variant):

- `keras_attn cached`: our decoder layers with a per-layer key/value cache, feeding
  one token per step.
- `keras_hub cached`: `keras_hub.layers.TransformerDecoder` with its cache, the same.
- `keras_attn recompute`: our layers on the whole fixed-length token buffer every
  step (what `generate(..., use_cache=False)` does: one shape, compiled once).
  Every such step costs the same, so it is timed over the last
  `RECOMPUTE_STEPS` positions and scaled to the full run (a full run is ~25x
  the work of a cached one: minutes on two shared cores).
"""

import keras
from keras import ops

from benchmarks import _timing

VOCABULARY = 1000
RECOMPUTE_STEPS = 8


def _settings(quick):
    if quick:
        return dict(num_layers=2, width=256, heads=4, intermediate=512, max_length=32)
    return dict(num_layers=6, width=512, heads=8, intermediate=2048, max_length=256)


class DecoderStack:
    """Embedding, decoder layers and vocabulary head, with cached and full `next`."""

    def __init__(self, flavor, num_layers, width, heads, intermediate, max_length):
        if flavor == "keras_hub":
            from keras_hub.layers import TransformerDecoder
        else:
            from keras_attn.layers import TransformerDecoder
        keras.utils.set_random_seed(0)
        self.width, self.heads, self.max_length = width, heads, max_length
        tokens = keras.Input((max_length,), batch_size=1, dtype="int32")
        x = keras.layers.Embedding(VOCABULARY, width)(tokens)
        self.embedding = x._keras_history.operation
        self.decoders = []
        for _ in range(num_layers):
            layer = TransformerDecoder(
                intermediate_dim=intermediate,
                num_heads=heads,
                dropout=0.0,
                activation="relu",
            )
            x = layer(x)
            self.decoders.append(layer)
        self.head = keras.layers.Dense(VOCABULARY)
        self.model = keras.Model(tokens, self.head(x))

    def initial_cache(self, batch):
        shape = (batch, 2, self.max_length, self.heads, self.width // self.heads)
        return tuple(ops.zeros(shape) for _ in self.decoders)

    def cached_next(self, prompt, cache, index):
        token = ops.slice(prompt, (0, index - 1), (ops.shape(prompt)[0], 1))
        x = self.embedding(token)
        updated = []
        for layer, layer_cache in zip(self.decoders, cache):
            # Decoder-only blocks of both libraries return (x, cache).
            x, layer_cache = layer(
                x,
                self_attention_cache=layer_cache,
                self_attention_cache_update_index=index - 1,
            )
            updated.append(layer_cache)
        return self.head(x)[:, 0], None, tuple(updated)

    def full_next(self, prompt, cache, index):
        logits = self.model(prompt, training=False)  # (B, T, V)
        batch = ops.shape(logits)[0]
        logits = ops.slice(logits, (0, index - 1, 0), (batch, 1, VOCABULARY))
        return logits[:, 0], None, cache


def _generator(stack, use_cache, jit, start_index=1):
    from keras_hub.samplers import GreedySampler

    sampler = GreedySampler()
    prompt = ops.zeros((1, stack.max_length), dtype="int32")
    next_fn = stack.cached_next if use_cache else stack.full_next

    def generate():
        cache = stack.initial_cache(1) if use_cache else ()
        return sampler(
            next_fn, prompt, cache=cache, index=start_index, model=stack.model
        )

    if jit and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        generate = tf.function(generate, jit_compile=True)

    def timed():
        ops.convert_to_numpy(generate())

    return timed, generate


def run(quick=False, rounds=None):
    settings = _settings(quick)
    rounds = rounds or (2 if quick else 5)
    ours = DecoderStack("keras_attn", **settings)
    hub = DecoderStack("keras_hub", **settings)

    contenders = {
        "keras_attn cached": _generator(ours, True, False),
        "keras_hub cached": _generator(hub, True, False),
    }
    if keras.backend.backend() == "tensorflow":
        contenders["keras_attn cached jit"] = _generator(ours, True, True)
        contenders["keras_hub cached jit"] = _generator(hub, True, True)
    tokens = settings["max_length"] - 1
    recompute_start = settings["max_length"] - RECOMPUTE_STEPS
    timed = {name: timed for name, (timed, _) in contenders.items()}
    variants = [v for v in ("", " jit") if f"keras_attn cached{v}" in contenders]
    for v in variants:
        timed[f"keras_attn recompute{v}"] = _generator(
            ours, False, bool(v), recompute_start
        )[0]
    cached = _timing.interleave(timed, rounds)
    against_full, speedups = {}, {}
    for v in variants:
        # Scale the timed steps of the recompute to the whole run.
        recompute = [
            t * tokens / RECOMPUTE_STEPS for t in cached.pop(f"keras_attn recompute{v}")
        ]
        against_full[f"keras_attn recompute{v}"] = recompute
        speedups[f"cached{v}"] = _timing.ratio_summary(
            recompute, cached[f"keras_attn cached{v}"]
        )
    return {
        "case": "cached_decoding",
        "settings": settings,
        "generated_tokens": tokens,
        "seconds": {k: _timing.summary(v) for k, v in cached.items()},
        "tokens_per_second": {
            k: _timing.rate_summary(v, tokens) for k, v in cached.items()
        },
        "speedup_vs_keras_hub": _ratios(cached),
        "recompute_steps_timed": RECOMPUTE_STEPS,
        "recompute_seconds": {k: _timing.summary(v) for k, v in against_full.items()},
        "speedup_vs_recompute": speedups,
    }


def _ratios(times):
    """keras-hub's time over ours, per variant (eager, jit): > 1 means we are faster."""
    ratios = {}
    for variant in ("cached", "cached jit"):
        ours, theirs = f"keras_attn {variant}", f"keras_hub {variant}"
        if ours in times and theirs in times:
            ratios[variant] = _timing.ratio_summary(times[theirs], times[ours])
    return ratios


if __name__ == "__main__":
    _timing.case_main(run)
