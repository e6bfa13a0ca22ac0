"""`keras-attn convert`: a checkpoint in, a `.keras` file with the same logits out."""

import keras
import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from keras_attn.cli import main  # noqa: E402
from keras_attn.convert import vit_from_npz  # noqa: E402
from tests.convert._huggingface import vit_classifier  # noqa: E402
from tests.convert._original_naming import original_naming  # noqa: E402
from tests.convert._original_naming import random_vit  # noqa: E402
from tests.convert.test_huggingface_gpt2 import gpt2  # noqa: E402


def _images(size=16):
    return np.random.RandomState(1).rand(2, size, size, 3).astype("float32")


def test_huggingface_directory_to_keras_file(tmp_path, capsys):
    source = vit_classifier()
    source.save_pretrained(tmp_path / "hf")
    output = str(tmp_path / "vit.keras")
    assert main(["convert", str(tmp_path / "hf"), output]) == 0
    assert "wrote" in capsys.readouterr().out
    model = keras.saving.load_model(output)
    images = _images()
    with torch.no_grad():
        expected = source(torch.from_numpy(images.transpose(0, 3, 1, 2))).logits
    difference = np.abs(keras.ops.convert_to_numpy(model(images)) - expected.numpy())
    assert difference.max() < 1e-4


def test_gpt2_directory_to_keras_file(tmp_path, capsys):
    source = gpt2()
    source.save_pretrained(tmp_path / "hf")
    output = str(tmp_path / "gpt2.keras")
    assert main(["convert", str(tmp_path / "hf"), output]) == 0
    assert "vocabulary 64, context 16" in capsys.readouterr().out
    model = keras.saving.load_model(output)
    token_ids = np.random.RandomState(0).randint(0, 64, (2, 13))
    with torch.no_grad():
        expected = source(torch.from_numpy(token_ids)).logits.numpy()
    difference = np.abs(keras.ops.convert_to_numpy(model(token_ids)) - expected)
    assert difference.max() < 1e-5


def test_gpt2_with_image_size_is_refused(tmp_path, capsys):
    gpt2().config.save_pretrained(tmp_path)
    output = tmp_path / "gpt2.keras"
    assert main(["convert", str(tmp_path), str(output), "--image-size", "24"]) == 1
    assert "--image-size applies to ViT" in capsys.readouterr().err
    assert not output.exists()


def test_npz_with_image_size(tmp_path):
    path = tmp_path / "vit.npz"
    np.savez(path, **original_naming(random_vit()))
    output = str(tmp_path / "vit.keras")
    assert main(["convert", str(path), output, "--image-size", "24"]) == 0
    model = keras.saving.load_model(output)
    assert model.image_size == 24
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(_images(24))),
        keras.ops.convert_to_numpy(vit_from_npz(path, image_size=24)(_images(24))),
        atol=1e-6,
    )


def test_bad_checkpoint_fails_with_the_tensor_name(tmp_path, capsys):
    state = original_naming(random_vit())
    del state["head/bias"]
    path = tmp_path / "vit.npz"
    np.savez(path, **state)
    assert main(["convert", str(path), str(tmp_path / "vit.keras")]) == 1
    assert "no tensor 'head/bias'" in capsys.readouterr().err
    assert not (tmp_path / "vit.keras").exists()
