"""`keras-attn export`: its messages, and one run the way a user runs it.

The error paths call the command's `main` in this process (a subprocess would
only add the seconds of importing Keras again); the export on another backend
runs `python -m keras_attn.cli`, the console script's entry point, which starts
another subprocess for `--backend`.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from keras_attn.cli import main
from tests._tiny_models import random_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@keras.saving.register_keras_serializable(package="tests_export")
class Doubler(keras.layers.Layer):
    """Registered here; the test takes it out of the registry before loading."""

    def call(self, x):
        return x * 2.0


@pytest.fixture
def export_command(capsys, monkeypatch):
    """Runs `keras-attn export ARGUMENTS` here, with the `missing` modules absent."""

    def run(*arguments, missing=()):
        for name in missing:
            monkeypatch.setitem(sys.modules, name, None)
        try:
            returncode = main(["export", *arguments])
        except SystemExit as stop:  # argparse's own errors
            returncode = stop.code
        captured = capsys.readouterr()
        return SimpleNamespace(
            returncode=returncode, stdout=captured.out, stderr=captured.err
        )

    return run


def _run_as_a_user(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "keras_attn.cli", "export", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def _error_lines(result):
    return [
        line
        for line in result.stderr.splitlines()
        if line.startswith("keras-attn export: error:")
    ]


def _tiny_model_file(directory):
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = str(directory / "tiny.keras")
    model.save(path)
    return path


def _other_backend():
    return "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"


def test_export_on_another_backend_reports_each_step(vit, tmp_path):
    model_path = str(tmp_path / "vit.keras")
    vit.save(model_path)
    backend = _other_backend()
    out = tmp_path / "served"
    result = _run_as_a_user(
        model_path, str(out), "--format", "saved_model", "--backend", backend
    )
    assert result.returncode == 0, result.stderr
    assert f"loading {model_path} ({backend})" in result.stdout
    assert f"wrote {out}" in result.stdout
    assert (out / "saved_model.pb").is_file()
    # The export serves what the model computes.
    import tensorflow as tf

    images = random_images(2)
    got = tf.saved_model.load(str(out)).signatures["serving_default"](
        images=tf.constant(images)
    )["outputs"]
    expected = keras.ops.convert_to_numpy(vit.predict_on_batch(images))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)


def test_a_missing_model_file_fails_with_a_message(export_command, tmp_path):
    result = export_command(str(tmp_path / "absent.keras"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert "keras-attn export: error: cannot load" in result.stderr
    assert "absent.keras" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_custom_object_fails_naming_the_class_and_layer(
    export_command, monkeypatch, tmp_path
):
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, Doubler(name="doubler")(inputs))
    model_path = str(tmp_path / "custom.keras")
    model.save(model_path)
    monkeypatch.delitem(keras.saving.get_custom_objects(), "tests_export>Doubler")
    result = export_command(model_path, str(tmp_path / "out"), "--format", "onnx")
    assert result.returncode == 1
    assert "Doubler" in result.stderr and "'doubler'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_fails(export_command, tmp_path):
    result = export_command("model.keras", str(tmp_path / "out"), "--format", "tflite")
    assert result.returncode == 2
    assert "invalid choice: 'tflite'" in result.stderr


def test_onnx_without_its_extra_prints_the_install_line_and_writes_nothing(
    export_command, tmp_path
):
    model_path = _tiny_model_file(tmp_path)
    out = tmp_path / "exports" / "onnx"
    result = export_command(
        model_path, str(out), "--format", "onnx", missing=["onnxscript"]
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = _error_lines(result)
    assert "onnxscript is not installed" in error
    assert 'pip install "keras-attn[onnx]"' in error
    # Checked before the model is even loaded.
    assert "loading" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["tiny.keras"]


def test_a_saved_model_without_tensorflow_prints_the_install_line(
    export_command, tmp_path
):
    model_path = _tiny_model_file(tmp_path)
    result = export_command(model_path, str(tmp_path / "out"), missing=["tensorflow"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = _error_lines(result)
    assert "`pip install tensorflow`" in error
    assert sorted(os.listdir(tmp_path)) == ["tiny.keras"]


def test_a_failure_during_the_export_prints_one_line_and_leaves_nothing(
    export_command, transformer, tmp_path
):
    model_path = str(tmp_path / "translator.keras")
    transformer.save(model_path)
    out = tmp_path / "exports" / "translator" / "1"
    # The padding id is no start token: the export fails before tracing anything.
    result = export_command(
        model_path, str(out), "--start-token-id", "0", "--max-length", "4"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = _error_lines(result)
    assert f"cannot export {model_path}" in error and "start_token_id" in error
    assert sorted(os.listdir(tmp_path)) == ["translator.keras"]


def test_version_is_the_package_version(capsys):
    import keras_attn
    from keras_attn.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"keras-attn {keras_attn.__version__}\n"
