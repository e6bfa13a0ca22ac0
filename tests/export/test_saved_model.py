"""`export_saved_model` checked by a TensorFlow-only client."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_attn.export import export_saved_model
from keras_attn.generation import generate
from tests._tiny_models import END_ID
from tests._tiny_models import START_ID
from tests._tiny_models import random_images
from tests.export.conftest import MAX_LENGTH
from tests.export.conftest import prompts
from tests.export.conftest import random_tokens
from tests.export.conftest import serving_inputs

BATCH_SIZES = (1, 7)
GENERATION = {"start_token_id": START_ID, "end_token_id": END_ID}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _keras_outputs(model, inputs):
    inputs = inputs if len(inputs) > 1 else next(iter(inputs.values()))
    return keras.ops.convert_to_numpy(model.predict_on_batch(inputs))


def _generation_source(name, batch):
    if name == "language_model":
        return {"token_ids": prompts(batch, seed=20 + batch)}
    if name == "captioner":
        return {"images": random_images(batch, seed=10 + batch)}
    return {"encoder_token_ids": random_tokens(batch, 6, seed=10 + batch)}


def _client_call(call_id, path, signature, inputs, arrays):
    """One call of the client's request; its inputs go into `arrays`."""
    arrays.update({f"{call_id}_{k}": v for k, v in inputs.items()})
    names = {k: f"{call_id}_{k}" for k in inputs}
    return {"id": call_id, "path": path, "signature": signature, "inputs": names}


def _run_client(calls, arrays, directory):
    request = os.path.join(directory, "request.json")
    inputs, outputs = (os.path.join(directory, n) for n in ("in.npz", "out.npz"))
    with open(request, "w") as file:
        json.dump(calls, file)
    np.savez(inputs, **arrays)
    subprocess.run(
        [sys.executable, "-m", "tests.export.tf_only_client", request, inputs, outputs],
        check=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return dict(np.load(outputs))


@pytest.fixture(scope="module")
def served(vit, transformer, captioner, language_model, tmp_path_factory):
    """Export four models, then call every signature once in one client."""
    directory = tmp_path_factory.mktemp("saved_models")
    models = {
        "vit": vit,
        "transformer": transformer,
        "captioner": captioner,
        "language_model": language_model,
    }
    paths = {}
    for name, model in models.items():
        paths[name] = str(directory / name)
        generation = GENERATION if name in ("transformer", "captioner") else {}
        export_saved_model(
            model, paths[name], max_length=MAX_LENGTH, verbose=False, **generation
        )
    calls, arrays = [], {}
    for batch in BATCH_SIZES:
        for name in ("vit", "transformer"):
            inputs = serving_inputs(name, batch)
            call_id = f"{name}_{batch}"
            calls.append(
                _client_call(call_id, paths[name], "serving_default", inputs, arrays)
            )
        for name in ("transformer", "captioner", "language_model"):
            inputs = _generation_source(name, batch)
            call_id = f"{name}_generate_{batch}"
            calls.append(_client_call(call_id, paths[name], "generate", inputs, arrays))
    outputs = _run_client(calls, arrays, str(directory))
    return {"models": models, "paths": paths, "outputs": outputs}


def test_client_cannot_import_keras_or_keras_attn(served):
    assert served["outputs"]["keras_import_failed"]


@pytest.mark.parametrize("name", ["vit", "transformer"])
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_serving_default_returns_the_keras_outputs(served, name, batch):
    expected = _keras_outputs(served["models"][name], serving_inputs(name, batch))
    got = served["outputs"][f"{name}_{batch}/outputs"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "captioner", "language_model"])
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_generate_signature_returns_the_python_tokens(served, name, batch):
    source = next(iter(_generation_source(name, batch).values()))
    generation = GENERATION if name != "language_model" else {}
    expected = generate(
        served["models"][name], source, max_length=MAX_LENGTH, **generation
    )
    got = served["outputs"][f"{name}_generate_{batch}/token_ids"]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, keras.ops.convert_to_numpy(expected))


def _signatures(path):
    """`{signature: (input names, output names)}` from `saved_model.pb`, the
    protocol buffer that TensorFlow's `saved_model_cli show` lists."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    (meta_graph,) = saved_model.meta_graphs
    assert list(meta_graph.meta_info_def.tags) == ["serve"]
    return {
        name: (sorted(signature.inputs), sorted(signature.outputs))
        for name, signature in meta_graph.signature_def.items()
        if not name.startswith("__")  # TensorFlow's own `__saved_model_init_op`
    }


def test_the_saved_model_lists_the_named_signatures(served):
    assert _signatures(served["paths"]["vit"]) == {
        "serving_default": (["images"], ["outputs"])
    }
    assert _signatures(served["paths"]["transformer"]) == {
        "serving_default": (["decoder_token_ids", "encoder_token_ids"], ["outputs"]),
        "generate": (["encoder_token_ids"], ["token_ids"]),
    }
