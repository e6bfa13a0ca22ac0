"""PyTorch FlexAttention as a peer: the same `mask_mod` and `score_mod` functions,
written once with `keras.ops`, given to both. Runs on the torch backend only: that
is where FlexAttention exists. Forward only: FlexAttention has no backward pass on
CPU (torch 2.13); the gradients of the same kinds are checked against NumPy in
`test_structured_attention.py`."""

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import ops

from keras_attn.ops import dot_product_attention
from tests._keras_private import TestCase

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="FlexAttention is PyTorch's; the other backends are checked against "
    "NumPy in test_structured_attention.py",
)

BATCH, LENGTH, HEADS, KV_HEADS, DIM = 2, 45, 4, 2, 16
WINDOW, SOFT_CAP = 9, 2.5


def _documents():
    rng = np.random.default_rng(4)
    return np.sort(rng.integers(0, 5, size=LENGTH)).astype("int32")


DOCUMENTS = ops.convert_to_tensor(_documents())  # a tensor: FlexAttention traces it


def causal_window(batch, head, q_idx, kv_idx):
    return ops.logical_and(kv_idx <= q_idx, q_idx - kv_idx < WINDOW)


def causal_document(batch, head, q_idx, kv_idx):
    same = ops.equal(ops.take(DOCUMENTS, q_idx), ops.take(DOCUMENTS, kv_idx))
    return ops.logical_and(same, kv_idx <= q_idx)


def soft_cap(score, batch, head, q_idx, kv_idx):
    return SOFT_CAP * ops.tanh(score / SOFT_CAP)


def alibi(score, batch, head, q_idx, kv_idx):
    slope = ops.power(2.0, -8.0 * ops.cast(head + 1, "float32") / HEADS)
    return score - slope * ops.cast(q_idx - kv_idx, "float32")


def flex(q, k, v, mask_mod, score_mod):
    import torch
    from torch.nn.attention.flex_attention import create_block_mask
    from torch.nn.attention.flex_attention import flex_attention

    block_mask = create_block_mask(
        mask_mod, B=None, H=None, Q_LEN=LENGTH, KV_LEN=LENGTH, device="cpu"
    )
    out = flex_attention(
        *(torch.transpose(x, 1, 2) for x in (q, k, v)),  # (B, H, T, D)
        score_mod=score_mod,
        block_mask=block_mask,
        enable_gqa=True,
    )
    return torch.transpose(out, 1, 2)


def forward(fn, inputs):
    import torch

    with torch.no_grad():
        return fn(*(torch.tensor(x) for x in inputs)).numpy()


def random_inputs(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(BATCH, LENGTH, HEADS, DIM)).astype("float32")
    k, v = (
        rng.normal(size=(BATCH, LENGTH, KV_HEADS, DIM)).astype("float32")
        for _ in range(2)
    )
    return q, k, v


class FlexAttentionPeerTest(TestCase):
    @parameterized.named_parameters(
        ("window_soft_cap", causal_window, soft_cap),
        ("documents_alibi", causal_document, alibi),
        ("window_alibi", causal_window, alibi),
    )
    def test_same_mask_mod_and_score_mod_give_flex_attention_results(
        self, mask_mod, score_mod
    ):
        inputs = random_inputs(0)
        expected = forward(lambda q, k, v: flex(q, k, v, mask_mod, score_mod), inputs)
        for implementation in ("math", "chunked"):

            def ours(q, k, v, implementation=implementation):
                return dot_product_attention(
                    q,
                    k,
                    v,
                    mask_mod=mask_mod,
                    score_mod=score_mod,
                    implementation=implementation,
                    chunk_size=16,
                )

            np.testing.assert_allclose(
                forward(ours, inputs),
                expected,
                atol=1e-5,
                rtol=1e-5,
                err_msg=implementation,
            )

    def test_structured_arguments_equal_flex_attention_mods(self):
        # Our `sliding_window` + `logit_soft_cap` arguments against the mods above.
        inputs = random_inputs(1)
        expected = forward(
            lambda q, k, v: flex(q, k, v, causal_window, soft_cap), inputs
        )
        for implementation in ("math", "chunked"):
            got = forward(
                lambda q, k, v, implementation=implementation: dot_product_attention(
                    q,
                    k,
                    v,
                    is_causal=True,
                    sliding_window=WINDOW,
                    logit_soft_cap=SOFT_CAP,
                    implementation=implementation,
                    chunk_size=16,
                ),
                inputs,
            )
            np.testing.assert_allclose(
                got, expected, atol=1e-5, rtol=1e-5, err_msg=implementation
            )
