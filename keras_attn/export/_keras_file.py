"""Load a `.keras` file to export it, with an error that names the failing layer."""

import json
import re
import zipfile

import keras

_MISSING_CLASS = re.compile(r"Could not locate class '([^']+)'")


def load_model(path):
    """`keras.saving.load_model(path, compile=False)`, explaining failures.

    Raises:
        ValueError: when the file cannot be loaded. A layer whose class this
            process does not know (a custom object whose module was not
            imported) is named, with its class.
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
