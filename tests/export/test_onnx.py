"""`export_onnx` from the current backend, run in onnxruntime."""

import keras
import numpy as np
import pytest

from keras_attn.export import export_onnx
from tests.export.conftest import serving_inputs

onnxruntime = pytest.importorskip("onnxruntime", reason="the `onnx` extra")

BATCH_SIZES = (1, 7)
# The ONNX file is always written by torch.export: in this process on torch, in a
# torch subprocess that loads the model's `.keras` file on TensorFlow and JAX. Every
# model's graph is checked on torch; the other backends check their route with the
# ViT (whose file loads on torch exactly: tests/test_cross_backend.py), instead of
# running the same torch export of every model again.
MODELS = ("vit", "transformer") if keras.backend.backend() == "torch" else ("vit",)


@pytest.fixture(scope="module")
def sessions(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx")
    models = {name: request.getfixturevalue(name) for name in MODELS}
    sessions = {}
    for name, model in models.items():
        path = export_onnx(model, str(directory / f"{name}.onnx"), verbose=False)
        sessions[name] = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
    return models, sessions


@pytest.mark.parametrize("name", MODELS)
def test_inputs_are_named_and_the_batch_is_dynamic(sessions, name):
    _, sessions = sessions
    inputs = {i.name: i.shape for i in sessions[name].get_inputs()}
    assert sorted(inputs) == sorted(serving_inputs(name, 1))
    for shape in inputs.values():
        assert isinstance(shape[0], str)  # a symbolic size
    assert [o.name for o in sessions[name].get_outputs()] == ["outputs"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_onnxruntime_returns_the_keras_outputs(sessions, name, batch):
    models, sessions = sessions
    inputs = serving_inputs(name, batch)
    (got,) = sessions[name].run(None, inputs)
    model_inputs = inputs if len(inputs) > 1 else inputs["images"]
    expected = keras.ops.convert_to_numpy(models[name].predict_on_batch(model_inputs))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
