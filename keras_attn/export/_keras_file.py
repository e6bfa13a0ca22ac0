"""The model as a `.keras` file: the form in which it travels between processes.

The subprocess route writes the model as `.keras` and its worker loads it on the
other backend; the `keras-attn export` command loads the file it is given. So
every route first checks that the model would survive that trip (`check_portable`),
whether or not it takes it, and a file that cannot be loaded is explained, naming
the layer (`load_model`).
"""

import json
import re
import zipfile

import keras

_MISSING_CLASS = re.compile(r"Could not locate class '([^']+)'")


def check_portable(model, owner):
    """Raise a `ValueError` naming the first layer that could not travel.

    Two things break the trip: a `Lambda` layer (its Python code is not saved
    portably, and safe loading refuses it) and a layer class that Keras cannot
    find by its registered name.
    """
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


def load_model(path):
    """`keras.saving.load_model(path, compile=False)`, explaining failures.

    Raises:
        ValueError: when the file cannot be loaded, in one line. A layer whose
            class this process does not know (a custom object whose module was
            not imported) is named, with its class.
    """
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"cannot load {path}: {_explain(path, error)}") from error


def _explain(path, error):
    match = _MISSING_CLASS.search(str(error))
    if match is None:
        return str(error).strip().splitlines()[0]
    class_name = match.group(1)
    layers = [
        f"'{name}' ({registered or class_name})"
        for name, registered in _layers_of_class(path, class_name)
    ]
    where = f"layer {', '.join(layers)}" if layers else f"class '{class_name}'"
    return (
        f"{where} is a custom object this process cannot find: import the module "
        "that registers it with `keras.saving.register_keras_serializable` before "
        "loading, or remove it from the model."
    )


def _layers_of_class(path, class_name):
    """`(layer name, registered name)` of each layer of `class_name` in the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("class_name") == class_name:
                name = node.get("name") or node.get("config", {}).get("name")
                found.append((name, node.get("registered_name")))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return found
