"""Models that cannot be exported fail early, naming the layer, and leave nothing."""

import os
import sys

import keras
import numpy as np
import pytest

from keras_attn.export import _saved_model
from keras_attn.export import _staging
from keras_attn.export import _subprocess
from keras_attn.export import export_onnx
from keras_attn.export import export_saved_model
from tests._tiny_models import PADDING_ID

EXPORTS = {"saved_model": export_saved_model, "onnx": export_onnx}


class UnregisteredScale(keras.layers.Layer):
    """A custom layer that Keras cannot find by name (not registered)."""

    def call(self, x):
        return x * 2.0


@keras.saving.register_keras_serializable(package="tests_export_failures")
class RegisteredHere(keras.layers.Layer):
    """Registered in this process only: an export subprocess cannot find it."""

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


def test_a_start_token_id_that_is_the_padding_id_fails_before_tracing(
    transformer, monkeypatch, tmp_path
):
    monkeypatch.setattr(_saved_model, "write_saved_model", _never_called)
    monkeypatch.setattr(_subprocess, "export_in_backend", _never_called)
    path = str(tmp_path / "exports" / "translator")
    with pytest.raises(ValueError, match="export_saved_model.*`start_token_id`"):
        export_saved_model(
            transformer, path, start_token_id=PADDING_ID, max_length=4, verbose=False
        )
    assert os.listdir(tmp_path) == []


def test_a_failure_while_writing_leaves_the_path_as_it_was(monkeypatch, tmp_path):
    # The writer of this backend's route (in this process, or the subprocess's
    # caller) writes part of the SavedModel, into folders the export created,
    # then fails.
    def write_then_fail(directory):
        with open(os.path.join(directory, "saved_model.pb"), "wb") as file:
            file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(
        _saved_model,
        "write_saved_model",
        lambda model, directory, *options: write_then_fail(directory),
    )
    monkeypatch.setattr(
        _subprocess,
        "export_in_backend",
        lambda backend, format, model, directory, *options: write_then_fail(directory),
    )
    path = str(tmp_path / "exports" / "served")
    with pytest.raises(OSError, match="No space left"):
        export_saved_model(_model_with(keras.layers.Identity()), path, verbose=False)
    assert os.listdir(tmp_path) == []


def _never_called(*arguments):
    raise AssertionError("the export began writing")


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


def test_a_class_the_subprocess_cannot_find_fails_naming_the_layer(tmp_path):
    # The route through a subprocess: TensorFlow for a torch model's
    # SavedModel, torch for the ONNX file of a TensorFlow or JAX model.
    on_torch = keras.backend.backend() == "torch"
    export = export_saved_model if on_torch else export_onnx
    model = _model_with(RegisteredHere(name="doubler"))
    path = str(tmp_path / "exported")
    with pytest.raises(ValueError, match=r"refused the model: .*layer 'doubler'"):
        export(model, path, verbose=False)
    assert os.listdir(tmp_path) == []


def _uninstall(monkeypatch, module):
    """Make `module` look missing: `find_spec` gives None and `import` fails.

    Keras itself may import the backend's module at any call, so models are
    built before a module is made to look missing.
    """
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("module", ["torch", "onnx", "onnxscript", "onnxruntime"])
def test_onnx_without_its_extra_fails_before_any_work(module, monkeypatch, tmp_path):
    # A Lambda layer is refused too, later: the missing package comes first.
    model = _model_with(keras.layers.Lambda(lambda x: x, name="identity"))
    _uninstall(monkeypatch, module)
    path = tmp_path / "exports" / "model.onnx"
    with pytest.raises(ModuleNotFoundError) as raised:
        export_onnx(model, str(path), verbose=False)
    message = str(raised.value)
    assert f"{module} is not installed" in message
    assert 'pip install "keras-attn[onnx]"' in message
    assert raised.value.name == module
    assert os.listdir(tmp_path) == []


def test_onnx_without_onnxruntime_offers_to_skip_the_verification(
    monkeypatch, tmp_path
):
    model = _model_with(keras.layers.Lambda(lambda x: x, name="identity"))
    _uninstall(monkeypatch, "onnxruntime")
    path = str(tmp_path / "model.onnx")
    with pytest.raises(ModuleNotFoundError, match="or pass verify=False"):
        export_onnx(model, path, verbose=False)
    # Without the verification onnxruntime is not needed: the model is looked
    # at, and its Lambda layer refused.
    with pytest.raises(ValueError, match=r"layer 'identity' \(Lambda\)"):
        export_onnx(model, path, verify=False, verbose=False)


def test_saved_model_without_tensorflow_fails_before_any_work(monkeypatch, tmp_path):
    model = _model_with(keras.layers.Lambda(lambda x: x, name="identity"))
    _uninstall(monkeypatch, "tensorflow")
    with pytest.raises(ModuleNotFoundError, match="`pip install tensorflow`"):
        export_saved_model(model, str(tmp_path / "exports" / "1"), verbose=False)
    assert os.listdir(tmp_path) == []


def test_a_file_export_moves_its_companion_files(tmp_path):
    path = tmp_path / "model.onnx"
    with _staging.staged(path, directory=False) as staging:
        with open(staging, "w") as file:
            file.write("graph")
        with open(staging + ".data", "w") as file:
            file.write("weights")
    assert path.read_text() == "graph"
    assert (tmp_path / "model.onnx.data").read_text() == "weights"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.data"]


def test_a_failed_export_removes_the_folders_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    path = tmp_path / "kept" / "created" / "deeper" / "model.onnx"
    with pytest.raises(RuntimeError, match="late failure"):
        with _staging.staged(path, directory=False) as staging:
            with open(staging, "w") as file:
                file.write("half a graph")
            raise RuntimeError("late failure")
    assert os.listdir(tmp_path) == ["kept"]
    assert os.listdir(tmp_path / "kept") == []
