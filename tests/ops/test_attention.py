"""`dot_product_attention`: every implementation gives the reference numbers.

The reference is `softmax(QKᵀ·scale)V` written in NumPy (float64) below. Each test
runs the three implementations ("math", "chunked", "fused") on the active backend,
so passing on every backend means the same numbers on every backend.
"""

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import ops

from keras_attn.ops import dot_product_attention
from tests._keras_private import TestCase
from tests._keras_private import named_product
from tests._tolerances import as_float64
from tests._tolerances import assert_close_in_ulps
from tests._tolerances import unit_roundoff
from tests.gradients import gradients

IMPLEMENTATIONS = ("math", "chunked", "fused")
# The forced paths and the automatic choice.
ALL_PATHS = (None,) + IMPLEMENTATIONS


def reference_attention(query, key, value, mask=None, is_causal=False, scale=None):
    """NumPy `softmax(QKᵀ·scale)V` with grouped heads; fully masked rows give 0.

    Returns `(output (B, T, H, Dv), weights (B, H, T, S))` in float64.
    """
    query, key, value = (np.asarray(x, "float64") for x in (query, key, value))
    batch, query_length, heads, head_dim = query.shape
    key_length, kv_heads = key.shape[1], key.shape[2]
    scale = 1.0 / np.sqrt(head_dim) if scale is None else scale
    key = np.repeat(key, heads // kv_heads, axis=2)  # head h reads h // groups
    value = np.repeat(value, heads // kv_heads, axis=2)
    logits = np.einsum("bthd,bshd->bhts", query, key) * scale
    allowed = np.ones((batch, heads, query_length, key_length), bool)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.ndim == 2:
            mask = mask[None, None]
        elif mask.ndim == 3:
            mask = mask[:, None]
        allowed &= mask
    if is_causal:
        allowed &= np.tril(np.ones((query_length, key_length), bool))
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    weights = np.where(allowed, np.exp(logits - row_max), 0.0)
    total = np.sum(weights, axis=-1, keepdims=True)
    weights = weights / np.where(total > 0, total, 1.0)
    return np.einsum("bhts,bshd->bthd", weights, value), weights


def random_inputs(
    batch=2,
    query_length=5,
    key_length=6,
    num_heads=2,
    num_kv_heads=None,
    head_dim=8,
    value_dim=None,
    seed=0,
):
    """Float32 query `(B, T, H, D)`, key `(B, S, Hkv, D)`, value `(B, S, Hkv, Dv)`."""
    rng = np.random.default_rng(seed)
    num_kv_heads = num_kv_heads or num_heads
    value_dim = value_dim or head_dim
    query = rng.normal(size=(batch, query_length, num_heads, head_dim))
    key = rng.normal(size=(batch, key_length, num_kv_heads, head_dim))
    value = rng.normal(size=(batch, key_length, num_kv_heads, value_dim))
    return tuple(x.astype("float32") for x in (query, key, value))


def random_mask(kind, batch, query_length, key_length, num_heads, seed=1):
    """A boolean mask of the given `kind`, as a user would pass it."""
    rng = np.random.default_rng(seed)
    if kind is None:
        return None
    if kind == "padding":  # (B, 1, 1, S): the last keys of the second sequence
        lengths = np.array([key_length, max(1, key_length - 3)])[:batch]
        return (np.arange(key_length)[None, :] < lengths[:, None])[:, None, None]
    if kind == "full":  # (B, T, S)
        return rng.random((batch, query_length, key_length)) > 0.3
    if kind == "per_head":  # (B, H, T, S)
        return rng.random((batch, num_heads, query_length, key_length)) > 0.3
    if kind == "shared":  # (T, S)
        return rng.random((query_length, key_length)) > 0.3
    raise ValueError(kind)


def as_float32_numpy(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


def assert_dtype(test, x, dtype):
    test.assertEqual(keras.backend.standardize_dtype(x.dtype), dtype)


def scenario(name, **options):
    """A named test case: shapes for `random_inputs`, a mask kind, call options."""
    return {"testcase_name": name, "case": options}


# Small chunks: lengths that are not multiples of the chunk size, several blocks.
SMALL_CHUNKS = {"query_length": 21, "key_length": 19, "chunk_size": 8}
GROUPED = {"num_heads": 4, "num_kv_heads": 2}

REFERENCE_CASES = [
    scenario("no_mask"),
    scenario("causal", is_causal=True),
    scenario("padding_mask", mask="padding"),
    scenario("causal_and_padding_mask", is_causal=True, mask="padding"),
    scenario("full_mask", mask="full"),
    scenario("rank_2_mask", mask="shared", is_causal=True),
    scenario(
        "fewer_queries_than_keys",
        query_length=3,
        key_length=7,
        is_causal=True,
        mask="padding",
    ),
    scenario("more_queries_than_keys", query_length=7, key_length=4, mask="full"),
    scenario("grouped_query", **GROUPED, is_causal=True, mask="padding"),
    scenario("grouped_query_per_head_mask", **GROUPED, mask="per_head"),
    scenario("multi_query", num_heads=4, num_kv_heads=1, mask="full"),
    scenario("small_chunks", **SMALL_CHUNKS, **GROUPED, is_causal=True, mask="padding"),
    scenario("small_chunks_full_mask", **SMALL_CHUNKS, **GROUPED, mask="full"),
    # Without a mask, blocks below the diagonal and without padding skip masking.
    scenario("small_chunks_causal", **SMALL_CHUNKS, is_causal=True),
    scenario("small_chunks_unpadded", query_length=24, key_length=16, chunk_size=8),
    scenario("custom_scale", scale=0.3, mask="padding"),
]

# The scores come from the math path only; these cases cover its masks and heads.
SCORE_CASES = [
    case
    for case in REFERENCE_CASES
    if case["testcase_name"]
    in (
        "causal_and_padding_mask",
        "full_mask",
        "fewer_queries_than_keys",
        "grouped_query_per_head_mask",
        "multi_query",
    )
]

GRADIENT_CASES = [
    scenario("no_mask"),
    scenario(
        "grouped_query_small_chunks_causal_and_padding_mask",
        **SMALL_CHUNKS,
        **GROUPED,
        is_causal=True,
        mask="padding",
    ),
    scenario("full_mask_custom_scale", mask="full", scale=0.5),
    scenario("small_chunks_causal", **SMALL_CHUNKS, is_causal=True),
    scenario("small_chunks_no_mask", **SMALL_CHUNKS, **GROUPED),
    scenario("unpadded_chunks_causal", query_length=24, key_length=24, chunk_size=8),
]


def case_inputs(case, seed=0):
    """`(query, key, value)`, the mask and the remaining call options of a case."""
    options = dict(case)
    shapes = {
        name: options.pop(name)
        for name in ("query_length", "key_length", "num_heads", "num_kv_heads")
        if name in options
    }
    query, key, value = random_inputs(seed=seed, **shapes)
    batch, query_length, num_heads, _ = query.shape
    mask = random_mask(
        options.pop("mask", None), batch, query_length, key.shape[1], num_heads
    )
    return (query, key, value), mask, options


class WorkedExampleTest(TestCase):
    """The example of the design notes: one query, four keys, scale 1.

    The notes print three decimals, so the bound is half a unit of the third
    decimal; the float32 error (~1e-6) is far below it on any CPU.
    """

    query = np.array([[[[0.990, 0.099, 0.099]]]], "float32")  # (1, 1, 1, 3)
    key = np.array(
        [
            [0.050, 0.000, 0.998],
            [0.020, 0.020, 0.999],
            [0.976, 0.098, 0.195],
            [0.020, 0.999, 0.020],
        ],
        "float32",
    )[None, :, None, :]  # (1, 4, 1, 3)
    value = np.array([[1, 2, 5], [1, 1, 5], [3, 2, 4], [6, 1, 2]], "float32")[
        None, :, None, :
    ]  # (1, 4, 1, 3)

    @parameterized.named_parameters(named_product(implementation=IMPLEMENTATIONS))
    def test_context_vector(self, implementation):
        out = dot_product_attention(
            self.query, self.key, self.value, scale=1.0, implementation=implementation
        )
        self.assertAllClose(out[0, 0, 0], [2.805, 1.631, 4.005], atol=5e-4, rtol=0)

    def test_attention_weights(self):
        _, scores = dot_product_attention(
            self.query, self.key, self.value, scale=1.0, return_attention_scores=True
        )
        self.assertAllClose(
            scores[0, 0, 0], [0.189, 0.184, 0.442, 0.184], atol=5e-4, rtol=0
        )


class ReferenceTest(TestCase):
    @parameterized.named_parameters(
        named_product(REFERENCE_CASES, implementation=IMPLEMENTATIONS)
    )
    def test_output_matches_numpy_reference(self, case, implementation):
        (query, key, value), mask, options = case_inputs(case)
        out = dot_product_attention(
            query, key, value, mask=mask, implementation=implementation, **options
        )
        options.pop("chunk_size", None)
        expected, _ = reference_attention(query, key, value, mask, **options)
        self.assertEqual(tuple(out.shape), expected.shape)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(named_product(SCORE_CASES))
    def test_scores_match_numpy_reference(self, case):
        (query, key, value), mask, options = case_inputs(case)
        _, scores = dot_product_attention(
            query, key, value, mask=mask, return_attention_scores=True, **options
        )
        options.pop("chunk_size", None)
        _, expected = reference_attention(query, key, value, mask, **options)
        self.assertAllClose(scores, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(named_product(implementation=("math", "chunked")))
    def test_value_head_dim_may_differ_from_key_head_dim(self, implementation):
        query, key, value = random_inputs(value_dim=3)
        out = dot_product_attention(
            query, key, value, is_causal=True, implementation=implementation
        )
        expected, _ = reference_attention(query, key, value, is_causal=True)
        self.assertEqual(tuple(out.shape), (2, 5, 2, 3))
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    @pytest.mark.skipif(
        keras.backend.backend() == "jax", reason="JAX's kernel needs Dv == D"
    )
    def test_fused_with_value_head_dim_differing_from_key_head_dim(self):
        query, key, value = random_inputs(value_dim=3)
        out = dot_product_attention(query, key, value, implementation="fused")
        expected, _ = reference_attention(query, key, value)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    @pytest.mark.skipif(
        keras.backend.backend() != "jax", reason="only JAX's kernel needs Dv == D"
    )
    def test_fused_rejects_value_head_dim_differing_from_key_head_dim_on_jax(self):
        query, key, value = random_inputs(value_dim=3)
        with self.assertRaisesRegex(
            ValueError, r"dot_product_attention.*`implementation`.*'fused'.*3 != 8"
        ):
            dot_product_attention(query, key, value, implementation="fused")

    def test_automatic_choice_with_value_head_dim_differing(self):
        query, key, value = random_inputs(value_dim=3)
        out = dot_product_attention(query, key, value)
        expected, _ = reference_attention(query, key, value)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    @parameterized.named_parameters(
        named_product(dtype=("int32", "uint8"), implementation=ALL_PATHS)
    )
    def test_integer_mask_gives_the_boolean_mask_result(self, dtype, implementation):
        (query, key, value), mask, _ = case_inputs({"mask": "full"})
        boolean, integer = (
            dot_product_attention(
                query, key, value, mask=m, is_causal=True, implementation=implementation
            )
            for m in (mask, mask.astype(dtype))
        )
        self.assertAllEqual(integer, boolean)

    def test_automatic_choice_matches_numpy_reference(self):
        (query, key, value), mask, _ = case_inputs({"mask": "padding"})
        out = dot_product_attention(query, key, value, mask=mask, is_causal=True)
        expected, _ = reference_attention(query, key, value, mask, is_causal=True)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)


class GradientTest(TestCase):
    @parameterized.named_parameters(
        named_product(GRADIENT_CASES, implementation=("chunked", "fused"))
    )
    def test_gradients_match_math_path(self, case, implementation):
        (query, key, value), mask, options = case_inputs(case)
        rng = np.random.default_rng(2)
        out_weights = rng.normal(size=query.shape).astype("float32")

        def loss(implementation):
            def fn(q, k, v):
                out = dot_product_attention(
                    q, k, v, mask=mask, implementation=implementation, **options
                )
                return ops.sum(ops.multiply(out, out_weights))

            return fn

        expected = gradients(loss("math"), query, key, value)
        grads = gradients(loss(implementation), query, key, value)
        for name, grad, want in zip(("query", "key", "value"), grads, expected):
            self.assertAllClose(grad, want, atol=1e-5, msg=f"d loss / d {name}")


def fully_masked_rows():
    """Inputs and a mask under which some query rows may attend no key.

    Row 3 of the first sequence is masked out entirely; the second sequence starts
    with two padding keys, so under the causal mask its first two queries see
    nothing. Returns `(query, key, value, mask, rows)`, `rows` the (b, t) pairs.
    """
    query, key, value = random_inputs()
    mask = np.ones((2, 5, 6), bool)
    mask[0, 3] = False
    mask[1, :, :2] = False
    return query, key, value, mask, [(0, 3), (1, 0), (1, 1)]


class FullyMaskedRowTest(TestCase):
    @parameterized.named_parameters(named_product(implementation=IMPLEMENTATIONS))
    def test_fully_masked_rows_return_zeros(self, implementation):
        query, key, value, mask, rows = fully_masked_rows()
        out = dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=True,
            implementation=implementation,
        )
        out = ops.convert_to_numpy(out)
        for b, t in rows:
            self.assertAllEqual(out[b, t], np.zeros_like(out[b, t]))
        expected, _ = reference_attention(query, key, value, mask, is_causal=True)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    def test_fully_masked_rows_have_zero_scores(self):
        query, key, value, mask, rows = fully_masked_rows()
        _, scores = dot_product_attention(
            query, key, value, mask=mask, is_causal=True, return_attention_scores=True
        )
        scores = ops.convert_to_numpy(scores)
        for b, t in rows:
            self.assertAllEqual(scores[b, :, t], np.zeros_like(scores[b, :, t]))

    @parameterized.named_parameters(named_product(implementation=IMPLEMENTATIONS))
    def test_fully_masked_rows_have_finite_gradients(self, implementation):
        query, key, value, mask, rows = fully_masked_rows()

        def loss(q, k, v):
            out = dot_product_attention(
                q, k, v, mask=mask, is_causal=True, implementation=implementation
            )
            return ops.sum(out)

        grads = gradients(loss, query, key, value)
        for grad in grads:
            self.assertTrue(np.all(np.isfinite(grad)))
        for b, t in rows:  # a row that attends nothing has no effect on the loss
            self.assertAllEqual(grads[0][b, t], np.zeros_like(grads[0][b, t]))


def bfloat16_output_ulps(implementation, key_length):
    """The error bound of a bfloat16 attention output, counted from its roundings.

    In bfloat16 ulps of the terms' size `sum_s w_s |v_s|` (the output averages
    values of both signs; see tests/_tolerances.py). Logits and softmax are float32
    on these paths: their error, ~2**-24 relative, is below 2**-10 bfloat16 ulps,
    the slack added below. What remains are bfloat16 roundings:

    - chunked: float32 throughout, values included, then one rounding of the
      output: half an ulp.
    - math, and the fused kernels of PyTorch and JAX: the weights are rounded to
      bfloat16, then multiplied with the bfloat16 values by the backend's matrix
      product, whose accumulation legitimately depends on the kernel and the CPU.
      oneDNN with AVX-512 BF16 or AMX, ATen and XLA accumulate in float32 and
      round once; Eigen (TensorFlow where oneDNN has no bfloat16 kernel, as on
      AVX2 CPUs) rounds every product and every partial sum to bfloat16. The
      worst case, `n = key_length + 1` roundings, errs by at most
      `gamma_n = n u / (1 - n u)` times the terms' size (Higham, Accuracy and
      Stability of Numerical Algorithms, 2002, section 3.1), and `u` times a
      value is less than one ulp of it. Measured on an AVX-512 BF16 CPU: 0.95
      ulps with oneDNN, 1.47 ulps with `TF_ENABLE_ONEDNN_OPTS=0` (Eigen).
    """
    if implementation == "chunked":
        return 0.5 + 2**-10
    roundings = key_length + 1
    return roundings / (1 - roundings * unit_roundoff("bfloat16"))


class LowPrecisionTest(TestCase):
    """Logits and softmax are float32 whatever the input dtype."""

    def bfloat16_inputs(self):
        query, key, value = random_inputs()
        mask = random_mask("padding", 2, 5, 6, 2)
        inputs = [ops.cast(x, "bfloat16") for x in (query, key, value)]
        return inputs, [as_float32_numpy(x) for x in inputs], mask

    @parameterized.named_parameters(named_product(implementation=ALL_PATHS))
    def test_bfloat16_output_is_float32_reference_rounded(self, implementation):
        inputs, rounded, mask = self.bfloat16_inputs()
        out = dot_product_attention(
            *inputs, mask=mask, is_causal=True, implementation=implementation
        )
        assert_dtype(self, out, "bfloat16")
        if implementation == "fused" and keras.backend.backend() == "tensorflow":
            self.skipTest(
                "Keras' TensorFlow kernel computes QKᵀ in bfloat16: a logit error "
                "up to gamma_8 * scale * sum_d |q_d k_d| = 0.16 here, about 100 "
                "ulps of the output, too loose to test. The automatic choice never "
                "takes it for bfloat16 (case `none` holds the float32 bound)."
            )
        expected, _ = reference_attention(*rounded, mask, is_causal=True)
        query, key, value = rounded
        terms, _ = reference_attention(query, key, np.abs(value), mask, is_causal=True)
        ulps = bfloat16_output_ulps(implementation, key_length=key.shape[1])
        assert_close_in_ulps(out, expected, "bfloat16", ulps, magnitude=terms)

    def test_bfloat16_scores_are_float32_softmax_rounded(self):
        inputs, rounded, mask = self.bfloat16_inputs()
        _, scores = dot_product_attention(
            *inputs, mask=mask, is_causal=True, return_attention_scores=True
        )
        assert_dtype(self, scores, "bfloat16")
        _, expected = reference_attention(*rounded, mask, is_causal=True)
        # Positive weights, each one rounding of a float32 softmax: half an ulp of
        # its own value (logits rounded to bfloat16 would be off by several).
        assert_close_in_ulps(scores, expected, "bfloat16", 0.5 + 2**-10)

    def test_bfloat16_scores_sum_to_one(self):
        inputs, rounded, mask = self.bfloat16_inputs()
        _, scores = dot_product_attention(
            *inputs, mask=mask, return_attention_scores=True
        )
        assert_dtype(self, scores, "bfloat16")
        totals = np.sum(as_float64(scores), axis=-1)
        # Each float32 weight is rounded once, by at most u * w, so the total errs
        # by at most u * sum(w) = u: half a bfloat16 ulp of 1.0 (plus float32 error).
        assert_close_in_ulps(totals, np.ones_like(totals), "bfloat16", 0.5 + 2**-10)

    def test_large_logits_in_bfloat16_do_not_overflow(self):
        # Logits of ~1e4 overflow nothing in float32 but lose all precision in
        # bfloat16; the softmax must still select the matching key.
        query = np.eye(4, 8, dtype="float32")[None, :, None, :] * 100.0
        key = np.eye(4, 8, dtype="float32")[None, :, None, :] * 100.0
        value = np.arange(4, dtype="float32")[None, :, None, None] * np.ones(
            (1, 4, 1, 8), "float32"
        )
        out = dot_product_attention(
            ops.cast(query, "bfloat16"),
            ops.cast(key, "bfloat16"),
            ops.cast(value, "bfloat16"),
            implementation="math",
        )
        # exp(-3535) is 0 in float32: one-hot weights make every product and sum
        # exact, so any rounding order gives the integers exactly.
        assert_close_in_ulps(out[0, :, 0, 0], [0.0, 1.0, 2.0, 3.0], "bfloat16", 0)


class AutomaticChoiceTest(TestCase):
    def output_and_scores_of_random_inputs(self, **arguments):
        """The call with `arguments` on `random_inputs()`, checked against the
        reference; its scores."""
        query, key, value = random_inputs()
        out, scores = dot_product_attention(
            query, key, value, return_attention_scores=True, **arguments
        )
        expected_out, expected_scores = reference_attention(query, key, value)
        self.assertAllClose(out, expected_out, rtol=1e-5, atol=1e-5)
        self.assertAllClose(scores, expected_scores, rtol=1e-5, atol=1e-5)
        return scores

    def test_scores_requested_returns_scores(self):
        scores = self.output_and_scores_of_random_inputs()
        self.assertEqual(tuple(scores.shape), (2, 2, 5, 6))

    def test_dropout_when_training_zeroes_and_rescales_weights(self):
        query, key, value = random_inputs()
        _, expected = reference_attention(query, key, value)
        _, scores = dot_product_attention(
            query,
            key,
            value,
            dropout_rate=0.5,
            training=True,
            return_attention_scores=True,
            seed=keras.random.SeedGenerator(3),
        )
        scores = ops.convert_to_numpy(scores)
        dropped = scores == 0.0
        self.assertTrue(np.any(dropped))
        self.assertFalse(np.all(dropped))
        self.assertAllClose(scores[~dropped], expected[~dropped] / 0.5, rtol=1e-5)

    def test_dropout_when_training_changes_the_output(self):
        query, key, value = random_inputs()
        expected, _ = reference_attention(query, key, value)
        out = dot_product_attention(
            query, key, value, dropout_rate=0.5, training=True, seed=3
        )
        self.assertGreater(np.max(np.abs(ops.convert_to_numpy(out) - expected)), 1e-2)

    def test_dropout_does_nothing_when_not_training(self):
        self.output_and_scores_of_random_inputs(dropout_rate=0.5, training=False)

    @parameterized.named_parameters(named_product(implementation=IMPLEMENTATIONS))
    def test_dropout_rate_without_training_allows_every_path(self, implementation):
        query, key, value = random_inputs()
        out = dot_product_attention(
            query, key, value, dropout_rate=0.5, implementation=implementation
        )
        expected, _ = reference_attention(query, key, value)
        self.assertAllClose(out, expected, rtol=1e-5, atol=1e-5)

    def test_dropout_with_the_same_seed_is_reproducible(self):
        query, key, value = random_inputs()

        def dropped_out():
            return dot_product_attention(
                query,
                key,
                value,
                dropout_rate=0.5,
                training=True,
                seed=keras.random.SeedGenerator(7),
            )

        self.assertAllClose(dropped_out(), dropped_out(), rtol=0, atol=0)

    @parameterized.named_parameters(
        named_product(
            [
                {
                    "testcase_name": "scores",
                    "arguments": {"return_attention_scores": True},
                },
                {
                    "testcase_name": "training_dropout",
                    "arguments": {"dropout_rate": 0.1, "training": True},
                },
            ],
            implementation=("chunked", "fused"),
        )
    )
    def test_what_only_the_math_path_computes_fails_on_another_forced_path(
        self, arguments, implementation
    ):
        query, key, value = random_inputs()
        with self.assertRaisesRegex(
            ValueError, f"dot_product_attention.*`implementation`.*'{implementation}'"
        ):
            dot_product_attention(
                query, key, value, implementation=implementation, **arguments
            )


class ValidationTest(TestCase):
    def assert_rejects(self, pattern, **overrides):
        query, key, value = random_inputs(num_heads=4, num_kv_heads=2)
        arguments = {"query": query, "key": key, "value": value, **overrides}
        with self.assertRaisesRegex(ValueError, "dot_product_attention.*" + pattern):
            dot_product_attention(**arguments)

    def test_query_of_rank_3_is_rejected(self):
        self.assert_rejects(
            r"`query`.*rank 4.*\(2, 5, 8\)", query=np.zeros((2, 5, 8), "float32")
        )

    def test_key_of_rank_5_is_rejected(self):
        self.assert_rejects(
            r"`key`.*rank 4.*\(1, 2, 6, 2, 8\)",
            key=np.zeros((1, 2, 6, 2, 8), "float32"),
        )

    def test_query_heads_not_a_multiple_of_key_heads_is_rejected(self):
        self.assert_rejects(
            r"`key`.*received 3 heads",
            key=np.zeros((2, 6, 3, 8), "float32"),
            value=np.zeros((2, 6, 3, 8), "float32"),
        )

    def test_value_heads_different_from_key_heads_is_rejected(self):
        self.assert_rejects(
            r"`value`.*\(2, 6, 1, 8\)", value=np.zeros((2, 6, 1, 8), "float32")
        )

    def test_key_head_dim_different_from_query_head_dim_is_rejected(self):
        self.assert_rejects(
            r"`key`.*head_dim \(8\).*\(2, 6, 2, 4\)",
            key=np.zeros((2, 6, 2, 4), "float32"),
        )

    # Each path answered differently before (query = key = 1, value [[1], [10]]:
    # torch fused 3.42, chunked 1.0, math 11.0; TensorFlow raised).
    @parameterized.named_parameters(named_product(implementation=ALL_PATHS))
    def test_value_longer_than_key_is_rejected(self, implementation):
        self.assert_rejects(
            r"`value` must have the length of `key` \(6\); received `value` of "
            r"shape \(2, 7, 2, 8\) and `key` of shape \(2, 6, 2, 8\)",
            value=np.zeros((2, 7, 2, 8), "float32"),
            implementation=implementation,
        )

    @parameterized.named_parameters(named_product(implementation=ALL_PATHS))
    def test_key_of_another_batch_size_is_rejected(self, implementation):
        self.assert_rejects(
            r"`key` must have the batch size of `query` \(2\); received `key` of "
            r"shape \(3, 6, 2, 8\) and `query` of shape \(2, 5, 4, 8\)",
            key=np.zeros((3, 6, 2, 8), "float32"),
            value=np.zeros((3, 6, 2, 8), "float32"),
            implementation=implementation,
        )

    def test_value_of_another_batch_size_is_rejected(self):
        self.assert_rejects(
            r"`value` must have the batch size of `query` \(2\).*\(1, 6, 2, 8\)",
            value=np.zeros((1, 6, 2, 8), "float32"),
        )

    # An additive mask (0 = attend, -1e9 = masked) cast to bool is inverted.
    @parameterized.named_parameters(
        named_product(dtype=("float32", "bfloat16"), implementation=ALL_PATHS)
    )
    def test_additive_float_mask_is_rejected(self, dtype, implementation):
        allowed = random_mask("full", 2, 5, 6, 4)
        additive = ops.cast(np.where(allowed, 0.0, -1e9), dtype)
        self.assert_rejects(
            rf"`mask` must be a boolean \(or 0/1 integer\) mask.*dtype {dtype}.*"
            r"`additive_mask == 0`",
            mask=additive,
            implementation=implementation,
        )

    def test_mask_that_does_not_broadcast_is_rejected(self):
        self.assert_rejects(
            r"`mask`.*\(2, 4, 5, 6\).*\(1, 1, 5, 7\)", mask=np.ones((5, 7), bool)
        )

    def test_mask_with_wrong_head_count_is_rejected(self):
        self.assert_rejects(r"`mask`.*\(2, 3, 5, 6\)", mask=np.ones((2, 3, 5, 6), bool))

    def test_mask_of_rank_1_is_rejected(self):
        self.assert_rejects(r"`mask`.*rank.*\(6,\)", mask=np.ones((6,), bool))

    def test_unknown_implementation_is_rejected(self):
        self.assert_rejects(r"`implementation`.*'flash'", implementation="flash")

    @parameterized.named_parameters(
        ("negative", -0.1, r"-0\.1"), ("one", 1.0, r"1\.0"), ("above_one", 1.5, r"1\.5")
    )
    def test_dropout_rate_outside_zero_to_one_is_rejected(self, rate, pattern):
        self.assert_rejects(r"`dropout_rate`.*" + pattern, dropout_rate=rate)
