"""The export subprocess, run by `_subprocess`.

`python -m keras_attn.export._worker TASK MODEL TARGET OPTIONS` loads the `.keras`
file `MODEL` on the backend named by `KERAS_BACKEND` and writes
`TARGET`: a SavedModel directory (`TASK` `saved_model`, TensorFlow backend) or an
ONNX file (`onnx`, torch backend). `OPTIONS` is a JSON file. On failure the last
line on stderr says what failed, and the exit status is 1.
"""

import json
import sys


def main(task, model_path, target, options_path):
    import keras

    import keras_attn  # noqa: F401  (registers our layers and models)
    from keras_attn.export import _signature

    with open(options_path) as file:
        options = json.load(file)
    print(f"loading {model_path}", flush=True)
    model = keras.saving.load_model(model_path, compile=False)
    signature = _signature.from_json(options["signature"])
    print(f"writing {target}", flush=True)
    if task == "saved_model":
        from keras_attn.export import _tf_archive

        _tf_archive.write_saved_model(
            model, target, signature, options["generation"], options["platforms"]
        )
    elif task == "onnx":
        from keras_attn.export import _torch_onnx

        _torch_onnx.write_onnx(model, target, signature, options["opset_version"])
    else:
        raise ValueError(f"_worker: unknown task {task!r}.")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:5])
    except Exception as error:  # reported to the parent, which raises
        import traceback

        traceback.print_exc()
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
