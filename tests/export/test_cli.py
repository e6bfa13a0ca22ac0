"""`keras-attn export`, run as a subprocess the way a user runs it."""

import os
import subprocess
import sys

import keras
import numpy as np

from tests.export.conftest import random_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@keras.saving.register_keras_serializable(package="tests_export")
class Doubler(keras.layers.Layer):
    """Registered here, so the command's process (which never imports this
    module) cannot find it."""

    def call(self, x):
        return x * 2.0


def _run(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "keras_attn.cli", "export", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def _other_backend():
    return "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"


def test_export_on_another_backend_reports_each_step(vit, tmp_path):
    model_path = str(tmp_path / "vit.keras")
    vit.save(model_path)
    backend = _other_backend()
    out = tmp_path / "served"
    result = _run(model_path, str(out), "--format", "saved_model", "--backend", backend)
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


def test_a_missing_model_file_fails_with_a_message(tmp_path):
    result = _run(str(tmp_path / "absent.keras"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert "keras-attn export: error: cannot load" in result.stderr
    assert "absent.keras" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_custom_object_fails_naming_the_class_and_layer(tmp_path):
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, Doubler(name="doubler")(inputs))
    model_path = str(tmp_path / "custom.keras")
    model.save(model_path)
    result = _run(model_path, str(tmp_path / "out"), "--format", "onnx")
    assert result.returncode == 1
    assert "Doubler" in result.stderr and "'doubler'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_fails(tmp_path):
    result = _run("model.keras", str(tmp_path / "out"), "--format", "tflite")
    assert result.returncode == 2
    assert "invalid choice: 'tflite'" in result.stderr
