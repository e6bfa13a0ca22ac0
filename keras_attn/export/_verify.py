"""Check an ONNX file against the Keras model it came from, in onnxruntime."""

import keras
import numpy as np

_TOLERANCE = 1e-4
_BATCH_SIZE = 3
_LENGTH = 5


def verify_onnx(model, path, signature, owner):
    """Run both on the same random inputs; return the largest difference.

    Raises a `RuntimeError` when onnxruntime is missing or the outputs differ
    by more than 1e-4.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError(
            f"{owner}: verifying the ONNX file needs onnxruntime "
            "(`pip install keras-attn[onnx]`), or pass verify=False."
        ) from error
    from keras_attn.export import _signature

    inputs = sample_inputs(model, signature)
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
            f"{owner}: the ONNX file's outputs differ from the model's by "
            f"{difference:.3g} (more than {_TOLERANCE}) in onnxruntime."
        )
    return difference


def sample_inputs(model, signature, batch_size=_BATCH_SIZE, seed=0):
    """Random inputs: real token ids for integer inputs, normal floats otherwise."""
    rng = np.random.default_rng(seed)
    vocabulary = _smallest_vocabulary(model)
    inputs = {}
    for name, (shape, dtype) in signature.items():
        shape = [batch_size] + [_LENGTH if s is None else s for s in shape[1:]]
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
