"""`export_onnx`: an ONNX file from any backend, checked in onnxruntime.

Every backend goes through torch (`write_onnx`): `torch.export` with dynamic
shapes, then the dynamo ONNX exporter (onnxscript). Keras' own torch ONNX route
falls back to TorchScript tracing when a size is dynamic; exporting the program
ourselves keeps the batch size and sequence lengths symbolic. A TensorFlow or JAX
model takes the subprocess route to reach torch.
"""

import importlib.util

import keras
import numpy as np

from keras_attn.export import _keras_file
from keras_attn.export import _signature
from keras_attn.export import _staging
from keras_attn.export import _subprocess

_OWNER = "export_onnx"
# The `onnx` extra; onnxruntime is needed only to verify the file.
_EXTRA = ("torch", "onnx", "onnxscript", "onnxruntime")
_VERIFIER = "onnxruntime"
# Sample sizes for dynamic dimensions: torch.export specialises sizes 0 and 1.
_SAMPLE_SIZE = 2
_TOLERANCE = 1e-4
_BATCH_SIZE = 3
_LENGTH = 5


def export_onnx(
    model, path, *, input_signature=None, opset_version=None, verify=True, verbose=True
):
    """Export a model's forward pass as an ONNX file with a dynamic batch size.

    Every backend goes through torch: `torch.export` with dynamic shapes, then
    the dynamo ONNX exporter. A torch-backend model is exported in this process;
    a TensorFlow- or JAX-backend model is written as `.keras` and exported by a
    subprocess running Keras on torch. The `onnx` extra
    (`pip install "keras-attn[onnx]"`: torch, onnx, onnxscript, onnxruntime)
    must be installed; without it the export fails before doing anything,
    saying so.

    Inputs are named after the model's `keras.Input`s; the output is `outputs`
    for a single-output model. The batch size and sequence lengths are dynamic;
    image height and width are the model's `image_size`. The file is checked in
    onnxruntime against the model on random inputs before it is moved to
    `path`; on failure `path` is left as it was.

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
        verify: bool. Compare onnxruntime's outputs with the model's (fails
            beyond 1e-4). Without it onnxruntime is not needed.
        verbose: bool. Print a line per step.

    Returns:
        `path`.

    Raises:
        ModuleNotFoundError: a package of the `onnx` extra is not installed.
        ValueError: the model or an argument cannot be exported (the message
            names the layer or the argument).

    Example:

    ```python
    keras_attn.export.export_onnx(vit, "exported/vit.onnx")
    session = onnxruntime.InferenceSession("exported/vit.onnx")
    logits = session.run(None, {"images": images})[0]
    ```
    """
    check_packages(verify)
    _keras_file.check_portable(model, _OWNER)
    signature = _signature.model_signature(model, input_signature, _OWNER)
    with _staging.staged(path, directory=False) as staging:
        if keras.backend.backend() == "torch":
            _staging.report(verbose, "exporting with torch.export (torch backend)")
            write_onnx(model, staging, signature, opset_version)
        else:
            options = {
                "signature": _signature.to_json(signature),
                "opset_version": opset_version,
            }
            _subprocess.export_in_backend(
                "torch", "onnx", model, staging, options, _OWNER, verbose
            )
        if verify:
            _staging.report(verbose, "checking the ONNX file in onnxruntime")
            difference = _verify(model, staging, signature)
            _staging.report(verbose, f"largest difference: {difference:.2g}")
    _staging.report(verbose, f"wrote {path}")
    return path


def check_packages(verify):
    """Raise a `ModuleNotFoundError` with the `pip` line when the extra is missing."""
    needed = [name for name in _EXTRA if verify or name != _VERIFIER]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not missing:
        return
    alternative = ", or pass verify=False" if missing == [_VERIFIER] else ""
    raise ModuleNotFoundError(
        f"{_OWNER}: ONNX export needs the `onnx` extra ({', '.join(_EXTRA)}), but "
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
        f'installed. Install it with `pip install "keras-attn[onnx]"`{alternative}.',
        name=missing[0],
    )


def write_onnx(model, path, signature, opset_version=None):
    """Write a torch-backend model's forward pass to the ONNX file `path`."""
    import torch

    names = list(signature)
    output_names = list(_signature.named_outputs(model, model.output))
    samples, dynamic_shapes = _samples_and_dimensions(signature)
    module = _flat_inputs_module(model, names, output_names).eval()
    with torch.no_grad():
        program = torch.export.export(
            module, tuple(samples), dynamic_shapes=(tuple(dynamic_shapes),)
        )
        onnx_program = torch.onnx.export(
            program,
            input_names=names,
            output_names=output_names,
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
        )
    onnx_program.save(path)


def _samples_and_dimensions(signature):
    import torch

    batch = torch.export.Dim("batch")
    samples, dimensions = [], []
    for name, (shape, dtype) in signature.items():
        dynamic = {
            axis: batch if axis == 0 else torch.export.Dim(f"{name}_{axis}")
            for axis, size in enumerate(shape)
            if size is None
        }
        sample_shape = [_SAMPLE_SIZE if size is None else size for size in shape]
        # Token ids of 1: a real token (0 is padding), valid in any vocabulary.
        sample = np.ones(sample_shape, dtype=dtype)
        samples.append(torch.from_numpy(sample))
        dimensions.append(dynamic or None)
    return samples, dimensions


def _flat_inputs_module(model, names, output_names):
    """A `torch.nn.Module` taking the inputs as positional tensors (ONNX inputs)
    and returning the outputs as a tuple."""
    import torch

    class FlatInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            inputs = _signature.model_inputs(self.model, dict(zip(names, tensors)))
            outputs = self.model(inputs, training=False)
            outputs = _signature.named_outputs(self.model, outputs)
            return tuple(outputs[name] for name in output_names)

    return FlatInputs()


def _verify(model, path, signature):
    """Run the file in onnxruntime and the model on the same random inputs;
    return the largest difference, or raise a `RuntimeError` beyond 1e-4."""
    import onnxruntime

    inputs = _sample_inputs(model, signature)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    expected = model(_signature.model_inputs(model, inputs), training=False)
    expected = _signature.named_outputs(model, expected)
    difference = max(
        float(np.max(np.abs(g - keras.ops.convert_to_numpy(e))))
        for g, e in zip(got, expected.values())
    )
    if not difference <= _TOLERANCE:
        raise RuntimeError(
            f"{_OWNER}: the ONNX file's outputs differ from the model's by "
            f"{difference:.3g} (more than {_TOLERANCE}) in onnxruntime."
        )
    return difference


def _sample_inputs(model, signature, seed=0):
    """Random inputs: real token ids for integer inputs, normal floats otherwise."""
    rng = np.random.default_rng(seed)
    vocabulary = _smallest_vocabulary(model)
    inputs = {}
    for name, (shape, dtype) in signature.items():
        shape = [_BATCH_SIZE] + [_LENGTH if s is None else s for s in shape[1:]]
        if np.issubdtype(np.dtype(dtype), np.integer):
            inputs[name] = rng.integers(1, vocabulary, size=shape).astype(dtype)
        else:
            inputs[name] = rng.normal(size=shape).astype(dtype)
    return inputs


def _smallest_vocabulary(model):
    sizes = [
        getattr(model, attribute, None)
        for attribute in ("vocabulary_size", "target_vocabulary_size")
    ]
    sizes = [size for size in sizes if isinstance(size, int) and size > 1]
    return min(sizes) if sizes else 2
