"""ONNX from a torch-backend model: `torch.export` with dynamic shapes, then the
dynamo ONNX exporter.

Keras' own torch ONNX route falls back to TorchScript tracing when a size is
dynamic; exporting the program ourselves keeps the batch size and sequence
lengths symbolic.
"""

import numpy as np

from keras_attn.export import _signature

# Sample sizes for dynamic dimensions: torch.export specialises sizes 0 and 1.
_SAMPLE_SIZE = 2


def write_onnx(model, path, signature, opset_version=None):
    """Write the model's forward pass to the ONNX file `path`."""
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
