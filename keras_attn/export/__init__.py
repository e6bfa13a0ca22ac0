"""Export for serving from any backend: TensorFlow SavedModel and ONNX.

`export_saved_model` writes a SavedModel that TensorFlow Serving (or TensorFlow
alone) loads without Keras, with a `generate` signature for encoder–decoder
models; `export_onnx` writes an ONNX file checked in onnxruntime. Both work from
the TensorFlow, JAX and torch backends; TensorFlow and torch are imported only
when an export runs.
"""

from keras_attn.export._onnx import export_onnx
from keras_attn.export._saved_model import export_saved_model

__all__ = ["export_onnx", "export_saved_model"]
