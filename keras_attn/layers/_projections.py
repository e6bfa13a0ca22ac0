"""The projections of `MultiHeadAttention`, laid out as Keras' layer lays them out.

`query`, `key` and `value` are `EinsumDense` "abc,cde->abde", `attention_output`
"abcd,cde->abe", as in `keras.layers.MultiHeadAttention`: batch, length,
features, heads, head_dim. The letters are in the order of the kernels' axes on
purpose: `torch.einsum` orders contracted axes by letter, and "btnh,nhd->btd"
made it copy the output kernel transposed at every call (2.3 ms of a 12 ms
decoding step of width 512).

Projections of the same tensor (q, k and v in self-attention; k and v in
cross-attention) run as one product with their kernels side by side: one
(B·T, d) x (d, 3·H·Dk) GEMM instead of three thinner ones. Under XLA (JAX,
TensorFlow) a cached decoding step got 1.5x faster on TensorFlow and 1.1x on JAX
(`benchmarks/cached_decoding.py`), training unchanged. Not on torch, whose eager
calls copy the kernels into one on every call: decoding there fell to 0.68x
keras-hub's, so torch keeps three products. Projections with LoRA or quantization
enabled are called as they are.
"""

import keras
from keras import ops

from keras_attn import _checks

# The constructor arguments of `MultiHeadAttention` that each projection receives.
SUBLAYER_ARGUMENTS = (
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "bias_constraint",
)


def build_projections(layer, query_shape, value_shape, key_shape):
    """`layer`'s four projections, built: `(query, key, value, attention_output)`.

    Inputs of rank 3; `key_shape` defaults to `value_shape`. Assign the four in
    that order: Keras lists sublayer weights in assignment order, and
    `keras.layers.MultiHeadAttention` lists them so.
    """
    key_shape = value_shape if key_shape is None else key_shape
    shapes = {"query": query_shape, "value": value_shape, "key": key_shape}
    for name, shape in shapes.items():
        _checks.check_rank(_checks.owner_name(layer), name, shape, 3)
    heads, kv_heads = layer.num_heads, layer.kv_heads
    query = projection("query", heads, layer.key_dim, **_arguments(layer))
    query.build(query_shape)
    key = projection("key", kv_heads, layer.key_dim, **_arguments(layer))
    key.build(key_shape)
    value = projection("value", kv_heads, layer.head_value_dim, **_arguments(layer))
    value.build(value_shape)
    features = layer.output_shape_ or query_shape[-1]
    output = output_projection(features, **_arguments(layer))
    output.build((*query_shape[:2], heads, layer.head_value_dim))
    return query, key, value, output


def _arguments(layer):
    """`layer`'s sublayer arguments, initializers cloned so that no two
    sublayers share a random state."""
    arguments = {name: getattr(layer, name) for name in SUBLAYER_ARGUMENTS}
    for name in ("kernel_initializer", "bias_initializer"):
        arguments[name] = arguments[name].clone()
    return dict(arguments, use_bias=layer.use_bias, dtype=layer.dtype_policy)


def projection(name, heads, head_dim, use_bias, **sublayer_arguments):
    """An `EinsumDense` from `(B, T, d)` to `(B, T, heads, head_dim)`."""
    layer = keras.layers.EinsumDense(
        "abc,cde->abde",
        output_shape=(None, heads, head_dim),
        bias_axes="de" if use_bias else None,
        name=name,
        **sublayer_arguments,
    )
    # Token by token, like `Dense`, so it keeps a token mask: called on a masked
    # input (`mask_zero=True`), Keras would warn that it destroys the mask.
    layer.supports_masking = True
    return layer


def output_projection(features, use_bias, **sublayer_arguments):
    """The `EinsumDense` `attention_output`, `(B, T, H, Dv)` to `(B, T, features)`."""
    return keras.layers.EinsumDense(
        "abcd,cde->abe",
        output_shape=(None, features),
        bias_axes="e" if use_bias else None,
        name="attention_output",
        **sublayer_arguments,
    )


def output_features(owner, output_shape):
    """`output_shape` as an int (or None); a 1-tuple is accepted like Keras does."""
    if isinstance(output_shape, (tuple, list)) and len(output_shape) == 1:
        output_shape = output_shape[0]
    return _checks.check_positive_int(
        owner, "output_shape", output_shape, allow_none=True
    )


def project(layer, query, key, value):
    """`layer`'s q, k and v; one matrix product per distinct input tensor."""
    if query is key and key is value:
        return _fused((layer.query, layer.key, layer.value), query)
    return [layer.query(query), *project_key_value(layer, key, value)]


def project_key_value(layer, key, value):
    """`layer`'s k and v; one matrix product when `key is value`."""
    if key is value:
        return _fused((layer.key, layer.value), key)
    return [layer.key(key), layer.value(value)]


def _fused(layers, inputs):
    """`[layer(inputs) for layer in layers]` for the q/k/v `EinsumDense`s."""
    if keras.backend.backend() == "torch" or not all(map(_is_plain, layers)):
        return [layer(inputs) for layer in layers]
    dtype = inputs.dtype
    kernels = [
        ops.reshape(layer.kernel, (layer.kernel.shape[0], -1)) for layer in layers
    ]
    widths = [kernel.shape[-1] for kernel in kernels]
    outputs = ops.matmul(inputs, ops.cast(ops.concatenate(kernels, axis=-1), dtype))
    if layers[0].bias is not None:
        bias = ops.concatenate([ops.reshape(layer.bias, (-1,)) for layer in layers])
        outputs = outputs + ops.cast(bias, dtype)
    boundaries = [sum(widths[: i + 1]) for i in range(len(widths) - 1)]
    leading = ops.shape(inputs)[:-1]
    return [
        ops.reshape(part, (*leading, *layer.kernel.shape[1:]))
        for part, layer in zip(ops.split(outputs, boundaries, axis=-1), layers)
    ]


def _is_plain(layer):
    """A projection that is its kernel and bias: no LoRA, no quantization."""
    return not getattr(layer, "lora_enabled", False) and layer.quantization_mode is None
