"""Attention calls on raw q, k, v for the structured-attention case, per backend.

A forward pass and a training step (the gradients of `sum(output)` with respect
to q, k and v) of a function `fn(q, k, v, *extras)`, compiled the way Keras'
trainer compiles a step on a CPU: `jax.jit` on JAX, `tf.function` (no XLA) on
TensorFlow, eager on torch. Every callable returned waits for its result and
returns None (`_timing.interleave` takes a returned value for the elapsed time).
"""

import keras
import numpy as np

HEADS, HEAD_DIM = 8, 64


def qkv(length, seed=0):
    """Three float32 `(1, length, HEADS, HEAD_DIM)` NumPy arrays."""
    rng = np.random.default_rng(seed)
    shape = (1, length, HEADS, HEAD_DIM)
    return [rng.normal(size=shape).astype("float32") for _ in range(3)]


def document_ids(length, count, seed=0):
    """`(1, length)` int32 ids of `count` documents of random (seeded) lengths.

    The `count - 1` boundaries are distinct positions drawn uniformly, so the
    lengths vary widely (a few tokens to several times the mean) and most
    boundaries fall inside a 512-token block of the chunked path.
    """
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, length), count - 1, replace=False))
    lengths = np.diff(np.concatenate([[0], cuts, [length]]))
    return np.repeat(np.arange(count, dtype="int32"), lengths)[None], lengths


def dense_document_mask(segment_ids):
    """`(1, 1, T, T)` bool: causal and block-diagonal, as a user would build it."""
    ids = segment_ids[0]
    same = ids[:, None] == ids[None, :]
    return np.tril(same)[None, None]


def forward_step(fn, arrays):
    """A callable running `fn(*arrays)` once, compiled as Keras' predict would be."""
    args = [keras.ops.convert_to_tensor(a) for a in arrays]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(fn)
        return lambda: _wait(compiled(*args))
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn)
        return lambda: _wait(compiled(*args))
    import torch

    def run():
        with torch.no_grad():
            fn(*args)  # eager torch on CPU returns finished tensors

    return run


def training_step(fn, arrays, extras=()):
    """A callable computing `sum(fn(q, k, v, *extras))` and its q, k, v gradients."""
    q, k, v = (keras.ops.convert_to_tensor(a) for a in arrays)
    extras = [keras.ops.convert_to_tensor(e) for e in extras]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(q, k, v, *extras):
            return jnp.sum(fn(q, k, v, *extras))

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        return lambda: _wait(step(q, k, v, *extras))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(q, k, v, *extras):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                loss = tf.reduce_sum(fn(q, k, v, *extras))
            return loss, tape.gradient(loss, [q, k, v])

        return lambda: _wait(step(q, k, v, *extras))
    import torch

    q, k, v = (x.detach().requires_grad_(True) for x in (q, k, v))

    def run():
        loss = torch.sum(fn(q, k, v, *extras))
        torch.autograd.grad(loss, (q, k, v))

    return run


def _wait(outputs):
    """Wait for every output (JAX dispatches asynchronously); return None."""
    for x in keras.tree.flatten(outputs):
        keras.ops.convert_to_numpy(x)


def flex_attention(pattern, length, window, segment_ids, compiled):
    """torch's FlexAttention on the same mask, `(B, T, H, D)` in and out.

    The block mask is built once here, outside the timed calls (keras_attn
    derives its block map inside every call).
    """
    import torch
    from torch.nn.attention import flex_attention as flex

    if pattern == "window":

        def mask_mod(b, h, q, kv):
            return (q >= kv) & (q - kv < window)
    else:
        ids = torch.as_tensor(segment_ids[0])

        def mask_mod(b, h, q, kv):
            return (q >= kv) & (ids[q] == ids[kv])

    # Compiled, the block mask is built in tiles: eagerly it took 2.8 GiB at 16k.
    make_mask = torch.compile(flex.create_block_mask)
    block_mask = make_mask(mask_mod, None, None, length, length, device="cpu")
    attend = torch.compile(flex.flex_attention) if compiled else flex.flex_attention

    def fn(q, k, v):
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, T, D)
        return attend(q, k, v, block_mask=block_mask).transpose(1, 2)

    return fn


def flex_training_probe(compiled, length=256):
    """Whether a FlexAttention training step runs on this machine, and if not, why."""
    fn = flex_attention("window", length, length // 4, None, compiled)
    try:
        training_step(fn, qkv(length))()
    except Exception as error:  # noqa: BLE001 - reported, not handled
        return f"{type(error).__name__}: {str(error)[:200]}"
    return "ok"
