"""Gradients of a scalar function of tensors, on whichever backend is active."""

import keras
import numpy as np


def gradients(fn, *inputs):
    """Return `[d fn(*inputs) / d input for input in inputs]` as NumPy arrays."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(inputs))))(*inputs)
    elif backend == "tensorflow":
        import tensorflow as tf

        inputs = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = fn(*inputs)
        grads = tape.gradient(loss, inputs)
    elif backend == "torch":
        import torch

        inputs = [torch.tensor(np.asarray(x), requires_grad=True) for x in inputs]
        fn(*inputs).backward()
        grads = [x.grad for x in inputs]
    else:
        raise NotImplementedError(backend)
    return [keras.ops.convert_to_numpy(g) for g in grads]
