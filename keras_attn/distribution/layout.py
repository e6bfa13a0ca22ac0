"""One `keras.distribution.LayoutMap` for every model built from keras_attn layers.

The rules follow Megatron-LM tensor parallelism, written against the variable paths
that our layers give their sublayers (the keras-hub names):

| variable (path ends with)                      | shape          | sharded axis   |
|------------------------------------------------|----------------|----------------|
| `query/kernel`, `key/kernel`, `value/kernel`   | (D, H, Dh)     | heads          |
| (grouped-query: `key`, `value`)                | (D, Hkv, Dh)   | heads          |
| `attention_output/kernel`                      | (H, Dh, D)     | heads          |
| `feedforward_intermediate_dense/kernel`        | (D, F)         | columns (F)    |
| `feedforward_output_dense/kernel`              | (F, D)         | rows (F)       |
| `…embedding/embeddings`, `position_embedding`  | (N, D)         | hidden (D)     |
| `reverse_embeddings`                           | (D, V)         | hidden (D)     |
| `class_token`                                  | (1, 1, D)      | hidden (D)     |
| `patch_embedding/projection/kernel`            | (p, p, C, D)   | hidden (D)     |
| `…/kv_cache` (KV cache, not a variable)        | (B, 2, S, H, Dh) | batch, heads |

Everything else (biases, layer norms, classifier heads, convolution stems) is
replicated. A head's activations stay on the devices that hold its weights, so
each attention block and each feed-forward block needs one all-reduce, after its
output projection.

Variables are sharded over the model axis only and replicated over the batch
axis: the batch axis carries data parallelism. Only the KV cache, an activation,
is laid out over both.
"""

import math

import keras

from keras_attn.layers import _kv_cache

_MODEL = "model"
_BATCH = "batch"

# (regex matched with `re.fullmatch` against `variable.path`, axes); `_MODEL` and
# `_BATCH` stand for the mesh axes given to `layout_map`. No path matches two keys
# (a LayoutMap rejects ambiguous lookups).
_RULES = (
    (r".*/(query|key|value)/kernel", (None, _MODEL, None)),
    (r".*/attention_output/kernel", (_MODEL, None, None)),
    (r".*/feedforward_intermediate_dense/kernel", (None, _MODEL)),
    (r".*/feedforward_output_dense/kernel", (_MODEL, None)),
    (r"(.*/)?[^/]*embedding[^/]*/embeddings", (None, _MODEL)),
    (r"(.*/)?[^/]*embedding[^/]*/reverse_embeddings", (_MODEL, None)),
    (r"(.*/)?[^/]*embedding[^/]*/position_embedding", (None, _MODEL)),
    (r"(.*/)?[^/]*embedding[^/]*/class_token", (None, None, _MODEL)),
    (r"(.*/)?[^/]*embedding[^/]*/projection/kernel", (None, None, None, _MODEL)),
    # Not a variable: every `MultiHeadAttention`, whatever its name, lays its KV
    # cache out by the key `<layer path>/kv_cache`.
    (rf".*/{_kv_cache.LAYOUT_SUFFIX}", (_BATCH, None, None, _MODEL, None)),
)


def layout_map(device_mesh, model_axis="model", batch_axis="batch"):
    """A `keras.distribution.LayoutMap` for models built from keras_attn layers.

    Attention projections are sharded over heads, feed-forward kernels
    Megatron-style (the intermediate kernel by columns, the output kernel by
    rows), embeddings over the hidden dimension; biases and norms are
    replicated. Works for `VisionTransformer`, `Transformer`, `ImageCaptioner`,
    `CausalLM` and any model whose attention and feed-forward blocks are
    keras_attn layers; the KV caches of `keras_attn.generation.generate` (and
    of `CausalLM.initialize_caches`) are sharded over heads and the batch like
    the keys and values they hold. With grouped-query attention the key and
    value kernels have `num_key_value_heads` heads: the model axis must divide
    those too (`check_layout` says so).

    The map only names mesh axes, so it can be made on any backend; applying
    it (`keras.distribution.ModelParallel`) needs JAX. A layout map cannot see
    the shapes of the variables it will meet: check them with `check_layout`,
    or distribute with `model_parallel`, which checks each variable as it is
    created.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`.
        model_axis: name of the mesh axis the weights are sharded over.
        batch_axis: name of the mesh axis the data is sharded over, or `None`
            for a mesh without one.

    Returns:
        A `keras.distribution.LayoutMap` on `device_mesh`.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    layouts = keras_attn.distribution.layout_map(mesh)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")
    )
    model = keras_attn.models.VisionTransformer(...)  # variables are sharded
    ```
    """
    _check_mesh(device_mesh, model_axis, batch_axis)
    names = {_MODEL: model_axis, _BATCH: batch_axis, None: None}
    layouts = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in _RULES:
        layouts[pattern] = tuple(names[axis] for axis in axes)
    return layouts


def check_layout(model, layout_map):
    """Check that `layout_map` can lay out every variable of `model`.

    Each sharded dimension of a variable must be divisible by the size of the
    mesh axis (or axes) it is sharded over, and each layout must have one entry
    per dimension.

    Args:
        model: a built `keras.Model` or layer, or a list of variables (anything
            with `path` and `shape`).
        layout_map: a `keras.distribution.LayoutMap`, e.g. from `layout_map`.

    Raises:
        ValueError: naming the first variable that cannot be laid out, its
            shape, the mesh axis and its size.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
    model = keras_attn.models.VisionTransformer(..., num_heads=6, ...)
    keras_attn.distribution.check_layout(model, layout_map(mesh))
    # ValueError: ... variable 'encoder_layer_0/self_attention/query/kernel' ...
    # dimension 1 (size 6) ... mesh axis 'model' (size 4) ...
    ```
    """
    variables = model.weights if hasattr(model, "weights") else model
    for variable in variables:
        layout = layout_map[variable.path]
        if layout is not None:
            _check_variable_layout(variable, layout)


def _check_variable_layout(variable, layout):
    """Raise a `ValueError` if `layout` (a `TensorLayout`) cannot shard `variable`."""
    shape, axes, mesh = tuple(variable.shape), layout.axes, layout.device_mesh
    if len(axes) != len(shape):
        raise ValueError(
            f"keras_attn.distribution: variable '{variable.path}' of shape {shape} "
            f"has rank {len(shape)}, but its layout {axes} has {len(axes)} axes."
        )
    for dimension, (size, axis) in enumerate(zip(shape, axes)):
        if axis is None:
            continue
        axis_size = _axis_size(mesh, axis)
        if size % axis_size != 0:
            raise ValueError(
                f"keras_attn.distribution: variable '{variable.path}' of shape "
                f"{shape} cannot be sharded as {axes}: its dimension {dimension} "
                f"(size {size}) is not divisible by mesh axis {axis!r} (size "
                f"{axis_size}). Choose a mesh whose {axis!r} axis divides {size} "
                "(e.g. a number of heads divisible by the model axis)."
            )


def model_parallel(device_mesh, model_axis="model", batch_axis="batch"):
    """A `keras.distribution.ModelParallel` with `layout_map`, checking each variable.

    The same as `keras.distribution.ModelParallel(layout_map=layout_map(...))`,
    except that each variable is checked (`check_layout`) when it is created:
    a layout that does not divide fails with a `ValueError` naming the variable
    and the mesh axis, not with a backend sharding error. JAX only, as
    `keras.distribution.ModelParallel` is.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`.
        model_axis: name of the mesh axis the weights are sharded over.
        batch_axis: name of the mesh axis the data is sharded over.

    Returns:
        A `keras.distribution.ModelParallel`.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    with keras_attn.distribution.model_parallel(mesh).scope():
        model = keras_attn.models.Transformer(vocabulary_size=1000, num_heads=8)
    ```
    """
    if batch_axis is None:
        raise ValueError(
            "keras_attn.distribution.model_parallel: argument `batch_axis` must "
            "name a mesh axis; received None."
        )
    layouts = layout_map(device_mesh, model_axis, batch_axis)
    return _CheckedModelParallel(layout_map=layouts, batch_dim_name=batch_axis)


class _CheckedModelParallel(keras.distribution.ModelParallel):
    def get_variable_layout(self, variable):
        layout = super().get_variable_layout(variable)
        _check_variable_layout(variable, layout)
        return layout


def _axis_size(mesh, axis):
    """Devices along a mesh axis, or along several (`("batch", "model")`)."""
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return math.prod(mesh.shape[mesh.axis_names.index(name)] for name in axes)


def _check_mesh(device_mesh, model_axis, batch_axis):
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            "keras_attn.distribution.layout_map: argument `device_mesh` must be a "
            f"keras.distribution.DeviceMesh; received {device_mesh!r}."
        )
    names = tuple(device_mesh.axis_names)
    for argument, axis in (("model_axis", model_axis), ("batch_axis", batch_axis)):
        if axis is None and argument == "batch_axis":
            continue
        if axis not in names:
            raise ValueError(
                f"keras_attn.distribution.layout_map: argument `{argument}` must be "
                f"one of the mesh's axis names {names}; received {axis!r}."
            )
    if model_axis == batch_axis:
        raise ValueError(
            "keras_attn.distribution.layout_map: arguments `model_axis` and "
            f"`batch_axis` must differ; both are {model_axis!r}."
        )
