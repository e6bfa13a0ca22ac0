"""The `positions` call argument the position layers share with keras-hub's."""

from keras import ops

from keras_attn._checks import check_rank


def check_positions(owner, positions_shape, length, allow_batch):
    """`positions` is `(length,)`, or `(batch, length)` where `allow_batch`."""
    check_rank(owner, "positions", positions_shape, (1, 2) if allow_batch else 1)
    received = positions_shape[-1]
    if None not in (received, length) and received != length:
        raise ValueError(
            f"{owner}: argument `positions` must hold one position per step of "
            f"`inputs` ({length}); received a tensor of shape "
            f"{tuple(positions_shape)}."
        )


def broadcast_over_inputs(encoding, inputs):
    """An encoding `(T, D)` or, per example, `(B, T, D)` to the shape of `inputs`.

    `inputs` is `(..., T, D)` with the batch, if any, on axis 0.
    """
    if len(encoding.shape) == 3:  # one row of positions per example
        for _ in range(len(inputs.shape) - 3):
            encoding = ops.expand_dims(encoding, axis=1)  # (B, 1, ..., T, D)
    return ops.broadcast_to(encoding, ops.shape(inputs))
