"""Attention maps of every `MultiHeadAttention` in a model, for one call."""

import keras

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
    recorded = []

    def recorder(name):
        return lambda scores: recorded.append((name, scores))

    with recording_scores({key: recorder(name) for key, name in names.items()}):
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
    maps = {}
    for name, scores in recorded:
        key, calls = name, 1
        while key in maps:
            key, calls = f"{name}#{calls}", calls + 1
        maps[key] = keras.ops.convert_to_numpy(scores).astype("float32")
    return maps


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
