"""explore: the page's data, read back from its HTML, against attention_maps."""

import base64
import functools
import json
import re

import keras
import numpy as np
import pytest

from keras_attn import inspect
from keras_attn.inspect import explorer
from keras_attn.layers import TransformerEncoder
from keras_attn.models import VisionTransformer
from tests.inspect.test_maps import IMAGES
from tests.inspect.test_maps import SOURCE
from tests.inspect.test_maps import TARGET
from tests.inspect.test_maps import captioner
from tests.inspect.test_maps import transformer
from tests.inspect.test_maps import vit

# The page stores w as round(w / m * 255) of its row maximum m: within m / 510
# (read back in float64, which adds nothing at this scale).
HALF_LEVEL = 0.5 / 255 * (1 + 1e-9)


CASES = {
    "vit": (vit, IMAGES),
    "transformer": (
        transformer,
        {"encoder_token_ids": SOURCE, "decoder_token_ids": TARGET},
    ),
    "captioner": (captioner, {"images": IMAGES, "decoder_token_ids": TARGET}),
}


# Labels of the transformer's pages (the other cases show their defaults).
TOKENS = {
    "transformer": {
        "encoder": [["five", "three", "four", "end", "[pad]"], ["one", "two", "three"]],
        "decoder": ["[start]", "3", "4", "[end]"],
    },
}


@functools.cache
def explored(case):
    """`(attention_maps, page)` of a case, computed once per test process."""
    make_model, inputs = CASES[case]
    model = make_model()
    page = inspect.explore(model, inputs, tokens=TOKENS.get(case))
    return inspect.attention_maps(model, inputs), page


def page_data(page):
    """The JSON inside the page, as a browser's script reads it."""
    found = re.search(
        r'<script type="application/json" id="explorer-data">(.*?)</script>',
        page.html,
        re.S,
    )
    return json.loads(found.group(1))


def decoded(weights, shape):
    """Dense `shape` weights from the page's base64 levels, scales and keys."""
    levels = np.frombuffer(base64.b64decode(weights["levels"]), np.uint8)
    scale = np.frombuffer(base64.b64decode(weights["scale"]), "<f4")
    rows = int(np.prod(shape[:-1]))
    levels = levels.reshape(rows, -1).astype("float64")
    values = levels * scale[:, None] / 255
    dense = np.zeros((rows, shape[-1]))
    if "keys" in weights:
        keys = np.frombuffer(base64.b64decode(weights["keys"]), "<u4")
        np.put_along_axis(dense, keys.reshape(rows, -1).astype(int), values, -1)
    else:
        dense[:] = values
    return dense.reshape(shape), scale.reshape(shape[:-1])


def assert_within(error, bound):
    np.testing.assert_array_less(error, np.broadcast_to(bound, error.shape))


def assert_equal_to_quantisation(page_weights, expected):
    values, scale = decoded(page_weights, expected.shape)
    assert_within(np.abs(values - expected), scale[..., None] * HALF_LEVEL + 1e-30)


@pytest.mark.parametrize("case", sorted(CASES))
def test_page_weights_equal_attention_maps(case):
    maps, page = explored(case)
    data = page_data(page)

    assert [layer["name"] for layer in data["layers"]] == list(maps)
    for layer in data["layers"]:
        expected = maps[layer["name"]]
        assert layer["shape"] == list(expected.shape)
        assert_equal_to_quantisation(layer["weights"], expected)


def test_layers_know_their_queries_and_keys():
    data = page_data(explored("captioner")[1])

    roles = {
        layer["name"]: (layer["queries"], layer["keys"]) for layer in data["layers"]
    }
    assert roles["encoder_layer_0/self_attention"] == ("encoder", "encoder")
    assert roles["decoder_layer_0/self_attention"] == ("decoder", "decoder")
    assert roles["decoder_layer_0/cross_attention"] == ("decoder", "encoder")
    assert data["sequences"]["encoder"]["image"]
    assert not data["sequences"]["decoder"]["image"]


def test_image_rollout_and_distances_equal_the_inspect_functions():
    maps, page = explored("vit")
    data = page_data(page)
    model = vit()

    image = data["image"]
    assert image["grid"] == [4, 4] and image["prefix"] == 1
    assert len(image["pictures"]) == 2
    assert image["pictures"][0].startswith("data:image/png;base64,")
    assert_equal_to_quantisation(image["rollout"], inspect.attention_rollout(maps))
    distances = inspect.mean_attention_distance(maps, (4, 4), 2)
    diagnostics = data["diagnostics"]
    assert diagnostics["distance"]["layers"] == list(distances)
    np.testing.assert_allclose(
        diagnostics["distance"]["values"], list(distances.values()), atol=5e-4
    )
    similarity = inspect.position_embedding_similarity(model)
    np.testing.assert_allclose(
        diagnostics["positionSimilarity"]["values"], similarity.ravel(), atol=5e-4
    )
    components, ratios = inspect.patch_embedding_components(model)
    assert len(diagnostics["patchComponents"]["pictures"]) == len(components)
    np.testing.assert_allclose(
        diagnostics["patchComponents"]["ratios"], ratios, atol=5e-5
    )


def test_labels_default_to_token_ids_and_patch_positions():
    sequences = page_data(explored("captioner")[1])["sequences"]

    assert sequences["decoder"]["labels"][0] == ["1", "3", "4", "0"]
    assert sequences["encoder"]["labels"][1][:2] == ["(0, 0)", "(0, 1)"]


def test_given_labels_pad_short_rows():
    sequences = page_data(explored("transformer")[1])["sequences"]

    assert sequences["encoder"]["labels"][1] == ["one", "two", "three", "", ""]
    assert sequences["decoder"]["labels"][1] == ["[start]", "3", "4", "[end]"]


def test_long_rows_keep_their_strongest_keys():
    length = explorer.MAX_FULL_KEYS + 4
    x = keras.Input((length, 8))
    model = keras.Model(x, TransformerEncoder(16, 2, name="encoder")(x))
    inputs = np.random.default_rng(1).normal(size=(1, length, 8)).astype("float32")
    expected = inspect.attention_maps(model, inputs)["encoder/self_attention"]

    weights = page_data(inspect.explore(model, inputs))["layers"][0]["weights"]

    values, _ = decoded(weights, expected.shape)
    kept = np.argsort(-expected, axis=-1, kind="stable")[..., : explorer.TOP_K]
    strongest = np.take_along_axis(expected, kept, -1)
    np.testing.assert_array_equal(
        np.count_nonzero(values, axis=-1) <= explorer.TOP_K, True
    )
    scale = strongest.max(axis=-1, keepdims=True)
    error = np.abs(np.take_along_axis(values, kept, -1) - strongest)
    assert_within(error, scale * HALF_LEVEL + 1e-30)


def test_a_vit_b16_page_stays_under_15_mb():
    # ViT-B/16's page size depends on its maps (12 layers x 12 heads x 197 x 197),
    # picture and diagnostics, not on its width: a narrow copy writes the same.
    model = VisionTransformer(
        image_size=224,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=48,
        mlp_dim=48,
        num_classes=3,
    )
    image = np.random.default_rng(0).random((1, 224, 224, 3)).astype("float32")

    page = inspect.explore(model, image)

    size = len(page.html.encode("utf-8"))
    assert 5e6 < size < 15e6, size
    assert all("keys" not in layer["weights"] for layer in page_data(page)["layers"])


def test_page_is_self_contained_and_saved(tmp_path):
    make_model, inputs = CASES["vit"]

    page = inspect.explore(make_model(), inputs, path=tmp_path / "nested" / "vit.html")

    assert page.path == tmp_path / "nested" / "vit.html"
    assert page.path.read_text(encoding="utf-8") == page.html
    # No file or address is fetched: no src/href but inline data.
    assert not re.search(r'(src|href)="(?!data:)', page.html)
    assert "<link" not in page.html and "@import" not in page.html
    assert "{{" not in page.html  # every placeholder filled
    assert page._repr_html_().startswith("<iframe srcdoc=")


def test_initial_layer_and_head_are_chosen_by_name_or_index():
    make_model, inputs = CASES["transformer"]
    name = "decoder_layer_0/cross_attention"

    by_name = page_data(inspect.explore(make_model(), inputs, layer=name, head=1))
    by_index = page_data(inspect.explore(make_model(), inputs, layer=2))

    assert by_name["initial"] == {"layer": 2, "head": 1}
    assert by_index["initial"] == {"layer": 2, "head": None}
    assert by_name["layers"][2]["name"] == name


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"layer": 3}, "argument `layer` must be an index below 3"),
        ({"layer": "decoder"}, "received 'decoder'"),
        ({"head": 2}, r"argument `head` must be None .* \[0, 2\) .* received 2"),
        ({"head": True}, "received True"),
        ({"tokens": ["a"]}, "argument `tokens` must be a dict with the keys"),
        ({"tokens": {"source": ["a"]}}, r"keys \['source'\] that are not text"),
        ({"tokens": {"encoder": ["a"] * 6}}, "has 6 labels but the encoder .* 5"),
        ({"tokens": {"decoder": [["a"]] * 3}}, "a list of 2 lists of strings"),
        (
            {"images": IMAGES[:1]},
            r"must be 2 pictures .* received shape \(1, 8, 8, 1\)",
        ),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    make_model, inputs = CASES["transformer"]

    with pytest.raises(ValueError, match=f"explore: .*{message}"):
        inspect.explore(make_model(), inputs, **arguments)


def test_inputs_that_do_not_fit_the_model_are_refused():
    wrong_channels = np.zeros((2, 8, 8, 3), "float32")

    with pytest.raises(
        ValueError,
        match=r"explore: argument `inputs` does not fit VisionTransformer .* "
        r"received shape \(2, 8, 8, 3\)\. The model said: .*1 channels",
    ):
        inspect.explore(vit(), wrong_channels)


def test_a_model_without_attention_is_refused():
    x = keras.Input((4,))
    dense = keras.Model(x, keras.layers.Dense(2)(x), name="plain")

    with pytest.raises(ValueError, match="explore: argument `model` .* 'plain'"):
        inspect.explore(dense, np.zeros((1, 4), "float32"))
