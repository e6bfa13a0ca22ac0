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

from keras_attn.ops._chunked import chunked_attention

# Static attributes of a pattern and of the logit modifiers: the program's key.
_HASHABLE = (int, float, bool, str, type(None))


def attention(query, key, value, pattern, modifiers, sinks, scale, chunk_size):
    """`chunked_attention`, through a cached compiled program when JAX runs eagerly."""
    configuration = _configuration(pattern, modifiers, scale, chunk_size)
    arrays = (query, key, value, pattern.segment_ids, pattern.mask, modifiers.bias)
    if configuration is None or not _eager_jax(arrays + (sinks,)):
        return chunked_attention(
            query, key, value, pattern, modifiers, sinks, scale, chunk_size
        )
    program = _program(configuration, pattern.__class__, modifiers.__class__)
    return program(*arrays, sinks)


def _configuration(pattern, modifiers, scale, chunk_size):
    """A hashable key of everything but the arrays, or None: not compiled."""
    if pattern.mask_mod is not None or modifiers.score_mod is not None:
        return None
    tensors = ("segment_ids", "mask", "mask_mod", "bias", "score_mod", "pattern")
    items = [
        (owner, name, value)
        for owner, attributes in (("pattern", pattern), ("modifiers", modifiers))
        for name, value in sorted(vars(attributes).items())
        if name not in tensors
    ]
    if not all(isinstance(value, _HASHABLE) for _, _, value in items):
        return None  # a length known only as a tensor
    return (tuple(items), float(scale), int(chunk_size))


def _eager_jax(arrays):
    if keras.backend.backend() != "jax":
        return False
    import jax

    leaves = jax.tree_util.tree_leaves(arrays)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


@functools.lru_cache(maxsize=64)
def _program(configuration, pattern_class, modifiers_class):
    import jax

    items, scale, chunk_size = configuration

    def rebuilt(cls, owner, **tensors):
        instance = cls.__new__(cls)
        vars(instance).update(
            {name: value for who, name, value in items if who == owner}, **tensors
        )
        return instance

    def run(query, key, value, segment_ids, mask, bias, sinks):
        pattern = rebuilt(
            pattern_class, "pattern", segment_ids=segment_ids, mask=mask, mask_mod=None
        )
        modifiers = rebuilt(
            modifiers_class, "modifiers", bias=bias, score_mod=None, pattern=pattern
        )
        return chunked_attention(
            query, key, value, pattern, modifiers, sinks, scale, chunk_size
        )

    return jax.jit(run)
