"""A decoder with a sliding window, attention sinks and a logit soft cap exports
with `export_saved_model` and serves, with TensorFlow alone, the Keras numbers.
Both it and a decoder with a window alone (which takes PyTorch's fused path:
by rows of queries eagerly, the dense mask of the pattern when traced) export to
ONNX."""

import keras
import numpy as np
import pytest

from keras_attn.export import export_saved_model
from keras_attn.layers import TransformerDecoder
from tests._tiny_models import randomize
from tests.export.test_saved_model import _client_call
from tests.export.test_saved_model import _run_client

VOCABULARY, HIDDEN = 12, 8


@pytest.fixture(scope="module")
def windowed_model():
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCABULARY, HIDDEN)(tokens)
    x = TransformerDecoder(
        16, 2, sliding_window=3, use_attention_sinks=True, logit_soft_cap=2.0
    )(x)
    model = keras.Model(tokens, keras.layers.Dense(VOCABULARY)(x))
    return randomize(model, scale=0.5, seed=4)  # the sinks too


@pytest.fixture(scope="module")
def window_only_model():
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(VOCABULARY, HIDDEN)(tokens)
    x = TransformerDecoder(16, 2, sliding_window=3)(x)
    model = keras.Model(tokens, keras.layers.Dense(VOCABULARY)(x))
    return randomize(model, scale=0.5, seed=5)


def test_serving_default_returns_the_keras_outputs(windowed_model, tmp_path):
    path = str(tmp_path / "windowed")
    export_saved_model(windowed_model, path, verbose=False)
    rng = np.random.default_rng(0)
    calls, arrays, inputs = [], {}, {}
    for batch, length in ((1, 2), (3, 9)):  # shorter and longer than the window
        call_id = f"windowed_{batch}_{length}"
        inputs[call_id] = rng.integers(0, VOCABULARY, (batch, length), "int32")
        calls.append(
            _client_call(
                call_id, path, "serving_default", {"token_ids": inputs[call_id]}, arrays
            )
        )
    outputs = _run_client(calls, arrays, str(tmp_path))
    for call_id, token_ids in inputs.items():
        expected = keras.ops.convert_to_numpy(
            windowed_model.predict_on_batch(token_ids)
        )
        got = outputs[f"{call_id}/outputs"]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="torch.export writes the ONNX file on every backend; the route from "
    "TensorFlow and JAX (a torch subprocess) is checked in test_onnx.py",
)
@pytest.mark.parametrize("name", ["windowed_model", "window_only_model"])
def test_onnx_export_returns_the_keras_outputs(request, name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the `onnx` extra")
    from keras_attn.export import export_onnx

    model = request.getfixturevalue(name)
    path = export_onnx(model, str(tmp_path / f"{name}.onnx"), verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    token_ids = np.random.default_rng(1).integers(0, VOCABULARY, (2, 9), "int32")
    (got,) = session.run(None, {"token_ids": token_ids})
    expected = keras.ops.convert_to_numpy(model.predict_on_batch(token_ids))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
