"""Whether a call runs eagerly: where we compile a program ourselves.

Inside a `tf.function` or a `jax.jit` trace (a user's, an export's, Keras' own
`fit`/`predict`), the caller compiles already, so our functions run as traced code.
"""

import keras


def is_eager(structure=()):
    """True unless TensorFlow builds a graph or `structure` holds JAX tracers."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        leaves = jax.tree_util.tree_leaves(structure)
        return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
    return True
