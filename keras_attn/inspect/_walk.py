"""Every layer below a model or layer, with its path, in a stable order."""

import keras


def sublayers(model):
    """`[(path, layer), ...]`, depth first; paths like `"encoder_layer_0/mlp"`.

    The model itself is not listed. Each layer appears once, under the first
    path that reaches it.
    """
    found = []
    seen = {id(model)}

    def visit(layer, prefix):
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}{child.name}"
            found.append((path, child))
            visit(child, path + "/")

    visit(model, "")
    return found


def find_layer(model, layer_type, owner):
    """`model` itself if it is a `layer_type`, else the first one below it."""
    if isinstance(model, layer_type):
        return model
    if isinstance(model, keras.layers.Layer):
        for _, layer in sublayers(model):
            if isinstance(layer, layer_type):
                return layer
    raise ValueError(
        f"{owner}: argument `model` must be or contain a keras_attn "
        f"{layer_type.__name__}; received {describe(model)}, which has none."
    )


def describe(model):
    if isinstance(model, keras.layers.Layer):
        return f"{type(model).__name__} {model.name!r}"
    return repr(model)


def _children(layer):
    # A functional model lists its graph's layers in `layers`; any layer tracks
    # the sublayers it set as attributes (e.g. `self_attention`) in `_layers`.
    children = list(layer.layers) if isinstance(layer, keras.Model) else []
    return children + layer._flatten_layers(include_self=False, recursive=False)
