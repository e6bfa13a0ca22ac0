"""Gradients of a scalar function of tensors, on whichever backend is active."""

import keras
import numpy as np


def gradients(fn, *inputs, compiled=False):
    """Return `[d fn(*inputs) / d input for input in inputs]` as NumPy arrays.

    `compiled`: on JAX, compile the gradient as one function (a whole model's
    gradient evaluated eagerly compiles each of its primitives, for seconds).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad = jax.grad(fn, argnums=tuple(range(len(inputs))))
        grads = (jax.jit(grad) if compiled else grad)(*inputs)
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


def output_and_vjp(fn, inputs, cotangent):
    """`fn(*inputs)` and the gradients of `sum(fn(*inputs) * cotangent)`, as NumPy.

    On JAX the forward and backward passes compile as one function: each chunked
    attention call has several loops, and compiling them once rather than per pass
    halves the time of a test.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def both(inputs, cotangent):
            output, pullback = jax.vjp(fn, *inputs)
            return output, pullback(cotangent.astype(output.dtype))

        output, grads = jax.jit(both)(tuple(inputs), cotangent)
    elif backend == "tensorflow":
        import tensorflow as tf

        inputs = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            output = fn(*inputs)
        cotangent = tf.cast(cotangent, output.dtype)
        grads = tape.gradient(output, inputs, output_gradients=cotangent)
    elif backend == "torch":
        import torch

        inputs = [torch.tensor(np.asarray(x), requires_grad=True) for x in inputs]
        output = fn(*inputs)
        output.backward(torch.as_tensor(cotangent, dtype=output.dtype))
        grads = [x.grad for x in inputs]
    else:
        raise NotImplementedError(backend)
    to_numpy = keras.ops.convert_to_numpy
    return to_numpy(output), [to_numpy(g) for g in grads]
