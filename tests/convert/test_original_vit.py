"""Original (Flax) ViT `.npz` checkpoints: exact round trip and grid resampling."""

import keras
import numpy as np
import pytest

from keras_attn.convert import vit_from_npz
from tests.convert._original_naming import original_naming
from tests.convert._original_naming import random_vit


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable.value)


def _save(tmp_path, state):
    path = tmp_path / "vit.npz"
    np.savez(path, **state)
    return path


def _images(size):
    return np.random.RandomState(1).rand(2, size, size, 3).astype("float32")


@pytest.mark.parametrize(
    "overrides",
    [{}, {"representation_size": 16}, {"pooling": "mean"}],
    ids=["token", "pre_logits", "mean_pooling"],
)
def test_round_trip_is_exact(tmp_path, overrides):
    source = random_vit(**overrides)
    model = vit_from_npz(_save(tmp_path, original_naming(source)))
    assert model.get_config() | {"name": None} == source.get_config() | {"name": None}
    for ours, theirs in zip(model.weights, source.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(_numpy(ours), _numpy(theirs))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(_images(16))),
        keras.ops.convert_to_numpy(source(_images(16))),
    )


def test_other_grid_is_resampled_like_pytorch_bicubic(tmp_path):
    torch = pytest.importorskip("torch")
    source = random_vit()
    state = original_naming(source)
    model = vit_from_npz(_save(tmp_path, state), image_size=24)
    assert model.image_size == 24
    table = _numpy(model.get_layer("patch_embedding").position_table)
    grid = state["Transformer/posembed_input/pos_embedding"][0, 1:]  # (16, D)
    grid = torch.from_numpy(grid.reshape(1, 4, 4, 32)).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(
        grid, size=(6, 6), mode="bicubic", align_corners=False
    )
    expected = expected.permute(0, 2, 3, 1).reshape(36, 32).numpy()
    np.testing.assert_allclose(table[1:], expected, atol=1e-6)
    np.testing.assert_array_equal(
        table[0], state["Transformer/posembed_input/pos_embedding"][0, 0]
    )
    # The source model resamples the same table at run time.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(_images(24))),
        keras.ops.convert_to_numpy(source(_images(24))),
        atol=1e-5,
    )


def test_checkpoint_with_optimizer_state_reads_the_parameters(tmp_path):
    source = random_vit()
    state = {f"opt/target/{k}": v for k, v in original_naming(source).items()}
    state["opt/state/step"] = np.array(7)
    state["opt/state/param_states/head/kernel/m"] = np.zeros((32, 5))
    model = vit_from_npz(_save(tmp_path, state))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(_images(16))),
        keras.ops.convert_to_numpy(source(_images(16))),
    )
