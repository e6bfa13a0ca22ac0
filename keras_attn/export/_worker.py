"""The export subprocess, run by `_subprocess`.

`python -m keras_attn.export._worker TASK MODEL TARGET OPTIONS` loads the `.keras`
file `MODEL` on the backend named by `KERAS_BACKEND` and writes `TARGET`: a
SavedModel directory (`TASK` `saved_model`, TensorFlow backend) or an ONNX file
(`onnx`, torch backend), with the writer of the route that asked. `OPTIONS` is a
JSON file. Running this module imports the package `keras_attn` first, which
registers every layer and model a `.keras` file may name.

A refused model (a `ValueError`) exits with `_subprocess.REFUSED` and its message
as the last line on stderr; any other failure prints its traceback and exits with 1.
"""

import json
import sys
import traceback

from keras_attn.export import _keras_file
from keras_attn.export import _onnx
from keras_attn.export import _saved_model
from keras_attn.export import _signature
from keras_attn.export import _subprocess


def main(task, model_path, target, options_path):
    with open(options_path) as file:
        options = json.load(file)
    print(f"loading {model_path}", flush=True)
    model = _keras_file.load_model(model_path)
    signature = _signature.from_json(options["signature"])
    print(f"writing {target}", flush=True)
    if task == "saved_model":
        _saved_model.write_saved_model(
            model, target, signature, options["generation"], options["platforms"]
        )
    elif task == "onnx":
        _onnx.write_onnx(model, target, signature, options["opset_version"])
    else:
        raise ValueError(f"unknown task {task!r}.")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:5])
    except ValueError as error:
        print(str(error).replace("\n", " "), file=sys.stderr)
        raise SystemExit(_subprocess.REFUSED) from None
    except Exception as error:
        traceback.print_exc()
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
