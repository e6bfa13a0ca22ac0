"""Structured attention: windows, segments, bias, soft cap, sinks, mask_mod, score_mod.

Every kind alone and every pair of kinds is compared with the dense NumPy reference
of `_structured_reference.py`, forward and gradients, on the math and chunked paths
(and the fused path where it delegates), with fully masked rows, `T != S`,
grouped-query heads and lengths that do not divide the block size. The pairs meet
in nine cases of four kinds each (a pairwise covering design): each case is one
program to compile on JAX, and the 45 pairs one by one took the longest of the
JAX tests.
"""

import itertools

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras import ops

from keras_attn.ops import dot_product_attention
from tests._keras_private import TestCase
from tests.gradients import output_and_vjp
from tests.ops import _structured_reference as reference

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
# Blocks of 4 keep several partial, whole and empty blocks in these short rows.
CHUNK = 4


def make_case(kinds, seed, query_length=11, key_length=None, heads=4, kv_heads=2):
    rng = np.random.default_rng(seed)
    key_length = query_length if key_length is None else key_length
    case = reference.Case(rng, 2, query_length, key_length, heads, kv_heads, 8)
    for kind in kinds:
        reference.add_kind(case, kind, rng)
    return case


def attend(case, implementation, q=None, k=None, v=None, **overrides):
    options = dict(case.options, **overrides)
    return dot_product_attention(
        case.q if q is None else q,
        case.k if k is None else k,
        case.v if v is None else v,
        implementation=implementation,
        chunk_size=CHUNK,
        **options,
    )


def assert_matches_reference(test, case, implementation):
    expected, *expected_grads = reference.reference(case)
    names = ["query", "key", "value"]
    inputs = [case.q, case.k, case.v]
    for name in ("bias", "sinks"):
        if name in case.options:
            names.append(name)
            inputs.append(case.options[name])

    def call(q, k, v, *extras):
        return attend(case, implementation, q, k, v, **dict(zip(names[3:], extras)))

    output, grads = output_and_vjp(call, inputs, case.d_output)
    np.testing.assert_allclose(output, expected, **TOLERANCE)
    wanted = dict(zip(("query", "key", "value", "bias", "sinks"), expected_grads))
    for name, grad in zip(names, grads):
        test.assertTrue(np.all(np.isfinite(grad)), f"d {name} is not finite")
        np.testing.assert_allclose(grad, wanted[name], err_msg=f"d {name}", **TOLERANCE)


SINGLE = [(kind,) for kind in reference.KINDS]
# Every pair of kinds is in one of these (test_every_pair_of_kinds_meets_in_a_case).
COMBINED = [
    ("mask", "padding", "window", "sinks"),
    ("mask", "causal", "bias", "soft_cap"),
    ("mask", "segments", "mask_mod", "score_mod"),
    ("padding", "causal", "window", "bias"),
    ("padding", "window", "soft_cap", "mask_mod"),
    ("padding", "segments", "bias", "score_mod"),
    ("causal", "window", "segments", "score_mod"),
    ("causal", "bias", "sinks", "mask_mod"),
    ("segments", "soft_cap", "sinks", "score_mod"),
]


def _named(kinds):
    return {"testcase_name": "_".join(kinds), "kinds": kinds}


def test_every_pair_of_kinds_meets_in_a_case():
    met = {pair for kinds in COMBINED for pair in itertools.combinations(kinds, 2)}
    assert met == set(itertools.combinations(reference.KINDS, 2))


class StructuredAttentionTest(TestCase):
    @parameterized.named_parameters(*map(_named, SINGLE + COMBINED))
    def test_math_and_chunked_match_the_numpy_reference(self, kinds):
        seed = zlib_seed(kinds)
        for implementation in ("math", "chunked"):
            with self.subTest(implementation=implementation):
                assert_matches_reference(self, make_case(kinds, seed), implementation)

    @parameterized.named_parameters(
        ("cross_longer_keys", 7, 13),
        ("cross_longer_queries", 13, 6),
        ("single_query", 1, 9),
    )
    def test_query_and_key_lengths_may_differ(self, query_length, key_length):
        kinds = ("causal", "window", "segments", "bias", "sinks", "score_mod")
        case = make_case(kinds, 3, query_length, key_length)
        for implementation in ("math", "chunked"):
            assert_matches_reference(self, case, implementation)

    @parameterized.named_parameters(("multi_query", 1), ("grouped", 2), ("full", 4))
    def test_every_key_value_head_layout(self, kv_heads):
        kinds = ("window", "mask_mod", "bias", "soft_cap", "sinks")
        case = make_case(kinds, 5, kv_heads=kv_heads)
        for implementation in ("math", "chunked"):
            assert_matches_reference(self, case, implementation)

    def test_fully_masked_rows_give_zeros_and_finite_gradients(self):
        case = make_case(("segments", "bias", "soft_cap", "score_mod"), 7)
        # Row 0 of the first batch: a query segment no key has.
        query_ids, key_ids = (
            reference.sorted_segments(np.random.default_rng(1), 2, 11),
            reference.sorted_segments(np.random.default_rng(2), 2, 11),
        )
        query_ids[0, :3] = 99
        case.options["segment_ids"] = (query_ids, key_ids)
        for implementation in ("math", "chunked"):
            output = ops.convert_to_numpy(attend(case, implementation))
            np.testing.assert_array_equal(output[0, :3], 0.0)
            assert_matches_reference(self, case, implementation)

    def test_sinks_make_rows_sum_to_less_than_one(self):
        case = make_case(("causal", "sinks"), 11)
        _, scores = attend(case, None, return_attention_scores=True)
        sums = ops.convert_to_numpy(ops.sum(scores, axis=-1))
        self.assertTrue(np.all(sums < 1.0))
        self.assertTrue(np.all(sums > 0.0))

    @parameterized.named_parameters(
        ("window", ("window",)),
        ("window_causal", ("window", "causal")),
        ("causal_mask", ("causal", "padding")),
        ("window_mask", ("window", "padding")),
        ("segments_causal", ("segments", "causal")),
        ("segments_window_mask", ("segments", "window", "padding")),
    )
    def test_fused_path_where_the_kernel_expresses_it(self, kinds):
        case = make_case(kinds, 13, heads=4, kv_heads=4)
        backend = keras.backend.backend()
        # PyTorch's kernel is given the dense mask of any window and documents.
        expressible = backend == "torch" or (
            "segments" not in kinds
            and ("window" not in kinds or (backend == "jax" and "padding" not in kinds))
        )
        if not expressible:
            with self.assertRaisesRegex(ValueError, "cannot be 'fused' with"):
                attend(case, "fused")
            return
        assert_matches_reference(self, case, "fused")


def zlib_seed(kinds):
    """A stable seed per combination (Python's `hash` of strings is salted)."""
    import zlib

    return zlib.crc32("/".join(kinds).encode())


# What no fused kernel computes exactly (PyTorch's takes documents as a mask).
UNFUSABLE = ("bias", "soft_cap", "sinks", "mask_mod", "score_mod") + (
    () if keras.backend.backend() == "torch" else ("segments",)
)


class FusedRefusalTest(TestCase):
    @parameterized.named_parameters(*[(kind, kind) for kind in UNFUSABLE])
    def test_forcing_the_fused_path_on_what_it_cannot_express_raises(self, kind):
        case = make_case((kind,), 17, heads=4, kv_heads=4)
        with self.assertRaisesRegex(ValueError, "cannot be 'fused' with"):
            attend(case, "fused")

    @parameterized.named_parameters(*[(kind, kind) for kind in UNFUSABLE])
    def test_the_automatic_choice_falls_back_and_stays_exact(self, kind):
        case = make_case((kind,), 19, heads=4, kv_heads=4)
        expected = reference.reference(case)[0]
        output = ops.convert_to_numpy(attend(case, None))
        np.testing.assert_allclose(output, expected, **TOLERANCE)


@pytest.mark.parametrize("unused", [None])
def test_reference_reproduces_the_worked_example(unused):
    # The mission's worked example (unscaled), through the NumPy reference itself.
    case = reference.Case(np.random.default_rng(0), 1, 1, 4, 1, 1, 3)
    case.q = np.array([[[[0.990, 0.099, 0.099]]]], dtype="float32")
    case.k = np.array(
        [
            [0.050, 0.000, 0.998],
            [0.020, 0.020, 0.999],
            [0.976, 0.098, 0.195],
            [0.020, 0.999, 0.020],
        ],
        dtype="float32",
    )[None, :, None, :]
    case.v = np.array([[1, 2, 5], [1, 1, 5], [3, 2, 4], [6, 1, 2]], dtype="float32")[
        None, :, None, :
    ]
    case.options["scale"] = 1.0
    output = reference.reference(case)[0]
    np.testing.assert_allclose(output[0, 0, 0], [2.805, 1.631, 4.005], atol=2e-3)


class StructuredValidationTest(TestCase):
    """Bad input raises a ValueError naming the argument and the value."""

    def setUp(self):
        super().setUp()
        self.case = make_case((), 23)

    def assert_refused(self, pattern, implementation="math", **options):
        with self.assertRaisesRegex(ValueError, pattern):
            dot_product_attention(
                self.case.q,
                self.case.k,
                self.case.v,
                implementation=implementation,
                **options,
            )

    @parameterized.named_parameters(
        ("zero", 0), ("negative", -3), ("float", 2.5), ("bool", True)
    )
    def test_window_below_one_or_not_an_integer(self, window):
        self.assert_refused(
            rf"`sliding_window` must be an integer >= 1; received {window!r}",
            sliding_window=window,
        )

    def test_float_segment_ids(self):
        ids = np.zeros((2, 11), "float32")
        self.assert_refused(
            r"`segment_ids` must be integer ids of shape \(batch, length\) = "
            r"\(2, 11\).*; received float32 ids of shape \(2, 11\)",
            segment_ids=ids,
        )

    @parameterized.named_parameters(
        ("wrong_length", (2, 10)), ("wrong_batch", (3, 11)), ("rank_3", (2, 11, 1))
    )
    def test_segment_ids_of_the_wrong_shape(self, shape):
        self.assert_refused(
            rf"`segment_ids` must be .*received int32 ids of shape "
            rf"\({shape[0]}, {shape[1]}",
            segment_ids=np.zeros(shape, "int32"),
        )

    def test_single_segment_ids_for_cross_attention(self):
        case = make_case((), 29, query_length=5, key_length=7)
        with self.assertRaisesRegex(ValueError, "or a pair"):
            dot_product_attention(
                case.q, case.k, case.v, segment_ids=np.zeros((2, 5), "int32")
            )

    @parameterized.named_parameters(
        ("wrong_keys", (2, 4, 11, 10)),
        ("wrong_heads", (3, 11, 11)),
        ("rank_5", (1, 2, 4, 11, 11)),
    )
    def test_bias_that_does_not_broadcast(self, shape):
        self.assert_refused(
            r"`bias` must be a float tensor broadcastable to \(batch, heads, "
            r"query_length, key_length\) = \(2, 4, 11, 11\); received a float32 "
            rf"tensor of shape \({', '.join(map(str, shape))}\)",
            bias=np.zeros(shape, "float32"),
        )

    def test_boolean_bias(self):
        self.assert_refused(
            "`bias` must be a float tensor .* received a bool tensor",
            bias=np.ones((11, 11), bool),
        )

    @parameterized.named_parameters(("zero", 0.0), ("negative", -1.0))
    def test_soft_cap_not_positive(self, cap):
        self.assert_refused(
            rf"`logit_soft_cap` must be a positive number; received {cap!r}",
            logit_soft_cap=cap,
        )

    @parameterized.named_parameters(
        ("too_few", (3,)), ("per_kv_head", (2,)), ("2d", (4, 1))
    )
    def test_sinks_of_the_wrong_length(self, shape):
        self.assert_refused(
            r"`sinks` must be a float tensor of shape \(num_heads,\) = \(4,\); "
            rf"received a float32 tensor of shape \({shape[0]},",
            sinks=np.zeros(shape, "float32"),
        )

    @parameterized.named_parameters(("math", "math"), ("chunked", "chunked"))
    def test_mask_mod_that_does_not_return_booleans(self, implementation):
        def mask_mod(batch, head, q_idx, kv_idx):
            return ops.cast(kv_idx <= q_idx, "float32")

        self.assert_refused(
            "`mask_mod` must return a boolean tensor .* it returned float32",
            implementation=implementation,
            mask_mod=mask_mod,
            chunk_size=CHUNK,
        )

    def test_modifier_that_is_not_callable(self):
        self.assert_refused("`score_mod` must be None or a callable", score_mod="tanh")


class _Chosen(Exception):
    pass


def chosen_path(monkeypatch, length, **options):
    """The automatic choice for a causal call on q, k, v `(1, length, 2, 8)`;
    the call stops there, so that long ones cost only their arguments."""
    from keras_attn.ops import attention as attention_module

    choose = attention_module._choose_implementation

    def spy(*args, **kwargs):
        raise _Chosen(choose(*args, **kwargs))

    monkeypatch.setattr(attention_module, "_choose_implementation", spy)
    q = ops.zeros((1, length, 2, 8))
    with pytest.raises(_Chosen) as chosen:
        dot_product_attention(q, q, q, is_causal=True, **options)
    return chosen.value.args[0]


@pytest.mark.parametrize("length", [1024, 4096, 16384])
@pytest.mark.parametrize("kind", ["window", "segments", "one document"])
def test_automatic_choice_for_windows_and_documents(monkeypatch, length, kind):
    if kind == "window":
        options = {"sliding_window": 256}
    elif kind == "segments":
        options = {"segment_ids": ops.arange(length, dtype="int32")[None] // 100}
    else:
        options = {"segment_ids": ops.zeros((1, length), dtype="int32")}
    path = chosen_path(monkeypatch, length, **options)
    # While the mask the fused kernel is given is small (DENSE_PATTERN_ELEMENTS),
    # PyTorch's kernel (given each row of 1,024 queries' mask over the keys the
    # row may attend) and TensorFlow's math path (given the dense mask) win;
    # beyond, and on JAX, skipping blocks does.
    backend = keras.backend.backend()
    if backend == "torch":
        # One causal document: row i is given keys [0, 1,024 (i + 1)).
        rows = length // 1024
        entries = 1024 * 1024 * rows * (rows + 1) // 2
        small = kind != "one document" or entries <= 8192 * 8192
        assert path == ("fused" if small else "chunked")
    elif backend == "tensorflow":
        assert path == ("math" if length <= 2048 else "chunked")
    else:
        assert path == "chunked"
