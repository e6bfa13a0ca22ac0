"""Attention maps of every `MultiHeadAttention` in a model, for one call."""

import types

import keras
import numpy as np

from keras_attn.inspect._walk import describe
from keras_attn.inspect._walk import sublayers
from keras_attn.layers._score_recording import recording_scores
from keras_attn.layers.multi_head_attention import MultiHeadAttention


def attention_maps(model, inputs):
    """The attention weights of every keras_attn attention layer of `model`.

    `model` is run once on `inputs` (eagerly, `training=False`). For this call
    only, each `keras_attn.layers.MultiHeadAttention` inside it (also inside
    `TransformerEncoder`/`TransformerDecoder` blocks and nested models) takes the
    math path and hands over its scores; nothing global is switched, and calls
    before and after use the path they normally use (the backend's fused kernel
    where it can). The model's output is the same as a normal call's.

    Keys are the layers' paths below the model, e.g.
    `"encoder_layer_0/self_attention"`, `"decoder_layer_1/cross_attention"`, in
    the order the layers ran. A layer called more than once (shared weights)
    gets `"#1"`, `"#2"`, ... appended from its second call on.

    Args:
        model: a `keras.Model` (functional or not) or layer built from keras_attn
            layers.
        inputs: what `model` is called on (array, or dict of arrays).

    Returns:
        A dict from layer path to NumPy float32 scores `(B, H, T, S)`: row `i`
        of head `h` is how query `i` spreads its attention over the `S` keys.

    Raises:
        ValueError: `model` has no keras_attn `MultiHeadAttention`, `inputs`
            do not fit the model, or none of its attention layers ran on them.

    Example:
    ```python
    maps = keras_attn.inspect.attention_maps(vit, images)
    maps["encoder_layer_0/self_attention"].shape  # (B, heads, 1 + N, 1 + N)
    ```
    """
    return recorded_maps("attention_maps", model, inputs)


def recorded_maps(owner, model, inputs):
    """`attention_maps`, with errors that name `owner` (the public caller)."""
    names = _checked_paths(owner, model)
    recorded = []
    with recording_scores(_recorders(names, recorded)):
        try:
            model(inputs, training=False)
        except Exception as error:  # Keras, TF, JAX and torch raise different types.
            raise ValueError(
                f"{owner}: argument `inputs` does not fit {describe(model)}; "
                f"received {_shapes(inputs)}. The model said: "
                f"{_first_line(error)}"
            ) from error
    if not recorded:
        raise ValueError(
            f"{owner}: argument `inputs` did not reach any attention layer "
            f"of {describe(model)} (layers: {sorted(names.values())})."
        )
    keys = _keys([name for name, _ in recorded])
    return {key: _numpy(scores) for key, (_, scores) in zip(keys, recorded)}


def compiled_maps(owner, model):
    """A function `inputs -> attention_maps(model, inputs)`, compiled.

    The maps come out of a model whose outputs are the attention layers'
    scores, run by `predict_on_batch`: traced once per input shape
    (`tf.function` on TensorFlow, `jax.jit` on JAX; eager on torch) with the
    model's current weights at every call. For callers that take the same
    inputs' maps again and again, such as a training callback.
    """
    probe = _MapsModel(model, _checked_paths(owner, model))
    probe.compile()

    def maps(inputs):
        scores = probe.predict_on_batch(inputs)
        return {key: _numpy(s) for key, s in zip(probe.traced.keys, scores)}

    return maps


class _MapsModel(keras.Model):
    """`model`, with its attention layers' scores as the outputs."""

    def __init__(self, model, paths):
        super().__init__(name=f"{model.name}_attention_maps")
        self.inspected = model
        self.paths = paths
        # Not a tracked attribute: the keys are Python data known once traced.
        self.traced = types.SimpleNamespace(keys=None)
        self.built = True

    def call(self, inputs):
        recorded = []
        with recording_scores(_recorders(self.paths, recorded)):
            self.inspected(inputs, training=False)
        self.traced.keys = _keys([name for name, _ in recorded])
        return [scores for _, scores in recorded]


def _checked_paths(owner, model):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"{owner}: argument `model` must be a keras.Model or layer; "
            f"received {model!r}."
        )
    names = _attention_layer_paths(model)
    if not names:
        raise ValueError(
            f"{owner}: argument `model` must contain at least one "
            "keras_attn.layers.MultiHeadAttention (directly or inside "
            "TransformerEncoder/TransformerDecoder blocks); received "
            f"{describe(model)}, which has none."
        )
    return names


def _recorders(names, recorded):
    """Recorders that append `(path, scores)` to `recorded`, per layer id."""

    def recorder(name):
        return lambda scores: recorded.append((name, scores))

    return {key: recorder(name) for key, name in names.items()}


def _keys(names):
    """Unique keys in call order: a layer called again gets "#1", "#2", ..."""
    keys = []
    for name in names:
        key, calls = name, 1
        while key in keys:
            key, calls = f"{name}#{calls}", calls + 1
        keys.append(key)
    return keys


def _numpy(scores):
    return np.asarray(keras.ops.convert_to_numpy(scores), dtype="float32")


def _attention_layer_paths(model):
    """`{id(layer): path}` for every `MultiHeadAttention` in `model`."""
    if isinstance(model, MultiHeadAttention):
        return {id(model): model.name}
    return {
        id(layer): path
        for path, layer in sublayers(model)
        if isinstance(layer, MultiHeadAttention)
    }


def _shapes(inputs):
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k!r}: {_shapes(v)}" for k, v in inputs.items()) + "}"
    shape = getattr(inputs, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else repr(inputs)[:80]


def _first_line(error):
    # Keras wraps a layer's error in "Exception encountered when calling ...":
    # the user's mistake is in the first non-empty line after that preamble.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception encountered")]
    text = (useful or lines or [type(error).__name__])[0]
    return text.replace("\x1b[1m", "").replace("\x1b[0m", "")
