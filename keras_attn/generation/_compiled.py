"""The decoding loop as one compiled program per model and configuration.

Called eagerly, a sampler's `keras.ops.while_loop` runs one step after another
through Keras' eager dispatch (TensorFlow), or traces and compiles its body anew at
every call (JAX). Here the loop of an eager `generate` call is compiled once per
model and configuration, and later calls of the same shapes reuse the program:

- TensorFlow: a `tf.function` compiled with XLA (255 tokens of a 6-layer decoder
  of width 512 on an AMD EPYC: 1.7 s, against 3.5 s as a plain graph).
  Variables are captured by reference: a program sees weights assigned later.
- JAX: a `jax.jit` program that takes the variables' values as arguments (through
  a `keras.StatelessScope`), so that it never keeps stale weights as constants;
  the sampler's random state comes back out and is assigned.
- torch: the sampler's loop runs eagerly, and each decoding step (the model's
  `next` function: embedding, every block, the head) as one `torch.jit.trace`
  graph per model, configuration and shapes (`step`), without the Python of ~80
  Keras layer calls. The variables' values are inputs of the graph, as on JAX,
  and the step index is a tensor input, so one graph serves every step. The
  step writes keys and values into the caches in place
  (`layers/_kv_cache.written_by`): they are `generate`'s own, and a functional
  write copies every layer's whole cache per token. `torch.compile` and
  `torch.export`, which torch recommends over the deprecated TorchScript, spent
  107 s on the first step of that decoder and recompiled as the index changed;
  a torch without `torch.jit.trace` decodes eagerly.

Inside a trace (a `tf.function` or `jax.jit` of the caller, an export) the loop
runs as traced code of that trace.
"""

import json
import warnings

import keras

from keras_attn._eager import is_eager
from keras_attn.layers import _kv_cache

# The programs of a model, on the model itself (not tracked by Keras).
_PROGRAMS = "_keras_attn_decoding_programs"


def run(model, key, loop, sampler, *arrays):
    """`loop(*arrays)`, through `model`'s program for `key` when called eagerly.

    `key` names everything `loop` depends on besides `arrays`, the model's
    variables and `sampler`, whose configuration joins the key. A program keeps
    the sampler of the call that built it and takes the random state of each
    call's own sampler: a new seeded sampler draws what it would draw alone.
    """
    backend = keras.backend.backend()
    if backend == "torch" or not is_eager(arrays):
        return loop(*arrays)
    programs = _programs(model)
    key = (key, type(sampler), json.dumps(sampler.get_config(), sort_keys=True))
    if key not in programs:
        build = _tensorflow_program if backend == "tensorflow" else _jax_program
        programs[key] = build(loop, model, sampler)
    state = [variable.value for variable in sampler.variables]
    outputs, state = programs[key](state, *arrays)
    for variable, value in zip(sampler.variables, state):
        variable.assign(value)
    return outputs


def step(model, key, next_logits):
    """The sampler's `next_logits(prompt, cache, index)`, traced once on torch.

    Elsewhere `next_logits` itself: `run` compiles the whole loop. On torch the
    values of the variables are read now, once per `generate` call.
    """
    if keras.backend.backend() != "torch":
        return next_logits
    import torch

    if not hasattr(torch.jit, "trace"):  # a torch without TorchScript: eager
        return next_logits

    variables = list(model.variables)
    values = tuple(variable.value.detach() for variable in variables)

    def stateless_next(values, prompt, cache, index):
        mapping = zip(variables, values)
        with (
            keras.StatelessScope(state_mapping=mapping),
            _kv_cache.written_by(_write_in_place),
        ):
            logits, _, cache = next_logits(prompt, cache, index)
        return logits, cache

    graphs = _programs(model)

    def traced_next(prompt, cache, index):
        index = torch.as_tensor(index, dtype=torch.int32)
        arguments = (values, prompt, cache, index)
        shapes = keras.tree.map_structure(
            lambda t: (tuple(t.shape), t.dtype), arguments[1:3]
        )
        graph_key = ("step", key, repr(shapes))
        if graph_key not in graphs:
            with warnings.catch_warnings():
                # Shapes and checked arguments become constants of the graph,
                # as they are for every step of these shapes.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # TorchScript is deprecated for torch.compile/torch.export, whose
                # tracing through Keras' layer calls takes minutes (see above).
                warnings.simplefilter("ignore", DeprecationWarning)
                graphs[graph_key] = torch.jit.trace(
                    stateless_next, arguments, check_trace=False
                )
        logits, cache = graphs[graph_key](*arguments)
        return logits, None, cache

    return traced_next


def _write_in_place(cache, updates, index):
    """`cache` with `updates` written at positions `index...` of axis 2, in place."""
    import torch

    positions = torch.arange(updates.shape[2], device=cache.device)
    positions = positions + torch.as_tensor(index, device=cache.device).long()
    return cache.index_copy_(2, positions, updates.to(cache.dtype))


def _programs(model):
    """The dict of `model`'s programs, on the model (not tracked by Keras)."""
    programs = model.__dict__.get(_PROGRAMS)
    if programs is None:
        programs = {}
        object.__setattr__(model, _PROGRAMS, programs)
    return programs


def _tensorflow_program(loop, model, sampler):
    import tensorflow as tf

    variables = sampler.variables

    @tf.function(jit_compile=True)
    def program(state, *arrays):
        for variable, value in zip(variables, state):
            variable.assign(value)
        outputs = loop(*arrays)
        return outputs, [variable.value for variable in variables]

    return program


def _jax_program(loop, model, sampler):
    import jax

    model_variables, sampler_variables = list(model.variables), sampler.variables

    def stateless_loop(model_values, state, *arrays):
        mapping = zip(model_variables + sampler_variables, model_values + state)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = loop(*arrays)
        return outputs, [
            _current_value(scope, variable, value)
            for variable, value in zip(sampler_variables, state)
        ]

    compiled = jax.jit(stateless_loop)

    def program(state, *arrays):
        model_values = [variable.value for variable in model_variables]
        return compiled(model_values, state, *arrays)

    return program


def _current_value(scope, variable, value):
    """The value `variable` was assigned in `scope`, else the one it came in with."""
    assigned = scope.get_current_value(variable)
    return value if assigned is None else assigned
