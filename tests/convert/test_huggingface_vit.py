"""Hugging Face ViT checkpoints convert to the same logits as transformers gives."""

import os

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from keras_attn.convert import vit_from_huggingface  # noqa: E402
from tests.convert._huggingface import randomised  # noqa: E402
from tests.convert._huggingface import vit_classifier  # noqa: E402
from tests.convert._huggingface import vit_config  # noqa: E402

# Logits of a float32 model; the ops differ in order only.
TOLERANCE = 1e-4


def _images(size, batch=2):
    return np.random.RandomState(1).rand(batch, 3, size, size).astype("float32")


def _torch_output(model, images, **kwargs):
    with torch.no_grad():
        output = model(torch.from_numpy(images), **kwargs)
    return (
        output.logits if hasattr(output, "logits") else output.pooler_output
    ).numpy()


def _keras_output(model, images):
    return keras.ops.convert_to_numpy(model(images.transpose(0, 2, 3, 1)))


def test_safetensors_directory_gives_the_same_logits(tmp_path):
    source = vit_classifier()
    source.save_pretrained(tmp_path)
    model = vit_from_huggingface(tmp_path)
    images = _images(16)
    difference = np.abs(_keras_output(model, images) - _torch_output(source, images))
    assert difference.max() < TOLERANCE


def test_configuration_follows_the_checkpoint(tmp_path):
    source = vit_classifier(layer_norm_eps=1e-12, num_labels=7)
    model = vit_from_huggingface(source.state_dict(), config=source.config)
    assert model.layer_norm_epsilon == 1e-12
    assert model.num_classes == 7
    assert model.num_layers == 2 and model.hidden_dim == 32 and model.num_heads == 4


def test_other_image_size_matches_interpolate_pos_encoding(tmp_path):
    source = vit_classifier()
    model = vit_from_huggingface(source.state_dict(), config=source.config)
    images = _images(24)
    expected = _torch_output(source, images, interpolate_pos_encoding=True)
    difference = np.abs(_keras_output(model, images) - expected)
    assert difference.max() < TOLERANCE


def test_built_for_another_image_size_matches_interpolate_pos_encoding():
    source = vit_classifier()
    model = vit_from_huggingface(
        source.state_dict(), config=source.config, image_size=32
    )
    assert model.get_layer("patch_embedding").position_table.shape == (1 + 64, 32)
    images = _images(32)
    expected = _torch_output(source, images, interpolate_pos_encoding=True)
    difference = np.abs(_keras_output(model, images) - expected)
    assert difference.max() < TOLERANCE


def test_without_qkv_bias():
    source = vit_classifier(qkv_bias=False)
    model = vit_from_huggingface(source.state_dict(), config=source.config)
    images = _images(16)
    difference = np.abs(_keras_output(model, images) - _torch_output(source, images))
    assert difference.max() < TOLERANCE


def test_vit_model_pooler_becomes_pre_logits():
    torch.manual_seed(0)
    source = randomised(transformers.ViTModel(vit_config()))
    model = vit_from_huggingface(source.state_dict(), config=source.config)
    assert not model.include_top and model.representation_size == 32
    images = _images(16)
    difference = np.abs(_keras_output(model, images) - _torch_output(source, images))
    assert difference.max() < TOLERANCE


def test_transformers_4_names_are_read(tmp_path):
    source = vit_classifier()
    legacy = {}
    for name, tensor in source.state_dict().items():
        name = name.replace("vit.layers.", "vit.encoder.layer.")
        for new, old in (
            ("attention.q_proj", "attention.attention.query"),
            ("attention.k_proj", "attention.attention.key"),
            ("attention.v_proj", "attention.attention.value"),
            ("attention.o_proj", "attention.output.dense"),
            ("mlp.fc1", "intermediate.dense"),
            ("mlp.fc2", "output.dense"),
        ):
            name = name.replace(new, old)
        legacy[name] = tensor.contiguous()
    path = os.path.join(tmp_path, "model.safetensors")
    safetensors_torch.save_file(legacy, path)
    source.config.to_json_file(os.path.join(tmp_path, "config.json"))
    model = vit_from_huggingface(path)
    images = _images(16)
    difference = np.abs(_keras_output(model, images) - _torch_output(source, images))
    assert difference.max() < TOLERANCE


def test_approximate_gelu_is_refused():
    source = vit_classifier(hidden_act="gelu_new")
    with pytest.raises(ValueError, match="hidden_act"):
        vit_from_huggingface(source.state_dict(), config=source.config)


def test_classifier_checkpoint_ignores_a_pooler():
    # As ViTForImageClassification does when its checkpoint has one.
    source = vit_classifier()
    state = dict(source.state_dict())
    state["vit.pooler.dense.weight"] = torch.zeros(32, 32)
    state["vit.pooler.dense.bias"] = torch.zeros(32)
    model = vit_from_huggingface(state, config=source.config)
    assert model.representation_size is None
    images = _images(16)
    difference = np.abs(_keras_output(model, images) - _torch_output(source, images))
    assert difference.max() < TOLERANCE


def test_image_size_not_divisible_by_the_patch_size_is_refused():
    source = vit_classifier()
    with pytest.raises(ValueError, match="image_size"):
        vit_from_huggingface(source.state_dict(), config=source.config, image_size=18)


def test_config_without_vit_keys_is_refused():
    source = vit_classifier()
    config = source.config.to_dict()
    del config["patch_size"]
    with pytest.raises(ValueError, match=r"missing \['patch_size'\]"):
        vit_from_huggingface(source.state_dict(), config=config)
