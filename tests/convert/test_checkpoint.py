"""Bad checkpoints fail early, naming the tensor and the shapes; pickle is refused."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_attn.convert import read_state_dict  # noqa: E402
from keras_attn.convert import vit_from_huggingface  # noqa: E402
from keras_attn.convert import vit_from_npz  # noqa: E402
from tests.convert._huggingface import vit_classifier  # noqa: E402
from tests.convert._original_naming import original_naming  # noqa: E402
from tests.convert._original_naming import random_vit  # noqa: E402

_FC1 = "vit.layers.1.mlp.fc1.weight"


def test_missing_tensor_is_named():
    source = vit_classifier()
    state = source.state_dict()
    del state[_FC1]
    with pytest.raises(ValueError, match=r"no tensor 'layers\.1\.mlp\.fc1\.weight'"):
        vit_from_huggingface(state, config=source.config)


def test_mis_shaped_tensor_names_expected_and_found_shape():
    source = vit_classifier()
    state = source.state_dict()
    state[_FC1] = torch.zeros(48, 32)
    with pytest.raises(ValueError) as error:
        vit_from_huggingface(state, config=source.config)
    message = str(error.value)
    assert "'layers.1.mlp.fc1.weight'" in message
    assert "(64, 32)" in message and "found shape (48, 32)" in message


def test_unused_tensor_is_named():
    source = vit_classifier()
    state = source.state_dict()
    state["vit.layers.2.mlp.fc1.weight"] = torch.zeros(64, 32)
    with pytest.raises(ValueError, match=r"layers\.2\.mlp\.fc1\.weight"):
        vit_from_huggingface(state, config=source.config)


def test_npz_missing_and_mis_shaped_tensors_are_named(tmp_path):
    state = original_naming(random_vit())
    path = tmp_path / "vit.npz"
    name = "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel"
    np.savez(path, **{k: v for k, v in state.items() if k != name})
    with pytest.raises(ValueError, match=f"no tensor '{name}'"):
        vit_from_npz(path)
    np.savez(path, **{**state, name: state[name][:, :, :7]})
    with pytest.raises(ValueError) as error:
        vit_from_npz(path)
    message = str(error.value)
    assert f"'{name}'" in message
    assert "(32, 4, 8)" in message and "found shape (32, 4, 7)" in message


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(ValueError, match="Pickle files are refused"):
        read_state_dict(path)


def test_legacy_torch_pickle_is_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="without pickle"):
        read_state_dict(path)


class _Payload:
    pass


def test_torch_file_with_objects_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3), "object": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(path)


def test_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "vit.npz"
    np.savez(path, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="without pickle"):
        read_state_dict(path)


def test_torch_tensor_file_is_read(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    np.testing.assert_array_equal(read_state_dict(path)["w"], [0.0, 1.0, 2.0])


def test_bfloat16_safetensors_are_read_as_float32(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}, path)
    weights = read_state_dict(path)["w"]
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, [1.5, -2.0])
