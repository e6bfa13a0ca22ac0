"""The projections of `MultiHeadAttention`, laid out as Keras' layer lays them out.

`query`, `key` and `value` are `EinsumDense` "btd,dnh->btnh", `attention_output`
"btnh,nhd->btd", as in `keras.layers.MultiHeadAttention`.

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


def projection(name, heads, head_dim, use_bias, **sublayer_arguments):
    """An `EinsumDense` from `(B, T, d)` to `(B, T, heads, head_dim)`."""
    layer = keras.layers.EinsumDense(
        "btd,dnh->btnh",
        output_shape=(None, heads, head_dim),
        bias_axes="nh" if use_bias else None,
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
        "btnh,nhd->btd",
        output_shape=(None, features),
        bias_axes="d" if use_bias else None,
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
    """`[layer(inputs) for layer in layers]` for "btd,dnh->btnh" `EinsumDense`s."""
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
