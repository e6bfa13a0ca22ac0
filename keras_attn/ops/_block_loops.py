"""The block loops of the chunked path, as each backend runs them best.

`keras.ops` loops with what the ops cannot say: TensorFlow's loops run one
iteration at a time, blocks are collected and stacked once, and a block is added
into a large accumulator in place where the backend allows it.
"""

import keras
from keras import ops

from keras_attn.ops._slicing import block


def add_block(total, axis, start, update):
    """`total` with `update` added to its block at `start` along `axis`.

    In place where the backend allows it: a scatter-add on JAX (for a
    dynamic-update-slice of a loop's buffer, XLA copied the whole buffer), an add
    in place in torch's eager loop (`index_add_`); a slice update on TensorFlow.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        # Positions as a tensor: no host sync for a block index held on a GPU.
        size, device = update.shape[axis], total.device
        positions = torch.arange(size, device=device) + torch.as_tensor(start).to(
            device
        )
        return total.index_add_(axis, positions, update)
    if backend == "jax":
        import jax.numpy as jnp

        index = [slice(None)] * len(total.shape)
        index[axis] = start + jnp.arange(update.shape[axis])
        return total.at[tuple(index)].add(update)
    current = block(total, axis, start, update.shape[axis])
    starts = [0] * len(total.shape)
    starts[axis] = start
    return ops.slice_update(total, starts, current + update)


def map_blocks(count, body, outputs, carry=None):
    """`body(carry, i) -> (carry, blocks)` for `i` in `range(count)`, in order.

    `blocks` is a tuple of `outputs` float32 tensors. Returns the last carry and
    each block stacked on a new leading axis. The blocks are collected (a list on
    torch, TensorArrays on TensorFlow, one iteration at a time; `lax.scan` on JAX)
    and stacked once: writing each into a full-length tensor instead copies that
    tensor per block on torch and TensorFlow, a cost quadratic in the length.
    """
    carry = ops.zeros(()) if carry is None else carry
    backend = keras.backend.backend()
    if backend == "jax":
        return ops.scan(body, carry, ops.arange(count, dtype="int32"))
    if backend == "torch":
        blocks = []
        for i in range(count):
            carry, block_i = body(carry, i)
            blocks.append(block_i)
        return carry, tuple(ops.stack(b) for b in zip(*blocks))
    import tensorflow as tf

    def step(i, carry, arrays):
        carry, blocks = body(carry, i)
        return i + 1, carry, tuple(a.write(i, b) for a, b in zip(arrays, blocks))

    arrays = tuple(tf.TensorArray("float32", size=count) for _ in range(outputs))
    _, carry, arrays = tf.while_loop(
        lambda i, *_: i < count, step, (0, carry, arrays), parallel_iterations=1
    )
    return carry, tuple(a.stack() for a in arrays)


def concatenate_blocks(stacked, axis):
    """`(n, ..., block, ...)` stacked blocks as one tensor, blocks along `axis`."""
    x = ops.moveaxis(stacked, 0, axis)  # (..., n, block, ...)
    shape = ops.shape(x)
    return ops.reshape(
        x, (*shape[:axis], shape[axis] * shape[axis + 1], *shape[axis + 2 :])
    )


def fori_loop(lower, upper, body, init):
    """`keras.ops.fori_loop`, with TensorFlow's iterations run one after another.

    `tf.while_loop` runs up to 10 iterations at once where their data allow it, and
    each block iteration here holds several (bq, bk) score blocks per head: at 16k
    tokens that took a training step from 1 GiB to 4 GiB. One at a time, memory
    stays linear in the length as on JAX (whose loops are sequential already).
    """
    if keras.backend.backend() != "tensorflow":
        return ops.fori_loop(lower, upper, body, init)
    import tensorflow as tf

    return tf.while_loop(
        lambda i, _: i < upper,
        lambda i, value: (i + 1, body(i, value)),
        (lower, init),
        parallel_iterations=1,
    )[1]
