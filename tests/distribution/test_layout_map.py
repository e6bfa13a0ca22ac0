"""`layout_map` and `check_layout`: how each variable is sharded; on every backend.

A `DeviceMesh` made from device names is plain data, so the map can be built and
checked against a model's variables without the devices (applying it is JAX's job,
tested in test_engines.py).
"""

from unittest import mock

import keras
import pytest

from keras_attn.distribution import check_layout
from keras_attn.distribution import layout_map
from keras_attn.layers import MultiHeadAttention
from tests._tiny_models import tiny_image_captioner
from tests.distribution import _scenarios
from tests.distribution._scenarios import HEADS


def mesh(shape=(2, 4), axis_names=("batch", "model")):
    devices = [f"cpu:{i}" for i in range(shape[0] * shape[1])]
    return keras.distribution.DeviceMesh(shape, axis_names, devices)


MODELS = {
    "vision_transformer": _scenarios.vision_transformer,
    # Separate input and output embeddings: every embedding variable is present.
    "transformer": lambda: _scenarios.transformer(
        share_embeddings=False, tie_output_embeddings=False
    ),
    # Learned positions and an output matrix of its own: every variable kind.
    "causal_lm": _scenarios.causal_lm,
    "captioner_cnn": lambda: tiny_image_captioner(encoder="cnn", num_heads=HEADS),
    "captioner_vit": lambda: tiny_image_captioner(encoder="vit", num_heads=HEADS),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    """Each model once per module: the tests only read its variables."""
    return MODELS[request.param]()


def axes(layouts, path):
    layout = layouts[path]
    return None if layout is None else layout.axes


@pytest.mark.parametrize(
    "path, expected",
    [
        ("encoder_layer_0/self_attention/query/kernel", (None, "model", None)),
        ("decoder_layer_3/cross_attention/key/kernel", (None, "model", None)),
        ("decoder_layer_0/self_attention/value/kernel", (None, "model", None)),
        (
            "encoder_layer_1/self_attention/attention_output/kernel",
            ("model", None, None),
        ),
        ("encoder_layer_0/feedforward_intermediate_dense/kernel", (None, "model")),
        ("decoder_layer_0/feedforward_output_dense/kernel", ("model", None)),
        ("decoder_token_embedding/embeddings", (None, "model")),
        ("decoder_token_embedding/reverse_embeddings", ("model", None)),
        ("token_embedding/embeddings", (None, "model")),
        ("token_embedding/reverse_embeddings", ("model", None)),
        ("position_embedding/embeddings", (None, "model")),
        ("image_position_embedding/embeddings", (None, "model")),
        ("patch_embedding/position_embedding", (None, "model")),
        ("patch_embedding/class_token", (None, None, "model")),
        ("patch_embedding/projection/kernel", (None, None, None, "model")),
        (
            "decoder_layer_0/self_attention/kv_cache",
            ("batch", None, None, "model", None),
        ),
    ],
)
def test_sharded_variables(path, expected):
    assert axes(layout_map(mesh()), path) == expected


def test_biases_norms_and_heads_are_replicated(model):
    layouts = layout_map(mesh())
    for variable in model.weights:
        path = variable.path
        if path.endswith(("/bias", "/gamma", "/beta")) or path.startswith(
            ("head/", "image_conv", "image_projection")
        ):
            assert axes(layouts, path) is None, path


def test_every_variable_has_one_layout_that_divides(model):
    # A LayoutMap raises when a path matches two keys; check_layout looks up all.
    layouts = layout_map(mesh())
    check_layout(model, layouts)
    sharded = [v.path for v in model.weights if layouts[v.path] is not None]
    attention = [p for p in sharded if "attention" in p]
    assert len(attention) == 4 * sum("query/kernel" in p for p in sharded)


def test_axis_names_are_the_ones_given():
    layouts = layout_map(mesh(axis_names=("data", "heads")), "heads", "data")
    assert axes(layouts, "x/self_attention/query/kernel") == (None, "heads", None)
    assert axes(layouts, "x/self_attention/kv_cache") == (
        "data",
        None,
        None,
        "heads",
        None,
    )


def test_a_mesh_without_batch_axis():
    layouts = layout_map(mesh((1, 8), ("replica", "model")), batch_axis=None)
    assert axes(layouts, "x/self_attention/kv_cache") == (
        None,
        None,
        None,
        "model",
        None,
    )


def test_heads_not_divisible_by_the_model_axis_name_variable_and_axis():
    model = _scenarios.three_heads_vision_transformer()
    with pytest.raises(ValueError) as error:
        check_layout(model, layout_map(mesh()))
    message = str(error.value)
    assert "'encoder_layer_0/self_attention/query/kernel'" in message
    assert "shape (12, 3, 4)" in message
    assert "dimension 1 (size 3)" in message
    assert "mesh axis 'model' (size 4)" in message


@pytest.mark.parametrize("name", ["mha", "attention", "decoder_self_attention"])
def test_kv_cache_is_sharded_whatever_the_layer_is_named(name):
    layer = MultiHeadAttention(num_heads=4, key_dim=4, name=name)
    layer.build((2, 3, 16), (2, 3, 16))
    # The key the layer asks the active distribution for...
    distribution = mock.Mock(**{"get_tensor_layout.return_value": None})
    with mock.patch.object(keras.distribution, "distribution") as active:
        active.return_value = distribution
        layer.initialize_cache(2, 5)
    distribution.get_tensor_layout.assert_called_once_with(f"{name}/kv_cache")
    # ...which the layout map shards over the batch and the heads.
    cache_axes = ("batch", None, None, "model", None)
    assert axes(layout_map(mesh()), f"{name}/kv_cache") == cache_axes


def test_key_value_heads_must_divide_the_model_axis_too():
    # Grouped-query attention: 8 query heads divide over 4 devices, 2 kv heads not.
    model = _scenarios.causal_lm(num_key_value_heads=2)
    with pytest.raises(ValueError) as error:
        check_layout(model, layout_map(mesh()))
    message = str(error.value)
    assert "'decoder_layer_0/self_attention/key/kernel'" in message
    assert "dimension 1 (size 2)" in message
    check_layout(model, layout_map(mesh((4, 2))))  # a model axis of 2 divides them


def test_a_model_axis_that_divides_the_heads_passes():
    model = _scenarios.three_heads_vision_transformer()
    layouts = layout_map(mesh((8, 1)))
    check_layout(model, layouts)  # raises on (2, 4), see above
    # It passes with the heads still sharded, over a model axis of size 1.
    query = "encoder_layer_0/self_attention/query/kernel"
    assert axes(layouts, query) == (None, "model", None)


def test_check_layout_accepts_a_list_of_variables():
    model = _scenarios.three_heads_vision_transformer()
    # The variables are checked as they are in a model: the same error.
    with pytest.raises(ValueError, match=r"'encoder_layer_0/self_attention/query"):
        check_layout(model.weights, layout_map(mesh()))


def test_layout_of_the_wrong_rank_is_an_error():
    layouts = layout_map(mesh())
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="feedforward_output_dense")]
    )
    variable = model.weights[0]
    layouts[variable.path] = ("model", None, None)
    with pytest.raises(ValueError, match="has rank 2, but its layout"):
        check_layout(model, layouts)


@pytest.mark.parametrize(
    "arguments, match",
    [
        ({"device_mesh": "cpu:0"}, "argument `device_mesh` must be a"),
        ({"model_axis": "heads"}, "argument `model_axis` must be one of"),
        ({"batch_axis": "data"}, "argument `batch_axis` must be one of"),
        ({"model_axis": "batch"}, "must differ; both are 'batch'"),
    ],
)
def test_bad_arguments(arguments, match):
    arguments = {"device_mesh": mesh(), **arguments}
    with pytest.raises(ValueError, match=match):
        layout_map(**arguments)
