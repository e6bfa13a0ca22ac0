"""Refuse, before writing anything, a model whose code would not travel.

Every route must be able to rebuild the model from its `.keras` file: the torch
route and the `keras-attn export` command do. Two things break that: a `Lambda`
layer (its Python code is not saved portably, and safe loading refuses it) and a
layer class that Keras cannot find by its registered name.
"""

import keras


def check_exportable(model, owner):
    """Raise a `ValueError` naming the first layer that cannot be exported."""
    for layer in [model, *model._flatten_layers(include_self=False)]:
        if isinstance(layer, keras.layers.Lambda):
            raise ValueError(
                f"{owner}: layer '{layer.name}' (Lambda) cannot be exported: a "
                "Lambda layer's Python code is not saved portably. Replace it with "
                "a layer subclass registered with "
                "`keras.saving.register_keras_serializable`."
            )
        if not _is_registered(type(layer)):
            cls = type(layer)
            raise ValueError(
                f"{owner}: layer '{layer.name}' ({cls.__module__}.{cls.__qualname__})"
                " cannot be exported: its class is not a registered custom object, "
                "so it cannot be rebuilt from the `.keras` file. Decorate it with "
                "`@keras.saving.register_keras_serializable()`."
            )


def _is_registered(cls):
    if cls.__module__.split(".")[0] in ("keras", "keras_hub"):
        return True
    name = keras.saving.get_registered_name(cls)
    return keras.saving.get_registered_object(name) is cls
