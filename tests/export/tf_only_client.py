"""A serving client with TensorFlow and nothing of Keras: it runs SavedModels.

Run as `python -m tests.export.tf_only_client REQUEST.json INPUTS.npz OUTPUTS.npz`.
Importing `keras` or `keras_attn` fails in this process, as on a TensorFlow Serving
host, so a SavedModel that needs either cannot load. REQUEST lists calls
`{"id", "path", "signature", "inputs": {input name: key in INPUTS}}`; OUTPUTS gets
`"{id}/{output name}"` for each output, and `"keras_import_failed"`.
"""

import json
import sys

_BLOCKED = ("keras", "keras_attn")


def _block_keras():
    """Make `import keras` and `import keras_attn` (and their submodules) fail.

    A `None` in `sys.modules` makes `import` raise `ImportError` and
    `importlib.util.find_spec` return None, which TensorFlow's lazy `tf.keras`
    lookup takes as "not installed".
    """
    for name in list(sys.modules):
        if name.split(".")[0] in _BLOCKED:
            del sys.modules[name]
    for name in _BLOCKED:
        sys.modules[name] = None


def _keras_import_fails():
    for name in _BLOCKED:
        try:
            __import__(name)
        except ImportError:
            continue
        return False
    return True


def main(request_path, inputs_path, outputs_path):
    _block_keras()
    import numpy as np
    import tensorflow as tf

    with open(request_path) as file:
        calls = json.load(file)
    arrays = np.load(inputs_path)
    outputs = {"keras_import_failed": np.array(_keras_import_fails())}
    loaded = {}
    for call in calls:
        if call["path"] not in loaded:
            loaded[call["path"]] = tf.saved_model.load(call["path"])
        function = loaded[call["path"]].signatures[call["signature"]]
        inputs = {name: tf.constant(arrays[k]) for name, k in call["inputs"].items()}
        for name, value in function(**inputs).items():
            outputs[f"{call['id']}/{name}"] = value.numpy()
    outputs["keras_import_failed"] &= np.array(_keras_import_fails())
    np.savez(outputs_path, **outputs)


if __name__ == "__main__":
    main(*sys.argv[1:4])
