"""Models that cannot be exported fail early, naming the layer, and leave nothing."""

import os

import keras
import numpy as np
import pytest

from keras_attn.export import export_onnx
from keras_attn.export import export_saved_model
from tests.export.conftest import PADDING_ID

EXPORTS = {"saved_model": export_saved_model, "onnx": export_onnx}


class UnregisteredScale(keras.layers.Layer):
    """A custom layer that Keras cannot find by name (not registered)."""

    def call(self, x):
        return x * 2.0


def _model_with(layer):
    inputs = keras.Input((3,), name="features")
    return keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))


def _leftovers(path):
    parent, name = os.path.split(path)
    return [entry for entry in os.listdir(parent) if entry.startswith(f".{name}.")]


@pytest.mark.parametrize("format", sorted(EXPORTS))
def test_a_lambda_layer_fails_naming_the_layer(format, tmp_path):
    model = _model_with(keras.layers.Lambda(lambda x: x + 1.0, name="add_one"))
    path = str(tmp_path / "exported")
    with pytest.raises(ValueError, match=r"layer 'add_one' \(Lambda\)"):
        EXPORTS[format](model, path, verbose=False)
    assert not os.path.exists(path)
    assert not _leftovers(path)


@pytest.mark.parametrize("format", sorted(EXPORTS))
def test_an_unregistered_custom_layer_fails_naming_the_layer(format, tmp_path):
    model = _model_with(UnregisteredScale(name="scale"))
    path = str(tmp_path / "exported")
    with pytest.raises(ValueError, match=r"layer 'scale' \(.*UnregisteredScale\)"):
        EXPORTS[format](model, path, verbose=False)
    assert not os.path.exists(path)


def test_a_failure_while_writing_leaves_no_partial_directory(transformer, tmp_path):
    # The padding id is no start token: generation fails while being traced,
    # after the export began writing.
    path = str(tmp_path / "exported")
    with pytest.raises((ValueError, RuntimeError), match="start_token_id"):
        export_saved_model(
            transformer, path, start_token_id=PADDING_ID, max_length=4, verbose=False
        )
    assert not os.path.exists(path)
    assert not _leftovers(path)


def test_a_failed_export_keeps_the_earlier_one(tmp_path):
    path = tmp_path / "exported"
    path.mkdir()
    (path / "earlier.txt").write_text("kept")
    model = _model_with(keras.layers.Lambda(lambda x: x, name="identity"))
    with pytest.raises(ValueError, match="identity"):
        export_saved_model(model, str(path), verbose=False)
    assert (path / "earlier.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"platforms": ("cpu", "gpu")}, "argument `platforms`"),
        ({"input_signature": {"pixels": ((None, 3), "float32")}}, "input names"),
    ],
)
def test_bad_arguments_fail_naming_the_argument(kwargs, message, tmp_path):
    model = _model_with(keras.layers.Identity())
    with pytest.raises(ValueError, match=message):
        export_saved_model(model, str(tmp_path / "exported"), verbose=False, **kwargs)


def test_start_token_id_for_a_model_that_does_not_generate_fails(tmp_path):
    model = _model_with(keras.layers.Identity())
    with pytest.raises(ValueError, match="argument `start_token_id`"):
        export_saved_model(model, str(tmp_path / "x"), start_token_id=1, verbose=False)


def test_a_custom_input_signature_fixes_sizes(tmp_path):
    model = _model_with(keras.layers.Identity())
    model(np.zeros((1, 3), "float32"))
    path = export_saved_model(
        model,
        str(tmp_path / "exported"),
        input_signature=keras.InputSpec(shape=(4, 3), dtype="float32"),
        verbose=False,
    )
    assert os.path.isdir(path)


def test_a_missing_subprocess_backend_fails_with_a_clear_message(
    vit, tmp_path, monkeypatch
):
    # The route that runs another backend: TensorFlow for a torch model's
    # SavedModel, torch for the ONNX file of a TensorFlow or JAX model.
    from keras_attn.export import _subprocess

    monkeypatch.setattr(_subprocess.importlib.util, "find_spec", lambda name: None)
    on_torch = keras.backend.backend() == "torch"
    export, missing = (
        (export_saved_model, "tensorflow")
        if on_torch
        else (
            export_onnx,
            "torch",
        )
    )
    path = str(tmp_path / "exported")
    with pytest.raises(RuntimeError, match=f"{missing} is not installed"):
        export(vit, path, verbose=False)
    assert not os.path.exists(path)


def test_a_file_export_moves_its_companion_files(tmp_path):
    from keras_attn.export import _staging

    path = tmp_path / "model.onnx"
    with _staging.staged(path, directory=False) as staging:
        with open(staging, "w") as file:
            file.write("graph")
        with open(staging + ".data", "w") as file:
            file.write("weights")
    assert path.read_text() == "graph"
    assert (tmp_path / "model.onnx.data").read_text() == "weights"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.data"]
