"""Load a `.keras` file and predict, on the backend named by KERAS_BACKEND.

Run as `python -m tests.cross_backend_predict MODEL.keras INPUTS.npz OUTPUTS.npz`;
`tests/test_cross_backend.py` starts it once per other backend.
"""

import sys

import numpy as np


def main(model_path, inputs_path, outputs_path):
    import keras

    import keras_attn  # noqa: F401  (registers the layers)

    model = keras.saving.load_model(model_path)
    inputs = dict(np.load(inputs_path))
    outputs = model.predict(inputs, verbose=0)
    np.savez(outputs_path, output=keras.ops.convert_to_numpy(outputs))


if __name__ == "__main__":
    main(*sys.argv[1:4])
