"""attention_maps: every attention layer's scores, for one call, on any model."""

import keras
import numpy as np
import pytest

from keras_attn import inspect
from keras_attn.inspect.maps import compiled_maps
from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import TransformerDecoder
from keras_attn.layers import TransformerEncoder
from keras_attn.layers._score_recording import recorder_for
from keras_attn.models import ImageCaptioner
from keras_attn.models import Transformer
from keras_attn.models import VisionTransformer
from keras_attn.ops import attention as attention_ops
from tests._tiny_models import TRANSFORMER
from tests._tiny_models import shared

HIDDEN = 8
HEADS = TRANSFORMER["num_heads"]  # of every tiny model, and of the layers built here
IMAGES = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
SOURCE = np.array([[5, 3, 4, 2, 0], [1, 2, 3, 0, 0]], "int32")  # 0 = padding
TARGET = np.array([[1, 3, 4, 0], [1, 2, 6, 7]], "int32")


def sequence(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def vit():
    return shared(VisionTransformer, num_layers=2)


def transformer():
    return shared(Transformer, num_layers=1)


def captioner():
    return shared(ImageCaptioner, channels=1, encoder="vit")


def test_maps_equal_the_scores_the_layers_return():
    x = keras.Input((5, HIDDEN))
    first, second = TransformerEncoder(16, HEADS), TransformerEncoder(16, HEADS)
    model = keras.Model(x, second(first(x)))
    inputs = sequence((2, 5, HIDDEN))

    maps = inspect.attention_maps(model, inputs)

    hidden, first_scores = first(inputs, return_attention_scores=True)
    _, second_scores = second(hidden, return_attention_scores=True)
    assert list(maps) == [
        f"{first.name}/self_attention",
        f"{second.name}/self_attention",
    ]
    np.testing.assert_allclose(maps[list(maps)[0]], numpy(first_scores), atol=1e-6)
    np.testing.assert_allclose(maps[list(maps)[1]], numpy(second_scores), atol=1e-6)


def test_self_and_cross_attention_of_a_decoder_are_told_apart():
    target, source = keras.Input((4, HIDDEN)), keras.Input((3, HIDDEN))
    decoder = TransformerDecoder(16, HEADS, name="decoder")
    model = keras.Model([target, source], decoder(target, source))
    inputs = [sequence((2, 4, HIDDEN)), sequence((2, 3, HIDDEN), seed=1)]

    maps = inspect.attention_maps(model, inputs)

    _, self_scores, cross_scores = decoder(*inputs, return_attention_scores=True)
    assert list(maps) == ["decoder/self_attention", "decoder/cross_attention"]
    np.testing.assert_allclose(
        maps["decoder/self_attention"], numpy(self_scores), atol=1e-6
    )
    np.testing.assert_allclose(
        maps["decoder/cross_attention"], numpy(cross_scores), atol=1e-6
    )


def test_vision_transformer_maps_cover_every_layer_and_token():
    maps = inspect.attention_maps(vit(), IMAGES)

    assert list(maps) == [
        "encoder_layer_0/self_attention",
        "encoder_layer_1/self_attention",
    ]
    for scores in maps.values():
        assert scores.shape == (2, HEADS, 17, 17)  # class token + 4x4 patches
        np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)


def test_transformer_maps_include_masked_cross_attention():
    inputs = {"encoder_token_ids": SOURCE, "decoder_token_ids": TARGET}

    maps = inspect.attention_maps(transformer(), inputs)

    assert list(maps) == [
        "encoder_layer_0/self_attention",
        "decoder_layer_0/self_attention",
        "decoder_layer_0/cross_attention",
    ]
    cross = maps["decoder_layer_0/cross_attention"]
    assert cross.shape == (2, HEADS, 4, 5)
    np.testing.assert_array_equal(cross[0, :, :, 4], 0.0)  # padded source token
    np.testing.assert_array_equal(cross[1, :, :, 3:], 0.0)
    causal = maps["decoder_layer_0/self_attention"]
    np.testing.assert_array_equal(np.triu(causal[1, 0], k=1), 0.0)


def test_image_captioner_maps_attend_from_words_to_patches():
    # 8x8 images in 2x2 patches: 16 image tokens.
    inputs = {"images": IMAGES, "decoder_token_ids": TARGET}

    maps = inspect.attention_maps(captioner(), inputs)

    assert maps["encoder_layer_0/self_attention"].shape == (2, HEADS, 16, 16)
    assert maps["decoder_layer_0/self_attention"].shape == (2, HEADS, 4, 4)
    assert maps["decoder_layer_0/cross_attention"].shape == (2, HEADS, 4, 16)


def test_a_shared_layer_gets_one_entry_per_call():
    x = keras.Input((3, HIDDEN))
    attention = MultiHeadAttention(HEADS, 4, name="shared")
    model = keras.Model(x, attention(attention(x, x), x))

    maps = inspect.attention_maps(model, sequence((1, 3, HIDDEN)))

    assert list(maps) == ["shared", "shared#1"]


def test_normal_calls_keep_their_outputs_and_fused_path(monkeypatch):
    model = vit()
    chosen = []
    choose = attention_ops._choose_implementation

    def spy(*args, **kwargs):
        chosen.append(choose(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(attention_ops, "_choose_implementation", spy)
    before = numpy(model(IMAGES))
    normal = list(chosen)

    chosen.clear()
    inspect.attention_maps(model, IMAGES)
    assert chosen == ["math", "math"]

    chosen.clear()
    after = numpy(model(IMAGES))
    np.testing.assert_array_equal(after, before)
    assert chosen == normal
    if keras.backend.backend() in ("jax", "torch"):
        # TensorFlow has no fused kernel: its normal path is the math one.
        assert normal == ["fused", "fused"]


def test_recording_stops_even_when_the_call_fails():
    model = vit()
    attention = model.get_layer("encoder_layer_0").self_attention

    with pytest.raises(ValueError):
        inspect.attention_maps(model, np.zeros((1, 7, 7, 1), "float32"))

    assert recorder_for(attention) is None


def test_a_model_without_attention_layers_is_rejected():
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))

    with pytest.raises(ValueError, match="MultiHeadAttention.*has none"):
        inspect.attention_maps(model, np.zeros((1, 4), "float32"))


def test_something_that_is_not_a_model_is_rejected():
    with pytest.raises(ValueError, match="argument `model`"):
        inspect.attention_maps(lambda x: x, np.zeros((1, 4), "float32"))


def test_compiled_maps_equal_attention_maps_and_follow_the_weights():
    x = keras.Input((3, HIDDEN))
    attention = MultiHeadAttention(HEADS, 4, name="shared")
    model = keras.Model(x, attention(attention(x, x), x))  # one layer, two calls
    inputs = sequence((2, 3, HIDDEN))
    maps_of = compiled_maps("test", model)

    for seed in (0, 1):  # the second time with other weights, the same trace
        rng = np.random.default_rng(seed)
        for weight in model.weights:
            weight.assign(0.5 * rng.normal(size=weight.shape).astype("float32"))
        expected = inspect.attention_maps(model, inputs)

        got = maps_of(inputs)

        assert list(got) == list(expected) == ["shared", "shared#1"]
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-7)
