"""The plot functions write PNG files (their looks are checked by eye)."""

import numpy as np
import pytest

from keras_attn import inspect

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    with open(path, "rb") as file:
        assert file.read(8) == PNG


def test_attention_over_images(tmp_path):
    rng = np.random.default_rng(0)
    path = inspect.plot_attention_on_images(
        rng.random((3, 8, 8, 1)),
        rng.random((3, 4, 4)),
        tmp_path / "a.png",
        titles=["0", "1", "2"],
    )
    assert_png(path)


def test_token_attention_with_labels(tmp_path):
    scores = np.full((2, 3), 1 / 3)
    path = inspect.plot_token_attention(
        scores, tmp_path / "t.png", ["<s>", "a"], ["x", "y", "z"], title="cross"
    )
    assert_png(path)


def test_token_labels_must_match_the_scores(tmp_path):
    with pytest.raises(ValueError, match="key_tokens.*3 labels"):
        inspect.plot_token_attention(np.zeros((2, 3)), tmp_path / "t.png", None, "ab")


def test_distance_position_similarity_and_components(tmp_path):
    distances = {"l0": np.array([1.0, 2.0]), "l1": np.array([3.0, 4.0])}
    assert_png(inspect.plot_attention_distance(distances, tmp_path / "d.png"))
    similarity = np.eye(4).reshape(2, 2, 2, 2)
    assert_png(inspect.plot_position_similarity(similarity, tmp_path / "p.png"))
    components = np.random.default_rng(0).normal(size=(4, 2, 2, 1))
    assert_png(inspect.plot_patch_components(components, tmp_path / "c.png", [0.4] * 4))
