"""Multi-head attention with grouped-query heads, rotary positions and a KV cache."""

import keras

from keras_attn import _checks
from keras_attn.layers import _attention_inputs
from keras_attn.layers import _kv_cache
from keras_attn.layers import _projections
from keras_attn.layers._score_recording import recorder_for
from keras_attn.ops._arguments import as_bias
from keras_attn.ops._arguments import as_segment_ids
from keras_attn.ops.attention import IMPLEMENTATIONS
from keras_attn.ops.attention import dot_product_attention


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, `concat(head_1, ..., head_h) W^O`.

    Each head computes `softmax(Q_i K_iᵀ / sqrt(key_dim)) V_i` through
    `keras_attn.ops.dot_product_attention`, which picks the backend's fused kernel,
    a chunked path whose memory is linear in the sequence length, or the math path.

    The weights have the layout of `keras.layers.MultiHeadAttention` (sublayers
    `query`, `key`, `value`, `attention_output`, in that order), so
    `ours.set_weights(keras_mha.get_weights())` gives the same outputs. With
    `num_key_value_heads` it is grouped-query attention, laid out like
    `keras.layers.GroupedQueryAttention`'s projections.

    Keras masks of `query`, `value` and `key` (`Embedding(mask_zero=True)`) are
    used automatically, and the query's passes on to the output. Masks are boolean
    or 0/1 integers, True where a query may attend; a float mask is refused.

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
        implementation: `None` (the automatic choice), `"fused"`, `"chunked"` or
            `"math"`: the path of `keras_attn.ops.dot_product_attention` every
            call takes, except calls that return scores or apply dropout, which
            only the math path computes.
        sliding_window: optional int `W >= 1`: query `i` attends key `j` only if
            `|i - j| < W` (causal: `i - W < j <= i`); cached decoding keeps a
            ring buffer of `min(W, max_length)` slots.
        logit_soft_cap: optional float `c > 0`: logits become `c·tanh(x / c)`.
        use_attention_sinks: learn a sink logit per head (weight
            `attention_sinks` `(num_heads,)`, zeros) in the softmax denominator.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(B, T, query_features)`.
        value: `(B, S, value_features)`; may be omitted with a precomputed
            `cache` (and no `cache_update_index`).
        key: optional `(B, S, key_features)`, the same length as `value`;
            defaults to `value`.
        attention_mask: optional boolean mask, True where a query may attend a
            key, broadcastable to `(B, num_heads, T, S)` (rank 2, 3 or 4).
        use_causal_mask: whether query `i` may only attend keys `j <= i` (with a
            cache: keys up to its position `cache_update_index + i`).
        return_attention_scores: also return the weights `(B, num_heads, T, S)`.
        training: whether dropout is active.
        cache: optional key/value cache `(B, 2, S_max, num_key_value_heads,
            key_dim)` (see `initialize_cache` and `precompute_cache`).
        cache_update_index: with `cache`, the position of this call's first
            token, where its keys and values are written; the call attends the
            whole cache (a ring: its `R` slots and the `T` new keys). Without
            it, the cache is used as it is (precomputed cross-attention).
        segment_ids: optional integer `(B, T)`, or a pair `((B, T), (B, S))`:
            a query attends only keys of its own segment. Not with `cache`.
        attention_bias: optional float, broadcastable to `(B, num_heads, T, S)`,
            added to the scaled logits. Not with a ring-buffer cache.
        positions: optional rotary positions `(T,)` or `(B, T)` of queries and
            keys, or a pair `(query_positions, key_positions)`, instead of
            `cache_update_index + arange(T)` (masks and cache slots keep those).
        query_mask, value_mask, key_mask: Keras masks `(B, T)` / `(B, S)`,
            filled in by Keras from the inputs; ignored when `cache` is given.

    Returns:
        `output` `(B, T, output_shape)`; with `return_attention_scores`,
        `(output, scores)`; with `cache`, the updated cache comes last:
        `(output, cache)` or `(output, scores, cache)`.

    Example:
    ```python
    x = keras.Input((None, 64))
    y = keras_attn.layers.MultiHeadAttention(num_heads=4, key_dim=16)(
        x, x, use_causal_mask=True
    )
    model = keras.Model(x, y)
    # Gemma 2's local layers: a window and a soft cap; a cache of 4096 slots.
    local = keras_attn.layers.MultiHeadAttention(
        num_heads=8, key_dim=32, sliding_window=4096, logit_soft_cap=50.0
    )
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
        implementation=None,
        sliding_window=None,
        logit_soft_cap=None,
        use_attention_sinks=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = _checks.owner_name(self)
        self.num_heads, self.num_key_value_heads = _checks.check_heads(
            owner, num_heads, num_key_value_heads
        )
        self.key_dim = _checks.check_positive_int(owner, "key_dim", key_dim)
        self.value_dim = _checks.check_positive_int(
            owner, "value_dim", value_dim, allow_none=True
        )
        self.dropout = _checks.check_rate(owner, "dropout", dropout)
        self.use_bias = bool(use_bias)
        self.output_shape_ = _projections.output_features(owner, output_shape)
        if isinstance(rotary_embedding, dict):  # as `get_config` wrote it
            rotary_embedding = keras.saving.deserialize_keras_object(rotary_embedding)
        self.rotary_embedding = rotary_embedding
        self.implementation = _checks.check_choice(
            owner, "implementation", implementation, (None, *IMPLEMENTATIONS)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        (
            self.sliding_window,
            self.logit_soft_cap,
            self.use_attention_sinks,
        ) = _attention_inputs.check_structure(
            owner, sliding_window, logit_soft_cap, use_attention_sinks
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    @property
    def kv_heads(self):
        return self.num_key_value_heads or self.num_heads

    @property
    def head_value_dim(self):
        return self.value_dim or self.key_dim

    def build(self, query_shape, value_shape=None, key_shape=None):
        self._check_key_value(value_shape, key_shape, precomputed=False)
        projections = _projections.build_projections(
            self, query_shape, value_shape, key_shape
        )
        self.query, self.key, self.value, self.attention_output = projections
        if self.rotary_embedding is not None:
            self.rotary_embedding.build(
                (query_shape[0], query_shape[1], self.num_heads, self.key_dim)
            )
        # After the projections: with sinks off, the weights are Keras' layer's.
        self.attention_sinks = None
        if self.use_attention_sinks:
            self.attention_sinks = self.add_weight(
                name="attention_sinks",
                shape=(self.num_heads,),
                initializer="zeros",
                autocast=False,  # float32 logits under mixed precision too
            )

    def call(
        self,
        query,
        value=None,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
        segment_ids=None,
        attention_bias=None,
        positions=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
    ):
        owner = _checks.owner_name(self)
        precomputed = cache is not None and cache_update_index is None
        self._check_key_value(_shape(value), _shape(key), precomputed)
        stepping = cache is not None and not precomputed
        ring = stepping and self.sliding_window is not None
        _attention_inputs.check_cached_call(
            owner, cache, ring, segment_ids, attention_mask, attention_bias
        )
        key = value if key is None else key
        key_shape = query.shape if key is None else key.shape
        query_positions, key_positions = _attention_inputs.positions(
            owner, positions, query.shape, key_shape, self.rotary_embedding
        )
        start = 0 if cache_update_index is None else cache_update_index
        if precomputed:
            q = self.query(query)  # (B, T, H, Dk)
            k, v = cache[:, 0], cache[:, 1]  # (B, S, Hkv, Dk)
        else:
            # (B, T, H, Dk), (B, S, Hkv, Dk), (B, S, Hkv, Dv)
            q, k, v = _projections.project(self, query, key, value)
            k = self._rotate(k, start, key_positions)
        q = self._rotate(q, start, query_positions)
        if stepping:
            self._check_cacheable()
            # (B, S', Hkv, Dk) attended: the cache's slots (+ the new keys, ring).
            k, v, visible, cache = _kv_cache.step(
                cache, k, v, start, use_causal_mask, self.sliding_window, self.path
            )
        score_shape = (q.shape[0], self.num_heads, q.shape[1], k.shape[1])
        # Keras masks are those of the inputs, not of the cache: unused with one.
        keras_masks = (query_mask, value_mask, None if key is value else key_mask)
        attended, scores = self._attend(
            q,
            k,
            v,
            training,
            return_attention_scores,
            mask=_attention_inputs.mask(
                owner,
                score_shape,
                attention_mask,
                keras_masks if cache is None else (),
                visible if stepping else None,
            ),
            # Without a cache, causal and window rules have no offset: the core
            # applies them per block, and no (T, S) mask is built.
            is_causal=bool(use_causal_mask) and cache is None,
            sliding_window=None if stepping else self.sliding_window,
            segment_ids=as_segment_ids(segment_ids, score_shape, owner),
            bias=as_bias(attention_bias, score_shape, owner, "attention_bias"),
        )
        outputs = (self.attention_output(attended),)  # (B, T, F)
        if return_attention_scores:
            outputs += (scores,)
        if cache is not None:
            outputs += (cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    def _rotate(self, x, start, positions):
        """`x` `(B, T, heads, Dk)` rotated at `positions`, else `start + arange(T)`."""
        if self.rotary_embedding is None:
            return x
        return self.rotary_embedding(x, start_index=start, positions=positions)

    def _attend(self, q, k, v, training, return_attention_scores, **pattern):
        """The core over the heads, `(B, T, H, Dv)`, and the scores (or None)."""
        # Inside `keras_attn.inspect.attention_maps` only: keep the scores too.
        record = recorder_for(self)
        needs_scores = return_attention_scores or record is not None
        implementation = self.implementation
        if needs_scores or (bool(training) and self.dropout > 0.0):
            implementation = None  # only the math path has them, and it is chosen
        attended = dot_product_attention(
            q,
            k,
            v,
            dropout_rate=self.dropout,
            training=training,
            return_attention_scores=needs_scores,
            implementation=implementation,
            seed=self.seed_generator,
            logit_soft_cap=self.logit_soft_cap,
            sinks=self.attention_sinks,
            **pattern,
        )
        attended, scores = attended if needs_scores else (attended, None)
        if record is not None:
            record(scores)
        return attended, scores

    def _check_key_value(self, value_shape, key_shape, precomputed):
        owner = _checks.owner_name(self)
        _attention_inputs.check_key_value(owner, value_shape, key_shape, precomputed)

    def _check_cacheable(self):
        owner = _checks.owner_name(self)
        _kv_cache.check_head_dims(owner, self.key_dim, self.head_value_dim)

    def initialize_cache(self, batch_size, max_length, dtype=None):
        """An empty cache `(batch, 2, length, kv_heads, key_dim)`: `max_length`
        slots, or a ring of `min(sliding_window, max_length)` (constant memory)."""
        self._check_cacheable()
        length = _kv_cache.cache_length(max_length, self.sliding_window)
        shape = (batch_size, 2, length, self.kv_heads, self.key_dim)
        return _kv_cache.zeros(shape, dtype or self.compute_dtype, self.path)

    def precompute_cache(self, value, key=None):
        """Project `key`/`value` once, e.g. the encoder output for cross-attention.

        Pass the result as `cache` (with `cache_update_index=None`) in later calls.
        """
        self._check_cacheable()
        key = value if key is None else key
        self._check_key_value(_shape(value), _shape(key), precomputed=False)
        k, v = _projections.project_key_value(self, key, value)
        if self.rotary_embedding is not None:
            k = self.rotary_embedding(k)
        return _kv_cache.stack(k, v, self.path)  # (B, 2, S, Hkv, Dk)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        """The shape of the output `(B, T, output_shape)`, as Keras' layer gives."""
        self._check_key_value(value_shape, key_shape, precomputed=True)
        return (*query_shape[:-1], self.output_shape_ or query_shape[-1])

    def compute_output_spec(
        self,
        query,
        value=None,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
        **other_arguments,
    ):
        """What `call` returns, as `KerasTensor`s: output, [scores], [cache]."""
        precomputed = cache is not None and cache_update_index is None
        self._check_key_value(_shape(value), _shape(key), precomputed)
        output_shape = self.compute_output_shape(query.shape)
        specs = [keras.KerasTensor(output_shape, dtype=self.compute_dtype)]
        if return_attention_scores:
            ring = not precomputed and self.sliding_window is not None
            key_length = value.shape[1] if cache is None else cache.shape[2]
            key_length = _kv_cache.attended_length(key_length, query.shape[1], ring)
            scores_shape = (query.shape[0], self.num_heads, query.shape[1], key_length)
            specs.append(keras.KerasTensor(scores_shape, dtype=self.compute_dtype))
        if cache is not None:
            specs.append(keras.KerasTensor(cache.shape, dtype=cache.dtype))
        return specs[0] if len(specs) == 1 else tuple(specs)

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
                "implementation": self.implementation,
                "seed": self.seed,
                "sliding_window": self.sliding_window,
                "logit_soft_cap": self.logit_soft_cap,
                "use_attention_sinks": self.use_attention_sinks,
            }
        )
        # Initializers, regularizers, constraints; a layer or None.
        for name in ("rotary_embedding", *_projections.SUBLAYER_ARGUMENTS):
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config


def _shape(tensor):
    return None if tensor is None else tensor.shape
