"""Eager JAX calls of the chunked path, compiled once per configuration.

Outside `jit`, JAX runs `lax.scan` and a custom gradient by tracing and compiling
their bodies on every call, because every call builds them anew: 0.7 s per eager
call of the chunked path, at any length. Here an eager call goes through one
`jax.jit` program per configuration (lengths, mask kinds, scale, block size),
which later calls of the same shapes reuse.

Only structured calls are compiled this way: a `mask_mod` or `score_mod` may close
over values that change between calls (a variable, a list), which a cached program
would keep as the constants of its first call.
"""

import functools

import keras

from keras_attn._eager import is_eager
from keras_attn.ops._chunked import chunked_attention

# Static attributes of a pattern and of the logit modifiers: the program's key.
_HASHABLE = (int, float, bool, str, type(None))


def attention(query, key, value, pattern, modifiers, sinks, scale, chunk_size):
    """`chunked_attention`, through a cached compiled program when JAX runs eagerly."""
    configuration = _configuration(pattern, modifiers, scale, chunk_size)
    arrays = (query, key, value, pattern.segment_ids, pattern.mask, modifiers.bias)
    on_jax = keras.backend.backend() == "jax"
    if configuration is None or not on_jax or not is_eager(arrays + (sinks,)):
        return chunked_attention(
            query, key, value, pattern, modifiers, sinks, scale, chunk_size
        )
    program = _program(configuration, pattern.__class__, modifiers.__class__)
    return program(*arrays, sinks)


def _configuration(pattern, modifiers, scale, chunk_size):
    """A hashable key of everything but the arrays, or None: not compiled."""
    if pattern.mask_mod is not None or modifiers.score_mod is not None:
        return None
    static = (_static_attributes(pattern), _static_attributes(modifiers))
    values = [value for attributes in static for _, value in attributes]
    if not all(isinstance(value, _HASHABLE) for value in values):
        return None  # a length known only as a tensor
    return static + (float(scale), int(chunk_size))


def _static_attributes(instance):
    """`(name, value)` of the attributes that are not tensors, sorted by name."""
    return tuple(
        sorted(
            (name, value)
            for name, value in vars(instance).items()
            if name not in instance.TENSOR_ATTRIBUTES
        )
    )


@functools.lru_cache(maxsize=64)
def _program(configuration, pattern_class, modifiers_class):
    import jax

    pattern_attributes, modifier_attributes, scale, chunk_size = configuration

    def run(query, key, value, segment_ids, mask, bias, sinks):
        pattern = _rebuilt(
            pattern_class, pattern_attributes, segment_ids=segment_ids, mask=mask
        )
        modifiers = _rebuilt(
            modifiers_class, modifier_attributes, bias=bias, pattern=pattern
        )
        return chunked_attention(
            query, key, value, pattern, modifiers, sinks, scale, chunk_size
        )

    return jax.jit(run)


def _rebuilt(cls, static_attributes, **tensors):
    """A `cls` instance from its static attributes and its tensors (callables: None)."""
    instance = cls.__new__(cls)
    vars(instance).update(dict.fromkeys(cls.TENSOR_ATTRIBUTES), **tensors)
    vars(instance).update(static_attributes)
    return instance
