"""The warmup then inverse-square-root learning rate of "Attention Is All You Need"."""

import keras
from keras import ops

from keras_attn._checks import check_positive_float
from keras_attn._checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then decay with the inverse square root of the step.

    `lr = scale * hidden_dim ** -0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)`
    where `s` is the paper's `step_num`, counted from 1. Keras optimizers call a
    schedule with their `iterations` counter, which is 0 for the first update, so
    the schedule uses `s = step + 1`: the first update gets the paper's first
    (finite, nonzero) rate instead of `0 ** -0.5`, and the peak
    `scale * hidden_dim ** -0.5 * warmup_steps ** -0.5` is reached at
    `step = warmup_steps - 1`, the `warmup_steps`-th update.

    The rate is computed in float32 with `keras.ops`, so it works with a tensor
    `step` inside `jax.jit`, `tf.function` and torch on every backend. float32
    counts steps exactly up to 2**24 (about 16.7 million).

    Args:
        hidden_dim: int. The model width `d_model`; the rate scales with
            `hidden_dim ** -0.5`.
        warmup_steps: int. The number of updates of linear warmup. Defaults to
            `4000`, the paper's value.
        scale: float. A constant factor on the rate. Defaults to `1.0`.

    Call arguments:
        step: int or scalar integer tensor. The 0-based optimizer step
            (`optimizer.iterations`).

    Returns:
        A float32 scalar tensor, the learning rate for this step.

    Example:

    ```python
    schedule = TransformerSchedule(hidden_dim=512, warmup_steps=4000)
    optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    ```

    References:
     - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762), section 5.3.
    """

    def __init__(self, hidden_dim, warmup_steps=4000, scale=1.0):
        owner = type(self).__name__
        self.hidden_dim = check_positive_int(owner, "hidden_dim", hidden_dim)
        self.warmup_steps = check_positive_int(owner, "warmup_steps", warmup_steps)
        self.scale = check_positive_float(owner, "scale", scale)

    def __call__(self, step):
        # Constants in Python float64, then one rounding to float32.
        peak_factor = self.scale * self.hidden_dim**-0.5
        warmup_slope = self.warmup_steps**-1.5
        s = ops.cast(step, "float32") + 1.0  # the paper's 1-based step_num
        rate = ops.minimum(ops.rsqrt(s), s * warmup_slope)
        return ops.cast(peak_factor * rate, "float32")

    def get_config(self):
        return {
            "hidden_dim": self.hidden_dim,
            "warmup_steps": self.warmup_steps,
            "scale": self.scale,
        }
