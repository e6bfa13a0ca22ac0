"""Cached decoding with the default `generate` call, against recomputing the prefix,
keras-hub's cached decoder and (on torch) Hugging Face's GPT-2.

Greedy decoding of `max_length - 1` tokens from one start token, batch 1:

- `keras_attn generate`: `keras_attn.generation.generate` of a `CausalLM` (pre-LN
  decoder blocks, learned positions, tied head) as a user calls it: key/value
  caches and the compiled loop or step of `generation/_compiled.py`.
- `keras_attn recompute`: the same call with `use_cache=False`: the whole
  fixed-length token buffer through the model at every step (the reference the
  cache is tested against), compiled the same way.
- `keras_hub cached`: a stack of `keras_hub.layers.TransformerDecoder` of the same
  size with their caches, driven by keras-hub's `GreedySampler` as keras-hub's
  own models drive it: eagerly, and as `cached jit` compiled the way
  keras-hub's `CausalLM.generate` compiles it, a `tf.function(jit_compile=True)`
  on TensorFlow and a `jax.jit` of the stateless loop on JAX (torch: eager only).
- `hf_gpt2 generate` (torch): `transformers.GPT2LMHeadModel` of the same size,
  random weights, `generate(use_cache=True)`, greedy, the same number of tokens.

`compile` records the first `generate` call of a new model (tracing and
compiling) and the second call of the same shapes, against the median call.
"""

import time

import keras
from keras import ops

from benchmarks import _timing

VOCABULARY = 1000


def _settings(quick):
    if quick:
        return dict(num_layers=2, width=256, heads=4, intermediate=512, max_length=32)
    return dict(num_layers=6, width=512, heads=8, intermediate=2048, max_length=256)


def _causal_lm(num_layers, width, heads, intermediate, max_length):
    from keras_attn.models import CausalLM

    keras.utils.set_random_seed(0)
    return CausalLM(
        VOCABULARY,
        num_layers=num_layers,
        hidden_dim=width,
        intermediate_dim=intermediate,
        num_heads=heads,
        max_sequence_length=max_length,
        dropout=0.0,
    )


def _generate(model, max_length, use_cache):
    from keras_attn.generation import generate

    def timed():
        ops.convert_to_numpy(
            generate(model, [[1]], max_length=max_length, use_cache=use_cache)
        )

    return timed


class KerasHubStack:
    """Embedding, keras-hub decoder layers and vocabulary head, with their caches."""

    def __init__(self, num_layers, width, heads, intermediate, max_length):
        from keras_hub.layers import TransformerDecoder

        keras.utils.set_random_seed(0)
        self.width, self.heads, self.max_length = width, heads, max_length
        tokens = keras.Input((max_length,), batch_size=1, dtype="int32")
        x = keras.layers.Embedding(VOCABULARY, width)(tokens)
        self.embedding = x._keras_history.operation
        self.decoders = []
        for _ in range(num_layers):
            layer = TransformerDecoder(
                intermediate_dim=intermediate, num_heads=heads, dropout=0.0
            )
            x = layer(x)
            self.decoders.append(layer)
        self.head = keras.layers.Dense(VOCABULARY)
        self.model = keras.Model(tokens, self.head(x))

    def initial_cache(self, batch):
        shape = (batch, 2, self.max_length, self.heads, self.width // self.heads)
        return tuple(ops.zeros(shape) for _ in self.decoders)

    def next(self, prompt, cache, index):
        token = ops.slice(prompt, (0, index - 1), (ops.shape(prompt)[0], 1))
        x = self.embedding(token)
        updated = []
        for layer, layer_cache in zip(self.decoders, cache):
            x, layer_cache = layer(
                x,
                self_attention_cache=layer_cache,
                self_attention_cache_update_index=index - 1,
            )
            updated.append(layer_cache)
        return self.head(x)[:, 0], None, tuple(updated)

    def generator(self, jit):
        from keras_hub.samplers import GreedySampler

        sampler = GreedySampler()
        prompt = ops.zeros((1, self.max_length), dtype="int32")

        def generate():
            cache = self.initial_cache(1)
            return sampler(self.next, prompt, cache=cache, index=1, model=self.model)

        if jit and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            generate = tf.function(generate, jit_compile=True)
        elif jit:
            generate = self._jax_jit(generate)

        def timed():
            ops.convert_to_numpy(generate())

        return timed

    def _jax_jit(self, generate):
        import jax

        variables = self.model.variables

        def stateless(values):
            with keras.StatelessScope(state_mapping=zip(variables, values)):
                return generate()

        compiled = jax.jit(stateless)
        return lambda: compiled([variable.value for variable in variables])


def _hugging_face_gpt2(num_layers, width, heads, intermediate, max_length):
    import torch
    from transformers import GPT2Config
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCABULARY,
        n_positions=max_length,
        n_embd=width,
        n_layer=num_layers,
        n_head=heads,
        n_inner=intermediate,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config).eval()
    prompt = torch.ones((1, 1), dtype=torch.long)
    new_tokens = max_length - 1

    def timed():
        model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )

    return timed


def _compile_times(settings):
    """The first and second `generate` call of a model that never decoded."""
    model = _causal_lm(**settings)
    timed = _generate(model, settings["max_length"], use_cache=True)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        timed()
        times.append(time.perf_counter() - start)
    return times


def run(quick=False, rounds=None):
    settings = _settings(quick)
    rounds = rounds or (2 if quick else 3)
    max_length = settings["max_length"]
    first_call, second_call = _compile_times(settings)
    model = _causal_lm(**settings)
    hub = KerasHubStack(**settings)
    contenders = {
        "keras_attn generate": _generate(model, max_length, use_cache=True),
        "keras_attn recompute": _generate(model, max_length, use_cache=False),
        "keras_hub cached": hub.generator(jit=False),
    }
    backend = keras.backend.backend()
    if backend in ("tensorflow", "jax"):
        contenders["keras_hub cached jit"] = hub.generator(jit=True)
    if backend == "torch":
        contenders["hf_gpt2 generate"] = _hugging_face_gpt2(**settings)
    times = _timing.interleave(contenders, rounds)
    ours = times["keras_attn generate"]
    tokens = max_length - 1
    return {
        "case": "cached_decoding",
        "settings": settings,
        "generated_tokens": tokens,
        "seconds": {k: _timing.summary(v) for k, v in times.items()},
        "tokens_per_second": {
            k: _timing.rate_summary(v, tokens) for k, v in times.items()
        },
        # Each contender's time over ours: > 1 means `generate` is faster.
        "speedup_of_generate": {
            name: _timing.ratio_summary(other, ours)
            for name, other in times.items()
            if name != "keras_attn generate"
        },
        "compile": {
            "first_call_s": first_call,
            "second_call_s": second_call,
            "median_call_s": _timing.summary(ours)["median"],
        },
    }


if __name__ == "__main__":
    _timing.case_main(run)
