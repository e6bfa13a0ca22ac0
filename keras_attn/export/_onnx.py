"""`export_onnx`: an ONNX file from any backend, checked in onnxruntime."""

import keras

from keras_attn.export import _portability
from keras_attn.export import _progress
from keras_attn.export import _signature
from keras_attn.export import _staging
from keras_attn.export import _subprocess
from keras_attn.export import _verify

_OWNER = "export_onnx"


def export_onnx(
    model, path, *, input_signature=None, opset_version=None, verify=True, verbose=True
):
    """Export a model's forward pass as an ONNX file with a dynamic batch size.

    Every backend goes through torch: `torch.export` with dynamic shapes, then
    the dynamo ONNX exporter. A torch-backend model is exported in this process;
    a TensorFlow- or JAX-backend model is written as `.keras` and exported by a
    subprocess running Keras on torch, which must be installed.

    Inputs are named after the model's `keras.Input`s; the output is `outputs`
    for a single-output model. The batch size and sequence lengths are dynamic;
    image height and width are the model's `image_size`. The file is checked in
    onnxruntime against the model on random inputs before it is moved to
    `path`; on failure nothing is left at `path`.

    Args:
        model: a built functional `keras.Model`, such as a `keras_attn.models`
            model. It must be savable as `.keras`: no `Lambda` layer, every
            custom layer registered.
        path: the `.onnx` file to write; replaced if it exists.
        input_signature: None for the model's inputs, or `{name: spec}` (one
            spec for a single-input model) with `shape` and `dtype`, `None` for
            a dynamic size.
        opset_version: int or None. The ONNX opset; None for the exporter's
            default.
        verify: bool. Compare onnxruntime's outputs with the model's (needs
            onnxruntime; fails beyond 1e-4).
        verbose: bool. Print a line per step.

    Returns:
        `path`.

    Example:

    ```python
    keras_attn.export.export_onnx(vit, "exported/vit.onnx")
    session = onnxruntime.InferenceSession("exported/vit.onnx")
    logits = session.run(None, {"images": images})[0]
    ```
    """
    _portability.check_exportable(model, _OWNER)
    signature = _signature.model_signature(model, input_signature, _OWNER)
    backend = keras.backend.backend()
    with _staging.staged(path, directory=False) as staging:
        if backend == "torch":
            from keras_attn.export import _torch_onnx

            _progress.report(verbose, "exporting with torch.export (torch backend)")
            _torch_onnx.write_onnx(model, staging, signature, opset_version)
        else:
            options = {
                "signature": _signature.to_json(signature),
                "opset_version": opset_version,
            }
            _subprocess.export_in_backend(
                "torch", "onnx", model, staging, options, _OWNER, verbose
            )
        if verify:
            _progress.report(verbose, "checking the ONNX file in onnxruntime")
            difference = _verify.verify_onnx(model, staging, signature, _OWNER)
            _progress.report(verbose, f"largest difference: {difference:.2g}")
    _progress.report(verbose, f"wrote {path}")
    return path
