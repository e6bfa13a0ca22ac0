"""Whether a call runs eagerly: where we compile a program ourselves.

Inside a `tf.function` or a `jax.jit` trace (a user's, an export's, Keras' own
`fit`/`predict`), the caller compiles already, so our functions run as traced code.
"""

import keras


def is_eager(structure=()):
    """True unless TensorFlow builds a graph, `structure` holds JAX tracers, or
    torch traces (`torch.compile`, `torch.jit.trace`), or `structure` holds torch
    tensors without values (`torch.export`'s fake tensors, the meta device of
    Keras' shape inference)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        leaves = jax.tree_util.tree_leaves(structure)
        return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
    if backend == "torch":
        import torch
        from torch._subclasses.fake_tensor import is_fake

        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False
        return not any(
            isinstance(leaf, torch.Tensor) and (leaf.is_meta or is_fake(leaf))
            for leaf in keras.tree.flatten(structure)
        )
    return True
