"""Multi-head attention with grouped-query heads, rotary positions and a KV cache."""

import math

import keras
from keras import ops

from keras_attn import _checks
from keras_attn.layers._score_recording import recorder_for
from keras_attn.ops.attention import dot_product_attention
from keras_attn.ops.masks import as_attention_mask
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import check_attention_mask
from keras_attn.ops.masks import combine_masks


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, `concat(head_1, ..., head_h) W^O`.

    Each head computes `softmax(Q_i K_iᵀ / sqrt(key_dim)) V_i` through
    `keras_attn.ops.dot_product_attention`, which picks the backend's fused kernel,
    a chunked path whose memory is linear in the sequence length, or the plain
    math path. Sequences are `(batch, length, features)`.

    The weights have the layout of `keras.layers.MultiHeadAttention` (sublayers
    `query`, `key`, `value`, `attention_output`, in that order), so
    `ours.set_weights(keras_mha.get_weights())` gives the same outputs. With
    `num_key_value_heads` it is grouped-query attention, laid out like
    `keras.layers.GroupedQueryAttention`'s projections.

    Keras masks of `query`, `value` and `key` (e.g. from an `Embedding` with
    `mask_zero=True`) are used automatically, and the query's mask is passed on to
    the output.

    Args:
        num_heads: number of query heads.
        key_dim: size of each query and key head.
        value_dim: size of each value head; defaults to `key_dim`.
        num_key_value_heads: number of key/value heads; must divide `num_heads`.
            `None` gives one per query head, 1 gives multi-query attention.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_shape: size of the output features; defaults to the query's.
        rotary_embedding: optional `keras_attn.layers.RotaryEmbedding` applied
            to the projected queries and keys.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        kernel_constraint: constraint of the projection kernels.
        bias_constraint: constraint of the projection biases.
        seed: seed of the attention dropout.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(B, T, query_features)`.
        value: `(B, S, value_features)`.
        key: optional `(B, S, key_features)`; defaults to `value`.
        attention_mask: optional boolean mask, True where a query may attend a
            key, broadcastable to `(B, num_heads, T, S)` (rank 2, 3 or 4).
        use_causal_mask: whether query `i` may only attend keys `j <= i` (with a
            cache: keys up to its position `cache_update_index + i`).
        return_attention_scores: also return the weights `(B, num_heads, T, S)`.
        training: whether dropout is active.
        cache: optional key/value cache `(B, 2, S_max, num_key_value_heads,
            key_dim)` (see `initialize_cache` and `precompute_cache`).
        cache_update_index: with `cache`, the position where the keys and values
            of this call's `key`/`value` are written before attending over the
            whole cache. Without it, the cache is used as it is (cross-attention
            over precomputed encoder keys and values).
        query_mask, value_mask, key_mask: Keras masks `(B, T)` / `(B, S)`,
            filled in by Keras from the inputs; ignored when `cache` is given.

    Returns:
        The output `(B, T, output_shape)`; then the scores if requested; then
        the updated cache if `cache` was given.

    Example:
    ```python
    x = keras.Input((None, 64))
    y = keras_attn.layers.MultiHeadAttention(num_heads=4, key_dim=16)(
        x, x, use_causal_mask=True
    )
    model = keras.Model(x, y)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
          Models from Multi-Head Checkpoints", 2023.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        rotary_embedding=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = _checks.owner_name(self)
        self.num_heads = _checks.check_positive_int(owner, "num_heads", num_heads)
        self.key_dim = _checks.check_positive_int(owner, "key_dim", key_dim)
        self.value_dim = _checks.check_positive_int(
            owner, "value_dim", value_dim, allow_none=True
        )
        self.num_key_value_heads = _checks.check_positive_int(
            owner, "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        _checks.check_divisible(
            owner,
            "num_heads",
            num_heads,
            self.num_key_value_heads,
            "num_key_value_heads",
        )
        self.dropout = _checks.check_rate(owner, "dropout", dropout)
        self.use_bias = bool(use_bias)
        self.output_shape_ = _output_features(owner, output_shape)
        if rotary_embedding is not None and not isinstance(
            rotary_embedding, keras.layers.Layer
        ):
            rotary_embedding = keras.saving.deserialize_keras_object(rotary_embedding)
        self.rotary_embedding = rotary_embedding
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    @property
    def kv_heads(self):
        return self.num_key_value_heads or self.num_heads

    @property
    def head_value_dim(self):
        return self.value_dim or self.key_dim

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        owner = _checks.owner_name(self)
        for name, shape in (
            ("query", query_shape),
            ("value", value_shape),
            ("key", key_shape),
        ):
            _checks.check_rank(owner, name, shape, 3)
        self.query = self._projection("query", self.num_heads, self.key_dim)
        self.query.build(query_shape)
        self.key = self._projection("key", self.kv_heads, self.key_dim)
        self.key.build(key_shape)
        self.value = self._projection("value", self.kv_heads, self.head_value_dim)
        self.value.build(value_shape)
        output_features = self.output_shape_ or query_shape[-1]
        self.attention_output = keras.layers.EinsumDense(
            "btnh,nhd->btd",
            output_shape=(None, output_features),
            bias_axes="d" if self.use_bias else None,
            name="attention_output",
            **self._sublayer_arguments(),
        )
        self.attention_output.build(
            (query_shape[0], query_shape[1], self.num_heads, self.head_value_dim)
        )
        if self.rotary_embedding is not None:
            self.rotary_embedding.build(
                (query_shape[0], query_shape[1], self.num_heads, self.key_dim)
            )

    def _projection(self, name, heads, head_dim):
        return keras.layers.EinsumDense(
            "btd,dnh->btnh",
            output_shape=(None, heads, head_dim),
            bias_axes="nh" if self.use_bias else None,
            name=name,
            **self._sublayer_arguments(),
        )

    def _sublayer_arguments(self):
        # Initializers are cloned so that sublayers never share a random state.
        return dict(
            kernel_initializer=self.kernel_initializer.clone(),
            bias_initializer=self.bias_initializer.clone(),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self.dtype_policy,
        )

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
    ):
        key = value if key is None else key
        start = 0 if cache_update_index is None else cache_update_index
        if cache is not None and cache_update_index is None:
            q = self.query(query)  # (B, T, H, Dk)
            k, v = cache[:, 0], cache[:, 1]  # precomputed (B, S, Hkv, Dk)
        else:
            # (B, T, H, Dk), (B, S, Hkv, Dk), (B, S, Hkv, Dv)
            q, k, v = self._project(query, key, value)
            if self.rotary_embedding is not None:
                k = self.rotary_embedding(k, start_index=start)
            if cache is not None:
                cache = self._update_cache(cache, k, v, cache_update_index)
                k, v = cache[:, 0], cache[:, 1]
        if self.rotary_embedding is not None:
            q = self.rotary_embedding(q, start_index=start)

        # Without a cache the causal mask has no offset: pass it as `is_causal`, so
        # no (T, S) mask is built (the fused and chunked paths make it per block).
        is_causal = bool(use_causal_mask) and cache is None
        mask = self._attention_mask(
            q,
            k,
            attention_mask,
            use_causal_mask and not is_causal,
            cache,
            cache_update_index,
            query_mask,
            value_mask,
            key_mask,
            key is value,
        )
        # Inside `keras_attn.inspect.attention_maps` only: keep the scores too.
        record = recorder_for(self)
        needs_scores = return_attention_scores or record is not None
        attended = dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=is_causal,
            dropout_rate=self.dropout,
            training=training,
            return_attention_scores=needs_scores,
            seed=self.seed_generator,
        )
        if needs_scores:
            attended, scores = attended
        if record is not None:
            record(scores)
        output = self.attention_output(attended)  # (B, T, F)
        outputs = (output,)
        if return_attention_scores:
            outputs += (scores,)
        if cache is not None:
            outputs += (cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    def _project(self, query, key, value):
        """q, k and v; one matrix product per distinct input tensor.

        Projections of the same tensor (q, k and v in self-attention; k and v in
        cross-attention) run as one product with their kernels side by side:
        one (B·T, d) x (d, 3·H·Dk) GEMM instead of three thinner ones. Under XLA
        (JAX, TensorFlow) a cached decoding step got 1.5x faster on TensorFlow
        and 1.1x on JAX (`benchmarks/cached_decoding.py`), training unchanged.
        Not on torch, whose eager calls copy the kernels into one on every call:
        decoding there fell to 0.68x keras-hub's, so torch keeps three products.
        Sublayers with LoRA or quantization enabled are called as they are.
        """
        if query is key and key is value:
            return _fused_projection((self.query, self.key, self.value), query)
        return [self.query(query), *self._project_key_value(key, value)]

    def _project_key_value(self, key, value):
        if key is value:
            return _fused_projection((self.key, self.value), key)
        return [self.key(key), self.value(value)]

    def _attention_mask(
        self,
        q,
        k,
        attention_mask,
        use_causal_mask,
        cache,
        cache_update_index,
        query_mask,
        value_mask,
        key_mask,
        key_is_value,
    ):
        """Every mask of the call as one (B|1, H|1, T|1, S|1) boolean mask."""
        owner = _checks.owner_name(self)
        query_length, key_length = ops.shape(q)[1], ops.shape(k)[1]
        masks = []
        if attention_mask is not None:
            attention_mask = as_attention_mask(attention_mask, owner, "attention_mask")
            score_shape = (q.shape[0], self.num_heads, q.shape[1], k.shape[1])
            check_attention_mask(attention_mask, score_shape, owner, "attention_mask")
            masks.append(attention_mask)
        if cache is None:
            if query_mask is not None:
                masks.append(ops.cast(query_mask, "bool")[:, None, :, None])
            if value_mask is not None:
                masks.append(ops.cast(value_mask, "bool")[:, None, None, :])
            if key_mask is not None and not key_is_value:
                masks.append(ops.cast(key_mask, "bool")[:, None, None, :])
        offset = 0 if cache_update_index is None else cache_update_index
        if use_causal_mask:
            masks.append(causal_mask(query_length, key_length, offset))
        elif cache is not None and cache_update_index is not None:
            # Slots after the ones written so far hold no keys yet.
            written = ops.arange(key_length) < offset + query_length
            masks.append(written[None, :])
        return combine_masks(*masks)

    def _update_cache(self, cache, k, v, cache_update_index):
        if self.head_value_dim != self.key_dim:
            raise ValueError(
                f"{_checks.owner_name(self)}: argument `cache` needs value_dim "
                f"equal to key_dim; received value_dim={self.value_dim} and "
                f"key_dim={self.key_dim}."
            )
        start = [0, 0, cache_update_index, 0, 0]
        return self._lay_out_cache(
            ops.slice_update(cache, start, ops.stack([k, v], axis=1))
        )

    def _lay_out_cache(self, cache):
        """Shard the cache as the active `keras.distribution` says (`<path>/cache`).

        `keras_attn.distribution.layout_map` shards it over heads, like the keys
        and values it holds. A mesh axis that does not divide its dimension
        (a batch of 3 on 2 data-parallel devices) leaves that dimension whole:
        the layout of an activation is a hint, not a requirement.
        """
        distribution = keras.distribution.distribution()
        if distribution is None or self.path is None:
            return cache
        layout = distribution.get_tensor_layout(f"{self.path}/cache")
        if layout is None:
            return cache
        mesh = layout.device_mesh
        axes = tuple(
            axis
            if axis is not None
            and size is not None
            and size % _mesh_axis_size(mesh, axis) == 0
            else None
            for size, axis in zip(cache.shape, layout.axes)
        )
        layout = keras.distribution.TensorLayout(axes, mesh)
        return keras.distribution.distribute_tensor(cache, layout)

    def initialize_cache(self, batch_size, max_length, dtype=None):
        """An empty key/value cache `(batch, 2, max_length, kv_heads, key_dim)`."""
        cache = ops.zeros(
            (batch_size, 2, max_length, self.kv_heads, self.key_dim),
            dtype=dtype or self.compute_dtype,
        )
        return self._lay_out_cache(cache)

    def precompute_cache(self, value, key=None):
        """Project `key`/`value` once, e.g. the encoder output for cross-attention.

        Pass the result as `cache` (with `cache_update_index=None`) in later calls.
        """
        key = value if key is None else key
        k, v = self._project_key_value(key, value)
        if self.rotary_embedding is not None:
            k = self.rotary_embedding(k)
        return self._lay_out_cache(ops.stack([k, v], axis=1))  # (B, 2, S, Hkv, Dk)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
    ):
        output_features = self.output_shape_ or query.shape[-1]
        batch, query_length = query.shape[0], query.shape[1]
        key_length = cache.shape[2] if cache is not None else value.shape[1]
        outputs = (
            keras.KerasTensor(
                (batch, query_length, output_features), dtype=self.compute_dtype
            ),
        )
        if return_attention_scores:
            outputs += (
                keras.KerasTensor(
                    (batch, self.num_heads, query_length, key_length),
                    dtype=self.compute_dtype,
                ),
            )
        if cache is not None:
            outputs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self.output_shape_,
                "rotary_embedding": (
                    None
                    if self.rotary_embedding is None
                    else keras.saving.serialize_keras_object(self.rotary_embedding)
                ),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "seed": self.seed,
            }
        )
        return config


def _fused_projection(layers, inputs):
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


def _output_features(owner, output_shape):
    """`output_shape` as an int (or None); a 1-tuple is accepted like Keras does."""
    if isinstance(output_shape, (tuple, list)) and len(output_shape) == 1:
        output_shape = output_shape[0]
    return _checks.check_positive_int(
        owner, "output_shape", output_shape, allow_none=True
    )


def _mesh_axis_size(mesh, axis):
    """Devices along a mesh axis, or along several (`("batch", "model")`)."""
    names = axis if isinstance(axis, (tuple, list)) else (axis,)
    return math.prod(mesh.shape[mesh.axis_names.index(name)] for name in names)
