"""A dense NumPy reference of structured attention, forward and backward, in float64.

Written independently of `keras_attn.ops`: every mask kind becomes a `(B, H, T, S)`
boolean, every logit modifier a dense array, and the backward pass is the textbook
softmax-attention gradient. The mask and score modifiers come in pairs, one written
with `keras.ops` for the code under test and one with NumPy for the reference.
"""

import numpy as np
from keras import ops


class Case:
    """Inputs and options of one structured-attention call."""

    def __init__(self, rng, batch, query_length, key_length, heads, kv_heads, dim):
        self.q = rng.normal(size=(batch, query_length, heads, dim)).astype("float32")
        self.k = rng.normal(size=(batch, key_length, kv_heads, dim)).astype("float32")
        self.v = rng.normal(size=(batch, key_length, kv_heads, dim)).astype("float32")
        self.d_output = rng.normal(size=self.q.shape).astype("float32")
        self.options = {}  # keyword arguments of dot_product_attention
        self.reference_options = {}  # NumPy twins of the callables


def add_kind(case, kind, rng):
    """Give `case` one mask or score kind, with random parameters."""
    batch, query_length, heads, _ = case.q.shape
    key_length = case.k.shape[1]
    options, twins = case.options, case.reference_options
    if kind == "mask":
        options["mask"] = rng.random((batch, 1, query_length, key_length)) > 0.3
    elif kind == "padding":
        lengths = rng.integers(0, key_length + 1, size=batch)
        options["mask"] = (np.arange(key_length) < lengths[:, None])[:, None, None]
    elif kind == "causal":
        options["is_causal"] = True
    elif kind == "window":
        options["sliding_window"] = int(rng.integers(1, max(key_length, 2) + 1))
    elif kind == "segments":
        length = query_length if query_length == key_length else None
        if length is not None and rng.random() < 0.5:
            options["segment_ids"] = sorted_segments(rng, batch, length)
        else:
            options["segment_ids"] = (
                sorted_segments(rng, batch, query_length),
                sorted_segments(rng, batch, key_length),
            )
    elif kind == "bias":
        shapes = [
            (batch, heads, query_length, key_length),
            (heads, query_length, key_length),
            (1, heads, 1, key_length),
            (batch, 1, query_length, 1),
        ]
        shape = shapes[int(rng.integers(len(shapes)))]
        options["bias"] = rng.normal(size=shape).astype("float32")
    elif kind == "soft_cap":
        options["logit_soft_cap"] = float(rng.uniform(0.5, 3.0))
    elif kind == "sinks":
        options["sinks"] = rng.normal(size=(heads,)).astype("float32")
    elif kind == "mask_mod":
        documents = sorted_segments(rng, 1, max(query_length, key_length))[0]
        options["mask_mod"], twins["mask_mod"] = document_and_head_mask(documents)
    elif kind == "score_mod":
        options["score_mod"], twins["score_mod"] = alibi_and_sine_score()
    else:
        raise ValueError(kind)


KINDS = (
    "mask",
    "padding",
    "causal",
    "window",
    "segments",
    "bias",
    "soft_cap",
    "sinks",
    "mask_mod",
    "score_mod",
)


def sorted_segments(rng, batch, length):
    """Packed-row segment ids: random document lengths, ids increasing."""
    rows = []
    for _ in range(batch):
        boundaries = np.sort(rng.choice(np.arange(1, length + 1), size=3))
        rows.append(np.searchsorted(boundaries, np.arange(length), side="right"))
    return np.asarray(rows, dtype="int32")


def document_and_head_mask(documents):
    """A FlexAttention-style mask_mod: same document, and odd heads see no key
    more than 4 positions ahead. Returned with its NumPy twin."""

    def mask_mod(batch, head, q_idx, kv_idx):
        same = ops.equal(ops.take(documents, q_idx), ops.take(documents, kv_idx))
        near = ops.logical_or(ops.equal(head % 2, 0), kv_idx <= q_idx + 4)
        return ops.logical_and(same, near)

    def twin(batch, head, q_idx, kv_idx):
        same = documents[q_idx] == documents[kv_idx]
        return same & ((head % 2 == 0) | (kv_idx <= q_idx + 4))

    return mask_mod, twin


def alibi_and_sine_score():
    """A score_mod with a per-head linear distance term and a nonlinearity, so the
    gradient needs the modifier's own derivative. Returned with NumPy twins of the
    function and of its derivative with respect to the score."""

    def score_mod(score, batch, head, q_idx, kv_idx):
        distance = ops.cast(q_idx - kv_idx, "float32")
        slope = 0.1 * ops.cast(head + 1, "float32")
        return score + 0.5 * ops.sin(score) - slope * ops.abs(distance)

    def twin(score, batch, head, q_idx, kv_idx):
        slope = 0.1 * (head + 1)
        return score + 0.5 * np.sin(score) - slope * np.abs(q_idx - kv_idx)

    def derivative(score, batch, head, q_idx, kv_idx):
        return 1.0 + 0.5 * np.cos(score)

    twin.derivative = derivative
    return score_mod, twin


def reference(case):
    """`(output, d_query, d_key, d_value, d_bias, d_sinks)` in float64, where the
    gradients are those of `sum(output * case.d_output)`."""
    options, twins = case.options, case.reference_options
    q, k, v = (x.astype("float64") for x in (case.q, case.k, case.v))
    batch, query_length, heads, dim = q.shape
    key_length, kv_heads = k.shape[1], k.shape[2]
    groups = heads // kv_heads
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    scale = options.get("scale", 1.0 / np.sqrt(dim))
    indices = (
        np.arange(batch)[:, None, None, None],
        np.arange(heads)[None, :, None, None],
        np.arange(query_length)[None, None, :, None],
        np.arange(key_length)[None, None, None, :],
    )
    raw = np.einsum("bthd,bshd->bhts", q, k) * scale
    z = raw + _bias(options, raw.shape)
    y = twins["score_mod"](z, *indices) if "score_mod" in twins else z
    cap = options.get("logit_soft_cap")
    logits = cap * np.tanh(y / cap) if cap else y
    allowed = _allowed(case, indices, raw.shape)

    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    sinks = options.get("sinks")
    sink = None if sinks is None else sinks.astype("float64")[None, :, None, None]
    if sink is not None:
        row_max = np.maximum(row_max, sink)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exps = np.where(allowed, np.exp(logits - row_max), 0.0)
    denominator = np.sum(exps, axis=-1, keepdims=True)
    if sink is not None:
        denominator = denominator + np.exp(sink - row_max)
    safe = np.where(denominator > 0, denominator, 1.0)
    weights = exps / safe
    output = np.einsum("bhts,bshd->bthd", weights, v)

    d_out = case.d_output.astype("float64")
    d_weights = np.einsum("bthd,bshd->bhts", d_out, v)
    d_v = np.einsum("bhts,bthd->bshd", weights, d_out)
    row_dot = np.sum(weights * d_weights, axis=-1, keepdims=True)
    d_logits = weights * (d_weights - row_dot)
    if cap:
        d_logits = d_logits * (1.0 - np.tanh(y / cap) ** 2)
    if "score_mod" in twins:
        d_logits = d_logits * twins["score_mod"].derivative(z, *indices)
    d_q = np.einsum("bhts,bshd->bthd", d_logits, k) * scale
    d_k = np.einsum("bhts,bthd->bshd", d_logits, q) * scale
    d_k = d_k.reshape(batch, key_length, kv_heads, groups, dim).sum(axis=3)
    d_v = d_v.reshape(batch, key_length, kv_heads, groups, dim).sum(axis=3)
    d_bias = None
    if "bias" in options:
        d_bias = _sum_to_shape(d_logits, options["bias"].shape)
    d_sinks = None
    if sink is not None:
        sink_weight = np.exp(sink - row_max) / safe  # (B, H, T, 1)
        d_sinks = -np.sum(sink_weight * row_dot, axis=(0, 2, 3))
    return output, d_q, d_k, d_v, d_bias, d_sinks


def _bias(options, shape):
    if "bias" not in options:
        return 0.0
    return np.broadcast_to(options["bias"].astype("float64"), shape)


def _allowed(case, indices, shape):
    options, twins = case.options, case.reference_options
    _, _, i, j = indices
    allowed = np.ones(shape, dtype=bool)
    if "mask" in options:
        allowed &= np.broadcast_to(options["mask"], shape)
    if options.get("is_causal"):
        allowed &= j <= i
    window = options.get("sliding_window")
    if window:
        allowed &= (i - j < window) if options.get("is_causal") else abs(i - j) < window
    if "segment_ids" in options:
        ids = options["segment_ids"]
        query_ids, key_ids = ids if isinstance(ids, tuple) else (ids, ids)
        allowed &= query_ids[:, None, :, None] == key_ids[:, None, None, :]
    if "mask_mod" in twins:
        allowed &= np.broadcast_to(twins["mask_mod"](*indices), shape)
    return allowed


def _sum_to_shape(x, shape):
    """Sum `x` over the axes that `shape` (right-aligned) broadcasts."""
    extra = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(extra)))
    axes = tuple(axis for axis, size in enumerate(shape) if size == 1)
    return x.sum(axis=axes, keepdims=True)
