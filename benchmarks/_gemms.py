"""The matrix products of one encoder training step, timed alone: a profile.

Forward, the block multiplies (B·T, d) activations by the fused q/k/v kernel
(d, 3d), the output kernel (d, d) and the feed-forward kernels (d, f), (f, d), and
per head (T, dh)·(dh, T) scores and (T, T)·(T, dh) context. Backward, every
product becomes two of the same size (the input's and the kernel's gradients), and
the attention products four. Run back to back with nothing else, these give the
time a step would take if all of its other work (softmax, layer norms, residuals,
the optimizer, `fit`'s loop) cost nothing: the share of the measured step that is
GEMM time, and so how much of the step any attention or fusion trick can touch.
"""

import keras
import numpy as np


def step_products(batch, length, width, heads, intermediate):
    """(batch, m, k, n) of every product of one training step, forward and backward."""
    tokens, head_dim = batch * length, width // heads
    dense = [
        (width, 3 * width),
        (width, width),
        (width, intermediate),
        (intermediate, width),
    ]
    products = []
    for k, n in dense:
        products += [
            (1, tokens, k, n),  # forward
            (1, tokens, n, k),  # gradient of the input
            (1, k, tokens, n),  # gradient of the kernel
        ]
    pairs = batch * heads
    products += [
        (pairs, length, head_dim, length),  # scores QKᵀ
        (pairs, length, length, head_dim),  # context PV
        (pairs, length, head_dim, length),  # dP = dO Vᵀ
        (pairs, length, length, head_dim),  # dV = Pᵀ dO
        (pairs, length, length, head_dim),  # dQ = dS K
        (pairs, length, length, head_dim),  # dK = dSᵀ Q
    ]
    return products


def flops(products):
    return sum(2 * b * m * k * n for b, m, k, n in products)


def runner(products, repeats):
    """A callable that runs every product `repeats` times on the active backend.

    Compiled as one function on JAX and TensorFlow (XLA, like the models), eager
    on torch (like `fit` there).
    """
    rng = np.random.default_rng(0)
    operands = [
        (
            rng.normal(size=(b, m, k)).astype("float32"),
            rng.normal(size=(b, k, n)).astype("float32"),
        )
        for b, m, k, n in products
    ]
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        operands = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in operands]

        def run():
            for _ in range(repeats):
                for a, b in operands:
                    torch.matmul(a, b)

        return run

    def products_once(operands):
        return [keras.ops.matmul(a, b) for a, b in operands]

    if backend == "jax":
        import jax

        compiled = jax.jit(products_once)
        operands = jax.device_put(operands)

        def run():
            for _ in range(repeats):
                jax.block_until_ready(compiled(operands))

        return run

    import tensorflow as tf

    compiled = tf.function(products_once, jit_compile=True)
    operands = [(tf.constant(a), tf.constant(b)) for a, b in operands]

    def run():
        for _ in range(repeats):
            outputs = compiled(operands)
        outputs[-1].numpy()

    return run
